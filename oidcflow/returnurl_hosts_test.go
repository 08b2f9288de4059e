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
// tests pin the two allowlist cases of SECURITY-TESTS that still apply.

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
