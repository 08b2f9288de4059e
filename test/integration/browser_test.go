package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// browser is a minimal browser: it keeps the cookies of the app's origin
// (Envoy) itself — Go's cookie jar will not send Secure cookies over plain
// http, while real browsers do for 127.0.0.1 — follows redirects by hand so
// the tests can look at every hop, and records every response it receives.
type browser struct {
	t       *testing.T
	origin  *url.URL
	cookies map[string]string
	client  *http.Client
	seen    []*http.Response
	bodies  []string
}

func newBrowser(t *testing.T, origin string) *browser {
	t.Helper()
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{
		t:       t,
		origin:  u,
		cookies: map[string]string{},
		client: &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// response is what the tests look at: status, headers, body.
type response struct {
	Status int
	Header http.Header
	Body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

// do sends one request. Cookies are attached only for the app's origin.
func (b *browser) do(method, rawURL string, header map[string]string) response {
	b.t.Helper()
	u, err := b.origin.Parse(rawURL)
	if err != nil {
		b.t.Fatal(err)
	}
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	sameOrigin := u.Host == b.origin.Host
	if sameOrigin && len(b.cookies) > 0 {
		var pairs []string
		for k, v := range b.cookies {
			pairs = append(pairs, k+"="+v)
		}
		req.Header.Set("Cookie", strings.Join(pairs, "; "))
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		b.t.Fatalf("read %s: %v", u, err)
	}
	b.seen = append(b.seen, resp)
	b.bodies = append(b.bodies, string(body))
	if sameOrigin {
		for _, c := range resp.Cookies() {
			if c.MaxAge < 0 || c.Value == "" {
				delete(b.cookies, c.Name)
			} else {
				b.cookies[c.Name] = c.Value
			}
		}
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

func (b *browser) get(path string) response { return b.do(http.MethodGet, path, nil) }

// api calls a path the way the SPA's fetch does: with the anti-forgery header.
func (b *browser) api(path string) response {
	return b.do(http.MethodGet, path, map[string]string{"X-CSRF": "1"})
}

// follow performs GET on rawURL and follows up to 10 redirects, returning
// the final response and every hop's URL.
func (b *browser) follow(rawURL string) (response, []string) {
	b.t.Helper()
	var hops []string
	r := b.get(rawURL)
	hops = append(hops, rawURL)
	for i := 0; i < 10 && r.Status >= 300 && r.Status < 400; i++ {
		loc := r.Header.Get("Location")
		if loc == "" {
			b.t.Fatalf("redirect %d without Location", r.Status)
		}
		next, err := url.Parse(hops[len(hops)-1])
		if err != nil {
			b.t.Fatal(err)
		}
		next = b.origin.ResolveReference(next)
		target, err := next.Parse(loc)
		if err != nil {
			b.t.Fatal(err)
		}
		hops = append(hops, target.String())
		r = b.get(target.String())
	}
	return r, hops
}

// login walks the whole code flow: /bff/login → provider → /bff/callback →
// returnUrl, and returns the final hop.
func (b *browser) login(returnURL string) (response, []string) {
	b.t.Helper()
	path := "/bff/login"
	if returnURL != "" {
		path += "?returnUrl=" + url.QueryEscape(returnURL)
	}
	return b.follow(path)
}

// everything concatenates every header and body the browser has received.
func (b *browser) everything() string {
	var sb strings.Builder
	for i, r := range b.seen {
		for k, vs := range r.Header {
			for _, v := range vs {
				sb.WriteString(k + ": " + v + "\n")
			}
		}
		sb.WriteString(b.bodies[i])
		sb.WriteString("\n")
	}
	return sb.String()
}
