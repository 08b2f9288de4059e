package oidcflow

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
)

// RequestIDAttr is the log attribute that names the request a line is
// about: Envoy's x-request-id, in authz and oidcflow alike.
const RequestIDAttr = "request_id"

// maxRequestID bounds an incoming x-request-id; a longer or odd one is
// replaced, so a client cannot fill the log through it.
const maxRequestID = 128

// requestIDKey carries the request ID in a context.
type requestIDKey struct{}

// WithRequestID returns ctx carrying the request ID id, which every log
// line oidcflow writes under ctx then carries as request_id.
func WithRequestID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request ID ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestIDOf is the request's x-request-id (Envoy sets one on every
// request it forwards), or a new random one when it has none or one that
// is too long or not printable ASCII.
func requestIDOf(r *http.Request, rnd io.Reader) string {
	if v := r.Header.Values("X-Request-Id"); len(v) == 1 && validRequestID(v[0]) {
		return v[0]
	}
	var b [16]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "unknown"
	}
	return hex.EncodeToString(b[:])
}

func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\' {
			return false
		}
	}
	return true
}

// withRequestID gives r a context carrying its request ID and echoes the
// ID on the response, so a user's report can name the log lines.
func withRequestID(w http.ResponseWriter, r *http.Request, rnd io.Reader) *http.Request {
	id := requestIDOf(r, rnd)
	w.Header().Set("X-Request-Id", id)
	return r.WithContext(WithRequestID(r.Context(), id))
}

// requestIDLogger returns l adding request_id from the context to each
// line; a logger that does so already is returned as it is.
func requestIDLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	if _, ok := l.Handler().(requestIDHandler); ok {
		return l
	}
	return slog.New(requestIDHandler{Handler: l.Handler()})
}

// frontendLogger is requestIDLogger(l) with every line carrying the
// frontend attribute; a logger bound to that frontend already (a Handler's
// logger handed on) is returned as it is, so no line carries it twice.
func frontendLogger(l *slog.Logger, frontend string) *slog.Logger {
	l = requestIDLogger(l)
	h, ok := l.Handler().(requestIDHandler)
	if !ok || h.frontend == frontend { // !ok: nil, so nothing is logged at all
		return l
	}
	return slog.New(requestIDHandler{Handler: h.Handler.WithAttrs([]slog.Attr{slog.String(FrontendAttr, frontend)}), frontend: frontend})
}

// requestIDHandler adds request_id to every record whose context has one.
type requestIDHandler struct {
	slog.Handler
	frontend string // the frontend attribute Handler adds already, if any
}

// Handle implements slog.Handler.
func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r = r.Clone() // the caller's record may share its attribute storage
		r.AddAttrs(slog.String(RequestIDAttr, id))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs), h.frontend}
}

// WithGroup implements slog.Handler.
func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name), h.frontend}
}
