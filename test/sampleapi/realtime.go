package sampleapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Bounds of the realtime endpoints: a test or demo stream ends by itself.
const (
	// eventTicks is how many ticks /api/events sends after hello.
	eventTicks = 60
	// wsEchoes is how many messages /api/ws echoes before it closes.
	wsEchoes = 100
	// wsIdle closes a WebSocket that sent nothing for this long.
	wsIdle = time.Minute
)

// subject is the realtime endpoints' message: who the bearer token names.
type subject struct {
	Sub string `json:"sub"`
}

// realtimeSubject answers 401 (as whoami does for an audience API) unless r
// carries a verified bearer token, and returns its subject. It counts every
// request that reached a realtime endpoint.
func (a *API) realtimeSubject(w http.ResponseWriter, r *http.Request) (string, bool) {
	a.realtime.Add(1)
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeJSON(w, http.StatusMethodNotAllowed, apiError{"method_not_allowed", "use GET"})
		return "", false
	}
	out, verified := a.whoami(r)
	if !verified || out.Sub == "" {
		a.reject(w, out)
		return "", false
	}
	return out.Sub, true
}

// events is GET /api/events, Server-Sent Events: `event: hello` with the
// bearer's subject, then a tick every EventInterval, eventTicks of them,
// until the client goes away.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.realtimeSubject(w, r)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	hello, _ := json.Marshal(subject{Sub: sub})
	if _, err := fmt.Fprintf(w, "event: hello\ndata: %s\n\n", hello); err != nil || rc.Flush() != nil {
		return
	}
	a.streams.Add(1)
	t := time.NewTicker(a.cfg.EventInterval)
	defer t.Stop()
	for i := 1; i <= eventTicks; i++ {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		if _, err := fmt.Fprintf(w, "event: tick\ndata: {\"n\":%d}\n\n", i); err != nil || rc.Flush() != nil {
			return
		}
	}
}

// websocket is GET /api/ws: after the handshake, one text message with the
// bearer's subject, then every text message echoed, wsEchoes of them.
func (a *API) websocket(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.realtimeSubject(w, r)
	if !ok {
		return
	}
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return // UpgradeHTTP answered the bad handshake itself
	}
	defer conn.Close()
	a.streams.Add(1)
	hello, _ := json.Marshal(subject{Sub: sub})
	if err := wsutil.WriteServerText(conn, hello); err != nil {
		return
	}
	for range wsEchoes {
		if err := conn.SetReadDeadline(time.Now().Add(wsIdle)); err != nil {
			return
		}
		msg, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return // closed by the client, or idle
		}
		if op != ws.OpText {
			continue
		}
		if err := wsutil.WriteServerText(conn, msg); err != nil {
			return
		}
	}
}
