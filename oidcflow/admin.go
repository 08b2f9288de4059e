package oidcflow

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/envoy-bff/envoy-bff/session"
)

// AdminPathSessions is where session administration lives on the admin listener.
const AdminPathSessions = "/admin/sessions"

// AdminHandler serves session administration:
//
//	GET    /admin/sessions?sub=S   the user's sessions (never a token)
//	DELETE /admin/sessions?sub=S   end every session of the user
//	DELETE /admin/sessions/{ref}   end one session
//
// Ending a session revokes its refresh token, then deletes it, as logout
// does. With a token set, every request must carry it as a bearer token
// (compared in constant time); without one the listener must stay on
// loopback, which the config loader enforces.
func AdminHandler(s *Sessions, token string, logger *slog.Logger) http.Handler {
	logger = requestIDLogger(logger)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+AdminPathSessions, func(w http.ResponseWriter, r *http.Request) {
		sub := r.URL.Query().Get("sub")
		if sub == "" {
			adminError(w, http.StatusBadRequest, "invalid_request", "sub is required")
			return
		}
		list, err := s.List(r.Context(), sub)
		if err != nil {
			adminFault(w, r, logger, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
	})
	mux.HandleFunc("DELETE "+AdminPathSessions, func(w http.ResponseWriter, r *http.Request) {
		sub := r.URL.Query().Get("sub")
		if sub == "" {
			adminError(w, http.StatusBadRequest, "invalid_request", "sub is required")
			return
		}
		n, err := s.EndMatching(r.Context(), s.issuer, sub, "")
		if err != nil {
			adminFault(w, r, logger, err)
			return
		}
		s.metrics.loggedOut(logoutAdmin, n)
		logger.LogAttrs(r.Context(), slog.LevelInfo, "admin: sessions ended", slog.String("sub", sub), slog.Int("sessions_ended", n))
		writeJSON(w, http.StatusOK, map[string]int{"ended": n})
	})
	mux.HandleFunc("DELETE "+AdminPathSessions+"/{ref}", func(w http.ResponseWriter, r *http.Request) {
		ref := r.PathValue("ref")
		if !validRef(ref) {
			adminError(w, http.StatusBadRequest, "invalid_request", "malformed session ref")
			return
		}
		ended, err := s.End(r.Context(), session.Ref(ref))
		if err != nil {
			adminFault(w, r, logger, err)
			return
		}
		if !ended {
			adminError(w, http.StatusNotFound, "not_found", "no such session")
			return
		}
		s.metrics.loggedOut(logoutAdmin, 1)
		writeJSON(w, http.StatusOK, map[string]int{"ended": 1})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = withRequestID(w, r, rand.Reader)
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="envoy-bff admin"`)
				adminError(w, http.StatusUnauthorized, "unauthorized", "a valid admin bearer token is required")
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// validRef accepts the shape of a session ref (unpadded base64url of a hash).
func validRef(ref string) bool {
	if len(ref) < 16 || len(ref) > 128 {
		return false
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func adminError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// adminFault answers a store failure: 503, nothing ended that was not reported.
func adminFault(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	logger.LogAttrs(r.Context(), slog.LevelWarn, "admin: request failed", slog.String("path", r.URL.Path), slog.Any("error", err))
	if errors.Is(err, session.ErrUnavailable) {
		w.Header().Set("Retry-After", retryAfterSeconds)
		adminError(w, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable")
		return
	}
	adminError(w, http.StatusInternalServerError, "server_error", "internal error")
}
