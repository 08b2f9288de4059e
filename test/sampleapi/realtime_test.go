package sampleapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// realtimeServer is the API on a real listener (a WebSocket needs one).
func realtimeServer(t *testing.T) (*env, *httptest.Server) {
	t.Helper()
	e := newEnv(t, func(c *Config) { c.EventInterval = 10 * time.Millisecond })
	srv := httptest.NewServer(e.api)
	t.Cleanup(srv.Close)
	return e, srv
}

func TestEventsReportsTheBearersSubject(t *testing.T) {
	t.Parallel()
	e, srv := realtimeServer(t)
	tok := e.userToken(t)
	want := e.whoami(t, bearer(tok)).Sub
	if want == "" {
		t.Fatal("whoami found no subject in the token")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := readEvents(t, bufio.NewReader(resp.Body), 3)
	if events[0].name != "hello" || subOf(t, events[0].data) != want {
		t.Errorf("first event %+v, want hello with sub %q", events[0], want)
	}
	if events[1].name != "tick" || events[1].data != `{"n":1}` || events[2].data != `{"n":2}` {
		t.Errorf("ticks %+v", events[1:])
	}

	// Without a bearer: 401, no stream.
	resp2, err := http.Get(srv.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp2.Body.Close()
	if resp2.StatusCode != http.StatusUnauthorized {
		t.Errorf("events without a bearer: %d, want 401", resp2.StatusCode)
	}
	if s := e.api.Stats(); s.Realtime != 2 || s.Streams != 1 {
		t.Errorf("stats %+v, want 2 realtime requests and 1 stream", s)
	}
}

func TestWebSocketReportsTheBearersSubjectAndEchoes(t *testing.T) {
	t.Parallel()
	e, srv := realtimeServer(t)
	tok := e.userToken(t)
	want := e.whoami(t, bearer(tok)).Sub
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/ws"

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + tok}})}
	conn, br, _, err := d.Dial(ctx, wsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	rw := readerConn{conn: conn, r: br}
	msg, err := wsutil.ReadServerText(rw)
	if err != nil {
		t.Fatal(err)
	}
	if got := subOf(t, string(msg)); got != want {
		t.Errorf("first message sub %q, want %q", got, want)
	}
	if err := wsutil.WriteClientText(conn, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if echo, err := wsutil.ReadServerText(rw); err != nil || string(echo) != "ping" {
		t.Errorf("echo %q, %v", echo, err)
	}

	// Without a bearer the handshake gets 401.
	if _, _, _, err := (ws.Dialer{}).Dial(ctx, wsURL); !errors.Is(err, ws.StatusError(http.StatusUnauthorized)) {
		t.Errorf("handshake without a bearer: %v, want 401", err)
	}
}

// readerConn reads what the dialer buffered past the handshake first.
type readerConn struct {
	conn interface {
		Read([]byte) (int, error)
		Write([]byte) (int, error)
	}
	r *bufio.Reader
}

func (c readerConn) Read(p []byte) (int, error) {
	if c.r != nil && c.r.Buffered() > 0 {
		return c.r.Read(p)
	}
	return c.conn.Read(p)
}

func (c readerConn) Write(p []byte) (int, error) { return c.conn.Write(p) }

// sseEvent is one Server-Sent Event.
type sseEvent struct{ name, data string }

// readEvents reads n events.
func readEvents(t *testing.T, r *bufio.Reader, n int) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	for len(out) < n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d events: %v", len(out), err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			out = append(out, cur)
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return out
}

func subOf(t *testing.T, data string) string {
	t.Helper()
	var s subject
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		t.Fatalf("%q: %v", data, err)
	}
	return s.Sub
}
