package oidcflow

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
)

// Router serves the browser listener for every frontend: it picks the
// frontend by the request's host and longest path_prefix, exactly as
// Selector does, and lets that frontend's handler answer. A request no
// frontend serves is a 404 frontend_unknown. Set swaps the whole set at
// once, so a config reload never serves a mix of old and new frontends.
type Router struct {
	sel    atomic.Pointer[Selector[http.Handler]]
	logger *slog.Logger
}

var _ http.Handler = (*Router)(nil)

// NewRouter builds a Router serving routes[i] with handlers[i] (usually
// each frontend's *Handler); logger receives a line per request no frontend
// serves (nil discards).
func NewRouter(routes []Route, handlers []http.Handler, logger *slog.Logger) (*Router, error) {
	r := &Router{logger: requestIDLogger(logger)}
	if err := r.Set(routes, handlers); err != nil {
		return nil, err
	}
	return r, nil
}

// Set replaces every route and handler at once; on error the Router keeps
// serving what it had. Requests already inside a handler finish there.
func (rt *Router) Set(routes []Route, handlers []http.Handler) error {
	for i, h := range handlers {
		if h == nil {
			return fmt.Errorf("set browser routes: handlers[%d] is nil", i)
		}
	}
	sel, err := NewSelector(routes, handlers)
	if err != nil {
		return fmt.Errorf("set browser routes: %w", err)
	}
	rt.sel.Store(sel)
	return nil
}

// ServeHTTP hands r to its frontend's handler, by r.Host and r.URL.Path.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := rt.sel.Load().Select(r.Host, r.URL.Path); ok {
		h.ServeHTTP(w, r)
		return
	}
	r = withRequestID(w, r, rand.Reader)
	rt.logger.LogAttrs(r.Context(), slog.LevelInfo, "oidcflow: no frontend serves this request",
		slog.String("host", r.Host), slog.String("path", r.URL.Path), slog.Int("status", http.StatusNotFound),
		slog.String("error_code", errFrontendUnknown))
	writeJSON(w, http.StatusNotFound, errorBody{Error: errFrontendUnknown, Description: "no frontend serves this host and path"})
}

// errFrontendUnknown is the error code of a request or admin call naming
// no configured frontend.
const errFrontendUnknown = "frontend_unknown"
