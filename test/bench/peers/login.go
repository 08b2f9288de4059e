package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// login walks a code flow from start as a browser would: following each
// redirect by hand, keeping every cookie set along the way (by name: the
// flows here never set one name on two hosts), until an answer that is not
// a redirect. It returns that answer's status and the cookies kept.
func login(ctx context.Context, start string) (int, map[string]string, error) {
	jar := map[string]string{}
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := start
	for range 12 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return 0, nil, fmt.Errorf("build login request: %w", err)
		}
		if len(jar) > 0 {
			req.Header.Set("Cookie", cookieHeader(jar))
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, fmt.Errorf("login step %s: %w", req.URL.Path, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(time.Now())) || c.Value == "" {
				delete(jar, c.Name)
				continue
			}
			jar[c.Name] = c.Value
		}
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			return resp.StatusCode, jar, nil
		}
		loc, err := req.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			return 0, nil, fmt.Errorf("login step %s: bad Location: %w", req.URL.Path, err)
		}
		next = loc.String()
	}
	return 0, nil, fmt.Errorf("login from %s: more than 12 redirects", start)
}

// cookieHeader is a Cookie header of jar, in a stable order.
func cookieHeader(jar map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(jar)) {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(k + "=" + jar[k])
	}
	return b.String()
}

// only is the jar's cookie name alone as a Cookie header, or an error.
func only(jar map[string]string, name string) (string, error) {
	v, ok := jar[name]
	if !ok {
		return "", fmt.Errorf("no %s cookie after the login (have %v)", name, slices.Sorted(maps.Keys(jar)))
	}
	return name + "=" + v, nil
}
