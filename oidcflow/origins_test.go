package oidcflow

import (
	"strings"
	"testing"
)

func TestParseOrigins(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		want    string // canonical form; "" when invalid
		wantErr string
	}{
		{in: "https://app.example.com", want: "https://app.example.com"},
		{in: "HTTPS://App.Example.COM", want: "https://app.example.com"},
		{in: "https://app.example.com:443", want: "https://app.example.com"},
		{in: "http://app.example.com:80", want: "http://app.example.com"},
		{in: "http://app.example.com:443", want: "http://app.example.com:443"},
		{in: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{in: "http://[::1]:8080", want: "http://[::1]:8080"},
		{in: "https://app.example.com/", wantErr: "no path"},
		{in: "https://app.example.com/spa", wantErr: "no path"},
		{in: "https://app.example.com?x=1", wantErr: "no wildcard, userinfo, query"},
		{in: "https://app.example.com#f", wantErr: "no wildcard, userinfo, query"},
		{in: "https://user@app.example.com", wantErr: "no wildcard, userinfo, query"},
		{in: "https://*.example.com", wantErr: "no wildcard"},
		{in: "*", wantErr: "no wildcard"},
		{in: "null", wantErr: "scheme must be http or https"},
		{in: "app.example.com", wantErr: "scheme must be http or https"},
		{in: "wss://app.example.com", wantErr: "scheme must be http or https"},
		{in: "https://", wantErr: "must name a host"},
		{in: "https://app.example.com:0", wantErr: "port must be 1-65535"},
		{in: "https://app.example.com:08080", wantErr: "port must be 1-65535"},
		{in: " https://app.example.com", wantErr: "must be an origin"},
		{in: "", wantErr: "must be an origin"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			o, err := ParseOrigins("authz.allowed_origins", []string{"https://first.example", tc.in})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), "authz.allowed_origins[1]: ") || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want authz.allowed_origins[1]: …%s…", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !o.Contains(tc.want) || o.Len() != 2 {
				t.Fatalf("Origins %v does not hold %q", o.Strings(), tc.want)
			}
		})
	}
}

func TestOriginsContainsExactly(t *testing.T) {
	t.Parallel()
	o, err := ParseOrigins("f", []string{"https://app.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"https://app.example.com.evil.example", "https://evil.example", "http://app.example.com",
		"https://app.example.com:8443", "null", "", "https://app.example.com/"} {
		if o.Contains(s) {
			t.Errorf("Contains(%q) = true", s)
		}
	}
	if (Origins{}).Contains("") || (Origins{}).Len() != 0 {
		t.Error("the zero Origins must list nothing")
	}
	if _, err := ParseOrigins("f", []string{"https://a.example", "https://A.example:443"}); err == nil || !strings.Contains(err.Error(), "f[1]: duplicate") {
		t.Errorf("duplicate after canonicalisation: %v", err)
	}
}

func TestRequestOrigin(t *testing.T) {
	t.Parallel()
	cases := []struct{ scheme, authority, want string }{
		{"https", "app.example.com", "https://app.example.com"},
		{"https", "App.Example.com:443", "https://app.example.com"},
		{"http", "127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http", "localhost:80", "http://localhost"},
		{"HTTP", "[::1]:8080", "http://[::1]:8080"},
		{"http", "[::1]", "http://[::1]"},
		{"ws", "app.example.com", ""},
		{"", "app.example.com", ""},
		{"https", "", ""},
		{"https", "a@b.example", ""},
		{"https", "b.example/x", ""},
		{"http", "%80", ""},
		{"http", "a%2eb.example", ""},
		{"http", "a.example:8x", ""},
	}
	for _, tc := range cases {
		if got := RequestOrigin(tc.scheme, tc.authority); got != tc.want {
			t.Errorf("RequestOrigin(%q, %q) = %q, want %q", tc.scheme, tc.authority, got, tc.want)
		}
	}
}

// FuzzRequestOrigin: an authority from the request never panics, and what
// comes out is an origin ParseOrigins would store unchanged.
func FuzzRequestOrigin(f *testing.F) {
	for _, s := range []string{"app.example.com", "a:443", "[::1]:80", "[", "a:b:c", "%41", ""} {
		f.Add("https", s)
	}
	f.Fuzz(func(t *testing.T, scheme, authority string) {
		got := RequestOrigin(scheme, authority)
		if got == "" {
			return
		}
		o, err := ParseOrigins("f", []string{got})
		if err != nil {
			return // an authority a browser would never send (bad port, odd host): only equality matters
		}
		if !o.Contains(got) {
			t.Fatalf("RequestOrigin(%q, %q) = %q, stored as %v", scheme, authority, got, o.Strings())
		}
	})
}
