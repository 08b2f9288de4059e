package oidcflow

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// envoy-bff has no host allowlist for returnUrl: it accepts local paths
// only, so every absolute URL is refused, the app's own host included. These
// tests pin the two allowlist cases of SECURITY-TESTS that still apply. The
// one exception is a frontend's exact allowed_origins (an SPA served from
// another origin): TestValidateReturnURLFor.

// t20SameHostOtherOrigin are absolute URLs to the app's own host under
// another scheme or port, or spelled so a lax parser might take them for it
// (T20). {host} is replaced by the app's host.
var t20SameHostOtherOrigin = []string{
	"http://{host}/app", "https://{host}:8443/app", "https://{host}:443/app", "http://{host}:80/app",
	"wss://{host}/app", "ftp://{host}/app", "HTTPS://{HOST}/app", "https://{host}/app",
	"//{host}/app", "///{host}/app", "https:{host}/app", "https:/{host}/app", "https:///{host}/app",
	"{host}/app", "https://{host}:0/app", "https://{host}:/app", "javascript://{host}/%0aalert(1)",
}

// t21LookAlikes are hosts that end or start like the app's (or like an
// allowlist entry ".example.com") without the dot boundary, or hide another
// host behind userinfo, encodings and Unicode (T21, CVE-2021-21291).
var t21LookAlikes = []string{
	"https://evilapp.example.com/", "https://app.example.com.evil.com/", "https://app-example.com/",
	"https://xexample.com/", "https://evilexample.com/", "https://app.example.co/", "https://app.example.comm/",
	"https://evil.com/.example.com", "https://evil.com?.example.com", "https://evil.com#.example.com",
	"https://evil.com\\.example.com", "https://app.example.com@evil.com/", "https://app.example.com%40evil.com/",
	"https://app.example.com%2eevil.com/", "https://app.example.com%00.evil.com/", "https://app.example.com\\@evil.com/",
	"https://app.ex\u0430mple.com/", "https://app.example.com\u3002evil.com/", "https://xn--app-example-n7b.com/",
	"//.example.com/", "//evil.com\\.example.com", "/\\app.example.com.evil.com",
	"https://app.example.com%252eevil.com/", "%2F%2Fapp.example.com.evil.com",
}

func expandHost(s, host string) string {
	return strings.NewReplacer("{host}", host, "{HOST}", strings.ToUpper(host)).Replace(s)
}

func TestReturnURLHosts(t *testing.T) {
	t.Parallel()
	for _, raw := range t20SameHostOtherOrigin {
		raw := expandHost(raw, "app.example.com")
		t.Run("T20_rejects_"+url.PathEscape(raw), func(t *testing.T) {
			t.Parallel()
			if got, err := ValidateReturnURL(raw); !errors.Is(err, ErrInvalidReturnURL) {
				t.Fatalf("ValidateReturnURL(%q) = %q, %v", raw, got, err)
			}
		})
	}
	for _, raw := range t21LookAlikes {
		t.Run("T21_rejects_"+url.PathEscape(raw), func(t *testing.T) {
			t.Parallel()
			if got, err := ValidateReturnURL(raw); !errors.Is(err, ErrInvalidReturnURL) {
				t.Fatalf("ValidateReturnURL(%q) = %q, %v", raw, got, err)
			}
		})
	}
}

// TestLoginReturnURLHosts sends T20's URLs, built on the BFF's real origin,
// and T21's to /bff/login: 400, no redirect, no pending login stored.
func TestLoginReturnURLHosts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, err := url.Parse(e.bff.URL)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, raw := range t20SameHostOtherOrigin {
		bad = append(bad, expandHost(raw, u.Host), expandHost(raw, u.Hostname()))
	}
	bad = append(bad, e.bff.URL+"/app", strings.Replace(e.bff.URL, "http:", "https:", 1)+"/app")
	bad = append(bad, t21LookAlikes...)
	for _, raw := range bad {
		r := e.browser().get("/bff/login?returnUrl=" + url.QueryEscape(raw))
		if r.Status != http.StatusBadRequest || r.json(t)["error"] != "invalid_return_url" || r.location() != "" {
			t.Errorf("T20_T21 %q: %d %q %s", raw, r.Status, r.location(), r.Body)
		}
	}
	if n := e.store.puts.Load(); n != 0 {
		t.Fatalf("%d login states stored for absolute returnUrls", n)
	}
}

