package session_test

import (
	"bytes"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

var testCookie = session.DefaultConfig().Cookie

func cookieID(t testing.TB) (session.ID, string) {
	t.Helper()
	id, err := session.NewID(bytes.NewReader(bytes.Repeat([]byte{0xfb}, session.IDLen)))
	if err != nil {
		t.Fatal(err)
	}
	return id, id.String()
}

func TestReadID(t *testing.T) {
	t.Parallel()
	id, v := cookieID(t)
	other, _ := session.NewID(bytes.NewReader(bytes.Repeat([]byte{7}, session.IDLen)))
	tests := []struct {
		name    string
		header  string
		wantErr error // nil: id
	}{
		{name: "alone", header: "__Host-bff=" + v},
		{name: "among_others", header: "a=1; __Host-bff=" + v + "; b=2"},
		{name: "h2_crumbs_joined", header: "theme=dark; __Host-bff=" + v + "; lang=en"},
		{name: "no_spaces", header: "a=1;__Host-bff=" + v + ";b=2"},
		{name: "ows_around", header: "a=1;\t __Host-bff=" + v + " ;b"},
		{name: "empty_pairs", header: ";;__Host-bff=" + v + ";;"},
		{name: "value_holds_name", header: "x=__Host-bff=" + v, wantErr: session.ErrNoCookie},
		{name: "empty_header", header: "", wantErr: session.ErrNoCookie},
		{name: "absent", header: "a=1; b=2", wantErr: session.ErrNoCookie},
		{name: "lowercase_prefix_ignored", header: "__host-bff=" + v, wantErr: session.ErrNoCookie},
		{name: "secure_prefix_ignored", header: "__Secure-bff=" + v, wantErr: session.ErrNoCookie},
		{name: "sid_ignored", header: "sid=" + v, wantErr: session.ErrNoCookie},
		{name: "bare_name_ignored", header: "bff=" + v, wantErr: session.ErrNoCookie},
		{name: "longer_name_ignored", header: "__Host-bff2=" + v + "; x__Host-bff=" + v, wantErr: session.ErrNoCookie},
		{name: "duplicate_same_value", header: "__Host-bff=" + v + "; __Host-bff=" + v, wantErr: session.ErrDuplicateCookie},
		{name: "duplicate_other_value", header: "__Host-bff=" + v + "; a=1; __Host-bff=" + other.String(), wantErr: session.ErrDuplicateCookie},
		{name: "duplicate_one_malformed", header: "__Host-bff=x; __Host-bff=" + v, wantErr: session.ErrDuplicateCookie},
		{name: "duplicate_spaced_name", header: "__Host-bff=" + v + "; __Host-bff =" + v, wantErr: session.ErrDuplicateCookie},
		{name: "duplicate_bare", header: "__Host-bff=" + v + "; __Host-bff", wantErr: session.ErrDuplicateCookie},
		{name: "empty_value", header: "__Host-bff=", wantErr: session.ErrMalformedID},
		{name: "bare_name", header: "__Host-bff", wantErr: session.ErrMalformedID},
		{name: "short", header: "__Host-bff=" + v[:42], wantErr: session.ErrMalformedID},
		{name: "long", header: "__Host-bff=" + v + "A", wantErr: session.ErrMalformedID},
		{name: "8kb", header: "__Host-bff=" + strings.Repeat("A", 8192), wantErr: session.ErrMalformedID},
		{name: "nul", header: "__Host-bff=" + v[:42] + "\x00", wantErr: session.ErrMalformedID},
		{name: "newline_inside", header: "__Host-bff=" + v[:20] + "\n" + v[21:], wantErr: session.ErrMalformedID},
		{name: "padding", header: "__Host-bff=" + v[:42] + "=", wantErr: session.ErrMalformedID},
		{name: "std_alphabet", header: "__Host-bff=" + strings.NewReplacer("-", "+", "_", "/").Replace(v), wantErr: session.ErrMalformedID},
		{name: "quoted", header: `__Host-bff="` + v + `"`, wantErr: session.ErrMalformedID},
		{name: "non_canonical_tail", header: "__Host-bff=" + v[:42] + "9", wantErr: session.ErrMalformedID},
		// Envoy joins repeated Cookie headers with ",": each pair still counts (T69).
		{name: "T69_comma_joined_headers", header: "a=1,__Host-bff=" + v + ",b=2"},
		{name: "T69_comma_joined_after_semicolon", header: "__Host-bff=" + v + ";,__Host-bff=" + other.String(), wantErr: session.ErrDuplicateCookie},
		{name: "T69_comma_only", header: "__Host-bff=" + v + ",__Host-bff=" + other.String(), wantErr: session.ErrDuplicateCookie},
		{name: "T69_comma_space", header: "__Host-bff=" + v + ", __Host-bff=" + v, wantErr: session.ErrDuplicateCookie},
		{name: "T69_whitespace_separated", header: "__Host-bff=" + v + " __Host-bff=" + other.String(), wantErr: session.ErrDuplicateCookie},
		{name: "T69_after_another_value_and_space", header: "a=1 __Host-bff=" + v + "; __Host-bff=" + v, wantErr: session.ErrDuplicateCookie},
		{name: "T69_bare_name_after_comma", header: "__Host-bff=" + v + ",__Host-bff", wantErr: session.ErrDuplicateCookie},
		{name: "T69_tab_separated", header: "x=1\t__Host-bff=" + v},
		{name: "name_glued_to_value_ignored", header: "x=1__Host-bff=" + v + "; __Host-bff=" + v},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := testCookie.ReadID(tc.header)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ReadID = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(id) {
				t.Fatalf("ReadID = %v, %v; want the ID", got, err)
			}
		})
	}
}

