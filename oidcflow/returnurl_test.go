package oidcflow

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// t19ReturnURLs are SECURITY-TESTS.md T19's strings, and T18's variants.
var t19ReturnURLs = []string{
	// T19
	"//evil.com", "/\\evil.com", "\\\\evil.com", "/\t/evil.com", "/%09/evil.com",
	"/%2F%2Fevil.com",
	"https:evil.com", "javascript:alert(1)", "/./\\evil.com",
	"https://app.example.com@evil.com", "https://app.example.com.evil.com",
	"/x%0d%0aSet-Cookie:a=b",
	// T18: encodings, whitespace, backslashes, userinfo, look-alikes, mixed
	"/%2f%2fevil.com", "/%252F%252Fevil.com", "/%5Cevil.com", "/%5cevil.com", "%2F%2Fevil.com",
	" /app", "/app ", "/ap p", "\t/app", "/app\n", "/x%00", "/x%7f", "/x?a=%0d%0a",
	"///evil.com", "/.//evil.com", "/a//b", "/%2e%2e//evil.com",
	"//user@evil.com", "//evil.com/%2F..", "http://evil.com", "HTTPS://evil.com", "data:text/html,x",
	"/\u2215\u2215evil.com", "/\uff0f\uff0fevil.com", "/\u3002evil.com", "/é",
	"evil.com", "app/x", "?next=/", "#/x", ".", "../x",
	"/%", "/%zz", "/%25252F%25252Fevil.com%25",
	"/" + strings.Repeat("a", 2048),
}

func TestValidateReturnURL(t *testing.T) {
	t.Parallel()
	for _, bad := range t19ReturnURLs {
		t.Run("T19_rejects_"+url.PathEscape(bad), func(t *testing.T) {
			t.Parallel()
			got, err := ValidateReturnURL(bad)
			if !errors.Is(err, ErrInvalidReturnURL) {
				t.Fatalf("ValidateReturnURL(%q) = %q, %v; want ErrInvalidReturnURL", bad, got, err)
			}
		})
	}
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/app/orders?x=1", "/app/orders?x=1"},
		{"/app#frag", "/app"},
		{"/app?x=1#/y", "/app?x=1"},
		{"/app?", "/app"},
		{"/a/b%20c?q=%2F&u=https://x.example/", "/a/b%20c?q=%2F&u=https://x.example/"},
		{"/caf%C3%A9", "/caf%C3%A9"},
		{"/%2e%2e/x", "/%2e%2e/x"},
		{"/a:b", "/a:b"},
	} {
		t.Run("T17_accepts_"+url.PathEscape(tc.in), func(t *testing.T) {
			t.Parallel()
			got, err := ValidateReturnURL(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("ValidateReturnURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// FuzzValidateReturnURL holds the validator to its invariant: whatever it
// accepts, resolved against the app's origin, stays on that origin, and
// carries no CR, LF or backslash into a Location header.
func FuzzValidateReturnURL(f *testing.F) {
	for _, s := range t19ReturnURLs {
		f.Add(s)
	}
	for _, s := range []string{"/", "/app/orders?x=1", "/a#b", "/caf%C3%A9", "/%2e%2e/x"} {
		f.Add(s)
	}
	base, err := url.Parse("https://app.example/bff/callback")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := ValidateReturnURL(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidReturnURL) {
				t.Fatalf("error %v does not wrap ErrInvalidReturnURL", err)
			}
			return
		}
		if strings.ContainsAny(got, "\r\n\\") {
			t.Fatalf("accepted %q → %q holds CR, LF or backslash", raw, got)
		}
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatalf("accepted %q → %q does not parse: %v", raw, got, err)
		}
		abs := base.ResolveReference(ref)
		if abs.Scheme != "https" || abs.Host != "app.example" || abs.User != nil {
			t.Fatalf("accepted %q → %q resolves to %q", raw, got, abs)
		}
		// A browser that decodes once more must land on the same origin too.
		if dec, err := url.PathUnescape(got); err == nil {
			if strings.HasPrefix(dec, "//") || strings.ContainsAny(dec, "\\\r\n\t") {
				t.Fatalf("accepted %q → %q decodes to %q", raw, got, dec)
			}
		}
	})
}
