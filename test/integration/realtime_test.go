package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestRealtime_T76 opens the sample API's WebSocket and SSE feed through
// real Envoy on routes that opted in (bff.realtime): the SPA's own origin
// opens both and receives its subject, with the bearer injected and no
// X-CSRF; a foreign Origin, a WebSocket without Origin, or Sec-Fetch-Site
// cross-site is 403 origin_not_allowed with nothing reaching the API; and
// a route that did not opt in keeps the anti-forgery rule.
func TestRealtime_T76(t *testing.T) {
	t.Parallel()
	s := startStack(t, harness.Options{})
	b := newBrowser(t, s.URL)
	if r, hops := b.login("/"); r.Status != 200 {
		t.Fatalf("login failed at %v: %d %s", hops, r.Status, r.Body)
	}
	cookie := "__Host-bff=" + b.cookies["__Host-bff"]
	sub, _ := b.api("/api/whoami").json(t)["sub"].(string)
	if sub == "" {
		t.Fatal("whoami reports no subject")
	}
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http")
	apiRequests := func() int { return envoyCounter(t, s.Envoy, "cluster.api.upstream_rq_total") }

	t.Run("websocket_own_origin", func(t *testing.T) {
		upstream := apiRequests()
		conn, status, body := dialWS(t, wsURL+"/api/ws", http.Header{"Cookie": {cookie}, "Origin": {s.URL}})
		if conn == nil {
			t.Fatalf("handshake answered %d %s", status, body)
		}
		defer conn.Close()
		msg, err := wsutil.ReadServerText(conn)
		if err != nil {
			t.Fatal(err)
		}
		if got := subjectOf(t, msg); got != sub {
			t.Errorf("the API's WebSocket reports sub %q, want %q", got, sub)
		}
		if err := wsutil.WriteClientText(conn, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if echo, err := wsutil.ReadServerText(conn); err != nil || string(echo) != "ping" {
			t.Errorf("echo %q, %v", echo, err)
		}
		if n := apiRequests() - upstream; n != 1 {
			t.Errorf("the API received %d requests for one WebSocket", n)
		}
	})

	t.Run("eventsource_same_origin", func(t *testing.T) {
		// What Chromium sends for a same-origin EventSource: no Origin.
		status, events := openSSE(t, s.URL+"/api/events", map[string]string{"Cookie": cookie, "Sec-Fetch-Site": "same-origin"}, 2)
		if status != http.StatusOK {
			t.Fatalf("events: %d", status)
		}
		if events[0].name != "hello" || subjectOf(t, []byte(events[0].data)) != sub {
			t.Errorf("first event %+v, want hello with sub %q", events[0], sub)
		}
		if events[1].name != "tick" {
			t.Errorf("second event %+v, want a tick", events[1])
		}
	})

	denials := []struct {
		name   string
		ws     bool
		path   string
		header map[string]string
		code   string
	}{
		{"websocket_foreign_origin", true, "/api/ws", map[string]string{"Origin": "https://evil.example"}, "origin_not_allowed"},
		{"websocket_missing_origin", true, "/api/ws", nil, "origin_not_allowed"},
		{"websocket_cross_site", true, "/api/ws", map[string]string{"Origin": s.URL, "Sec-Fetch-Site": "cross-site"}, "origin_not_allowed"},
		{"eventsource_cross_site", false, "/api/events", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, "origin_not_allowed"},
		{"eventsource_foreign_origin", false, "/api/events", map[string]string{"Origin": "https://evil.example"}, "origin_not_allowed"},
		{"eventsource_no_origin_headers", false, "/api/events", nil, "origin_not_allowed"},
		{"websocket_route_not_opted_in", true, "/api/whoami", map[string]string{"Origin": s.URL}, "antiforgery_required"},
		{"eventsource_route_not_opted_in", false, "/api/whoami", map[string]string{"Sec-Fetch-Site": "same-origin"}, "antiforgery_required"},
	}
	for _, d := range denials {
		t.Run(d.name, func(t *testing.T) {
			upstream := apiRequests()
			h := http.Header{"Cookie": {cookie}}
			for k, v := range d.header {
				h.Set(k, v)
			}
			var status int
			var body []byte
			if d.ws {
				var conn net.Conn
				if conn, status, body = dialWS(t, wsURL+d.path, h); conn != nil {
					conn.Close()
					t.Fatal("the WebSocket opened")
				}
			} else {
				status, body = getSSE(t, s.URL+d.path, h)
			}
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(body, &e)
			if status != http.StatusForbidden || e.Error != d.code {
				t.Errorf("answered %d %s, want 403 %s", status, body, d.code)
			}
			if n := apiRequests() - upstream; n != 0 {
				t.Errorf("the API received %d request(s)", n)
			}
		})
	}
}

// dialWS opens a WebSocket with header; on a refused handshake it returns
// a nil conn and the status and body of the answer.
func dialWS(t *testing.T, url string, header http.Header) (net.Conn, int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var status int
	var body []byte
	d := ws.Dialer{
		Header: ws.HandshakeHeaderHTTP(header),
		OnStatusError: func(code int, _ []byte, r io.Reader) {
			status = code
			if resp, err := http.ReadResponse(bufio.NewReader(r), nil); err == nil {
				body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
				_ = resp.Body.Close()
			}
		},
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		if status == 0 {
			t.Fatalf("dial %s: %v", url, err)
		}
		return nil, status, body
	}
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if br != nil { // frames that came with the handshake's answer
		return &bufferedConn{Conn: conn, r: io.MultiReader(br, conn)}, http.StatusSwitchingProtocols, nil
	}
	return conn, http.StatusSwitchingProtocols, nil
}

// bufferedConn reads what the dialer buffered first.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// sseEvent is one Server-Sent Event.
type sseEvent struct{ name, data string }

// openSSE opens an EventSource-like GET and reads n events.
func openSSE(t *testing.T, url string, header map[string]string, n int) (int, []sseEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	r := bufio.NewReader(resp.Body)
	var out []sseEvent
	var cur sseEvent
	for len(out) < n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d events: %v", len(out), err)
		}
		switch line = strings.TrimRight(line, "\n"); {
		case line == "":
			out = append(out, cur)
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return resp.StatusCode, out
}

// getSSE is an EventSource-like GET that is expected to be refused: its
// status and (bounded) body.
func getSSE(t *testing.T, url string, header http.Header) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header = header.Clone()
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, []byte("(a stream)")
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, bytes.TrimSpace(body)
}

// subjectOf is the sub of a realtime message {"sub": …}.
func subjectOf(t *testing.T, msg []byte) string {
	t.Helper()
	var m struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatalf("message %q: %v", msg, err)
	}
	return m.Sub
}