func TestReadIDFromRequest(t *testing.T) {
	t.Parallel()
	id, v := cookieID(t)
	tests := []struct {
		name    string
		lines   []string
		wantErr error
	}{
		{name: "one_line", lines: []string{"a=1; __Host-bff=" + v}},
		{name: "second_line", lines: []string{"a=1", "__Host-bff=" + v}},
		{name: "none", lines: nil, wantErr: session.ErrNoCookie},
		{name: "across_lines", lines: []string{"__Host-bff=" + v, "__Host-bff=" + v}, wantErr: session.ErrDuplicateCookie},
		{name: "T69_comma_inside_a_line", lines: []string{"a=1", "__Host-bff=" + v + ",__Host-bff=" + v}, wantErr: session.ErrDuplicateCookie},
		{name: "malformed", lines: []string{"__Host-bff=nope"}, wantErr: session.ErrMalformedID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://app.example.com/", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range tc.lines {
				r.Header.Add("Cookie", l)
			}
			got, err := testCookie.ReadIDFromRequest(r)
			if !errors.Is(err, tc.wantErr) || (err == nil && !got.Equal(id)) {
				t.Fatalf("ReadIDFromRequest = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestReadIDDoesNotAllocate(t *testing.T) {
	_, v := cookieID(t)
	header := "theme=dark; __Host-bff=" + v + "; lang=en"
	if n := testing.AllocsPerRun(100, func() { _, _ = testCookie.ReadID(header) }); n != 0 {
		t.Errorf("ReadID allocates %v times per call", n)
	}
}

func TestStrip(t *testing.T) {
	t.Parallel()
	_, v := cookieID(t)
	tests := []struct {
		name, in, want string
	}{
		{name: "only", in: "__Host-bff=" + v, want: ""},
		{name: "middle", in: "a=1; __Host-bff=" + v + "; b=2", want: "a=1; b=2"},
		{name: "first", in: "__Host-bff=" + v + "; b=2", want: "b=2"},
		{name: "last_no_space", in: "a=1;__Host-bff=" + v, want: "a=1"},
		{name: "every_copy", in: "__Host-bff=1; a=1; __Host-bff=2;__Host-bff =3; __Host-bff", want: "a=1"},
		{name: "malformed_value_too", in: "a=\"q\"; __Host-bff=\x00junk", want: "a=\"q\""},
		{name: "others_kept_verbatim", in: "__host-bff=x; __Secure-bff=y; sid=z; __Host-bff=" + v + "; q=a=b", want: "__host-bff=x; __Secure-bff=y; sid=z; q=a=b"},
		{name: "absent_unchanged", in: "a=1;b=2;  c", want: "a=1;b=2;  c"},
		{name: "name_in_value_unchanged", in: "x=__Host-bff=1", want: "x=__Host-bff=1"},
		{name: "T49_nameless_copy_of_the_id", in: v + ";__Host-bff=" + v, want: ""},
		{name: "T49_id_under_another_name", in: "a=1; sid=" + v + "; __Host-bff=" + v, want: "a=1"},
		{name: "id_elsewhere_without_the_cookie_unchanged", in: "sid=" + v, want: "sid=" + v},
		{name: "T49_id_inside_another_value", in: "x=" + v + "0; y=1; __Host-bff=" + v, want: "y=1"},
		{name: "short_malformed_value_strips_only_itself", in: "a=1; __Host-bff=1", want: "a=1"},
		{name: "empty", in: "", want: ""},
		// Repeated Cookie headers joined by Envoy with "," (T69): no pair
		// naming the cookie survives, whatever separates it.
		{name: "T69_comma_after_semicolon", in: "__Host-bff=" + v + ";,__Host-bff=" + strings.Repeat("B", 43), want: ""},
		{name: "T69_comma_joined_others_kept", in: "a=1,__Host-bff=" + v + ",b=2", want: "a=1,b=2"},
		{name: "T69_second_header_is_the_cookie", in: "a=1; c=3,__Host-bff=" + v, want: "a=1; c=3"},
		{name: "T69_whitespace_separated_pair_goes_with_its_pair", in: "a=1; x=2 __Host-bff=" + v + "; b=2", want: "a=1; b=2"},
		{name: "T69_id_in_another_header", in: "__Host-bff=" + v + ",sid=" + v + ",c=1", want: "c=1"},
		{name: "comma_in_other_values_kept", in: "list=a,b; __Host-bff=" + v, want: "list=a,b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := testCookie.Strip(tc.in); got != tc.want {
				t.Errorf("Strip(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSetCookie(t *testing.T) {
	t.Parallel()
	id, v := cookieID(t)
	strict := testCookie
	strict.SameSite = "strict"
	tests := []struct {
		name     string
		got      string
		want     string
		sameSite http.SameSite
		maxAge   int
	}{
		{name: "set_lax", got: testCookie.SetCookie(id), want: "__Host-bff=" + v + "; Path=/; Secure; HttpOnly; SameSite=Lax", sameSite: http.SameSiteLaxMode},
		{name: "set_strict", got: strict.SetCookie(id), want: "__Host-bff=" + v + "; Path=/; Secure; HttpOnly; SameSite=Strict", sameSite: http.SameSiteStrictMode},
		{name: "clear_lax", got: testCookie.ClearCookie(), want: "__Host-bff=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0", sameSite: http.SameSiteLaxMode, maxAge: -1},
		{name: "clear_strict", got: strict.ClearCookie(), want: "__Host-bff=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0", sameSite: http.SameSiteStrictMode, maxAge: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.got != tc.want {
				t.Errorf("got  %q\nwant %q", tc.got, tc.want)
			}
			c, err := http.ParseSetCookie(tc.got)
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != "__Host-bff" || !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" ||
				c.SameSite != tc.sameSite || c.MaxAge != tc.maxAge || len(tc.got) > 4096 {
				t.Errorf("parsed %+v", c)
			}
		})
	}
}

// sessionValue matches the session cookie's values as cookieNamed finds its
// name: after a delimiter, then "=", up to the next ";" or ",", trimmed.
var sessionValue = regexp.MustCompile(`(?:^|[;, \t\r\n\v\f])__Host-bff[ \t\r\n\v\f]*=[ \t\r\n\v\f]*([^;,]*?)[ \t\r\n\v\f]*(?:[;,]|$)`)

func FuzzReadID(f *testing.F) {
	_, v := cookieID(f)
	for _, s := range []string{
		"__Host-bff=" + v, "a=1; __Host-bff=" + v + "; b=2", "__Host-bff=" + v + "; __Host-bff=" + v,
		"__host-bff=" + v, "__Host-bff=\x00", "__Host-bff", ";;;", "__Host-bff =" + v + " ",
		"a=1,__Host-bff=" + v, "__Host-bff=" + v + ";,__Host-bff=" + v, "x=1 __Host-bff=" + v,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		id, err := testCookie.ReadID(header)
		if err != nil {
			if !errors.Is(err, session.ErrNoCookie) && !errors.Is(err, session.ErrDuplicateCookie) && !errors.Is(err, session.ErrMalformedID) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !strings.Contains(header, id.String()) {
			t.Fatalf("ReadID found %s, which the header does not hold", id)
		}
		back, err := testCookie.ReadID(testCookie.Name + "=" + id.String())
		if err != nil || !back.Equal(id) {
			t.Fatalf("round trip: %v", err)
		}
		if _, err := testCookie.ReadID(testCookie.Strip(header)); !errors.Is(err, session.ErrNoCookie) {
			t.Fatalf("after Strip, ReadID = %v", err)
		}
		// One session cookie means one: no other pair anywhere names it.
		named := 0
		for _, p := range sessiontest.CookiePairs(header) {
			if sessiontest.CookieNamed(p, testCookie.Name) {
				named++
			}
		}
		if named != 1 {
			t.Fatalf("ReadID(%q) found one session cookie, the reference %d pairs naming it", header, named)
		}
	})
}

func FuzzStrip(f *testing.F) {
	_, v := cookieID(f)
	v0 := v
	for _, s := range []string{
		"a=1; __Host-bff=" + v + "; b=2", "__Host-bff=1;__Host-bff=2", "x=__Host-bff=1", " __Host-bff\t=1 ; c",
		"", "__Host-bff", "a", "a=1,__Host-bff=" + v + ",b=2", "__Host-bff=" + v + ";,__Host-bff=2",
		"list=a,b; __Host-bff=" + v, "x=2 __Host-bff=" + v + "; y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		out := testCookie.Strip(header)
		if sessiontest.CookieNamed(out, testCookie.Name) {
			t.Fatalf("Strip(%q) = %q still holds the session cookie", header, out)
		}
		if _, err := testCookie.ReadID(out); !errors.Is(err, session.ErrNoCookie) {
			t.Fatalf("ReadID(Strip(%q)) = %v", header, err)
		}
		if !sessiontest.CookieNamed(header, testCookie.Name) && out != header {
			t.Fatalf("Strip changed a header without the cookie: %q → %q", header, out)
		}
		const ows = " \t\r\n\v\f"
		var secrets []string // the session cookie's ID-shaped values
		for _, m := range sessionValue.FindAllStringSubmatch(header, -1) {
			if len(m[1]) == len(v0) {
				secrets = append(secrets, m[1])
			}
		}
		for _, secret := range secrets {
			if strings.Contains(out, secret) {
				t.Fatalf("Strip(%q) = %q still holds the session value", header, out)
			}
		}
		for _, pair := range sessiontest.CookiePairs(header) { // every other pair survives, unless it holds such a value
			carries := slices.ContainsFunc(secrets, func(s string) bool { return strings.Contains(pair, s) })
			if p := strings.Trim(pair, ows); p != "" && !carries && !sessiontest.CookieNamed(pair, testCookie.Name) && !strings.Contains(out, p) {
				t.Fatalf("Strip(%q) = %q lost %q", header, out, p)
			}
		}
	})
}

func BenchmarkReadID(b *testing.B) {
	_, v := cookieID(b)
	header := "theme=dark; _ga=GA1.2.3.4; __Host-bff=" + v + "; lang=en"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := testCookie.ReadID(header); err != nil {
			b.Fatal(err)
		}
	}
}