// TestValidateReturnURLFor: with allowed origins, an absolute returnUrl is
// accepted only on one of them, spelled exactly as a browser's Origin, with
// a path that passes the local-path rules; every T20/T21 variant built on
// an allowed origin's host is still refused.
func TestValidateReturnURLFor(t *testing.T) {
	origins, err := ParseOrigins("authz.allowed_origins", []string{"https://app.example.com", "http://localhost:3000"})
	if err != nil {
		t.Fatal(err)
	}
	accepted := []struct{ raw, want string }{
		{"https://app.example.com", "https://app.example.com/"},
		{"https://app.example.com/", "https://app.example.com/"},
		{"https://app.example.com/orders/7?tab=2#top", "https://app.example.com/orders/7?tab=2"},
		{"http://localhost:3000/a", "http://localhost:3000/a"},
		{"/local/path", "/local/path"},
	}
	for _, tt := range accepted {
		got, err := ValidateReturnURLFor(tt.raw, origins)
		if err != nil || got != tt.want {
			t.Errorf("ValidateReturnURLFor(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
		}
	}
	refused := []string{
		"https://APP.example.com/", "https://app.example.com:443/", "http://app.example.com/", "https://app.example.com./",
		"https://app.example.com?x=1", "https://app.example.com#x", "https://app.example.com//evil.com/", "https://app.example.com/%2F%2Fevil.com",
		"https://app.example.com/\\evil.com", "https://app.example.com%2f/", "https://app.example.com@evil.com/", "https://evil.com@app.example.com/",
		"http://localhost:3001/", "http://localhost/", "https://localhost:3000/", "//app.example.com/", "https:app.example.com/", "HTTPS://app.example.com/",
		"https://app.example.com/\r\nx", "https://app.example.com /",
	}
	for _, list := range [][]string{t20SameHostOtherOrigin, t21LookAlikes} {
		for _, s := range list {
			if v := expandHost(s, "app.example.com"); v != "https://app.example.com/app" {
				refused = append(refused, v)
			}
		}
	}
	for _, raw := range refused {
		if got, err := ValidateReturnURLFor(raw, origins); err == nil || !errors.Is(err, ErrInvalidReturnURL) {
			t.Errorf("ValidateReturnURLFor(%q) = %q, %v; want ErrInvalidReturnURL", raw, got, err)
		}
	}
	// Without a list nothing absolute passes, the listed origins included.
	if got, err := ValidateReturnURLFor("https://app.example.com/", Origins{}); err == nil {
		t.Errorf("no allowed origins: accepted %q", got)
	}
}

// FuzzValidateReturnURLFor: whatever is accepted is a local path, or an
// allowed origin followed by a local path; never anything else.
func FuzzValidateReturnURLFor(f *testing.F) {
	origins, err := ParseOrigins("authz.allowed_origins", []string{"https://app.example.com", "http://localhost:3000"})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range append(append([]string{"https://app.example.com/x?y#z", "http://localhost:3000", "/a"}, t20SameHostOtherOrigin...), t21LookAlikes...) {
		f.Add(expandHost(s, "app.example.com"))
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := ValidateReturnURLFor(raw, origins)
		if err != nil {
			return
		}
		local := got
		for _, o := range origins.Strings() {
			if strings.HasPrefix(got, o+"/") {
				local = got[len(o):]
			}
		}
		if want, err := ValidateReturnURL(local); err != nil || want != local {
			t.Fatalf("accepted %q → %q, whose path %q is no local path (%v)", raw, got, local, err)
		}
		if u, err := url.Parse(got); err != nil || (u.Host != "" && !origins.Contains(u.Scheme+"://"+u.Host)) {
			t.Fatalf("accepted %q → %q on another origin", raw, got)
		}
	})
}
