package oidcflow

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/envoy-bff/envoy-bff/session"
)

// AdminPathSessions is where session administration lives on the admin listener.
const AdminPathSessions = "/admin/sessions"

// AdminHandler serves session administration for every frontend:
//
//	GET    /admin/sessions?frontend=F&sub=S   the user's sessions (never a token)
//	DELETE /admin/sessions?frontend=F&sub=S   end every session of the user
//	DELETE /admin/sessions/{ref}?frontend=F   end one session
//
// frontends is called per request, so a config reload's frontends are seen
// at once. frontend may be left out when there is exactly one frontend;
// otherwise its absence is a 400 invalid_request naming the frontends, and
// a name that is none of them a 404 frontend_unknown. Ending a session
// revokes its refresh token, then deletes it, as logout does. With a token
// set, every request must carry it as a bearer token (compared in constant
// time); without one the listener must stay on loopback, which the config
// loader enforces.
func AdminHandler(frontends func() []*Sessions, token string, logger *slog.Logger) http.Handler {
	logger = requestIDLogger(logger)
	if frontends == nil {
		frontends = func() []*Sessions { return nil }
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+AdminPathSessions, func(w http.ResponseWriter, r *http.Request) {
		s, ok := pickFrontend(w, r, frontends())
		if !ok {
			return
		}
		sub := r.URL.Query().Get("sub")
		if sub == "" {
			adminError(w, http.StatusBadRequest, "invalid_request", "sub is required")
			return
		}
		list, err := s.List(r.Context(), sub)
		if err != nil {
			adminFault(w, r, logger, s, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
	})
	mux.HandleFunc("DELETE "+AdminPathSessions, func(w http.ResponseWriter, r *http.Request) {
		s, ok := pickFrontend(w, r, frontends())
		if !ok {
			return
		}
		sub := r.URL.Query().Get("sub")
		if sub == "" {
			adminError(w, http.StatusBadRequest, "invalid_request", "sub is required")
			return
		}
		n, err := s.EndMatching(r.Context(), s.issuer, sub, "")
		if err != nil {
			adminFault(w, r, logger, s, err)
			return
		}
		s.metrics.loggedOut(logoutAdmin, n)
		logger.LogAttrs(r.Context(), slog.LevelInfo, "admin: sessions ended",
			slog.String(FrontendAttr, s.frontend), slog.String("sub", sub), slog.Int("sessions_ended", n))
		writeJSON(w, http.StatusOK, map[string]int{"ended": n})
	})
	mux.HandleFunc("DELETE "+AdminPathSessions+"/{ref}", func(w http.ResponseWriter, r *http.Request) {
		s, ok := pickFrontend(w, r, frontends())
		if !ok {
			return
		}
		ref := r.PathValue("ref")
		if !validRef(ref) {
			adminError(w, http.StatusBadRequest, "invalid_request", "malformed session ref")
			return
		}
		ended, err := s.End(r.Context(), session.Ref(ref))
		if err != nil {
			adminFault(w, r, logger, s, err)
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

// pickFrontend finds the Sessions r's ?frontend= names among all, or
// answers the error itself. The known names are no secret to an
// administrator, and listing them is what makes the 400 actionable.
func pickFrontend(w http.ResponseWriter, r *http.Request, all []*Sessions) (*Sessions, bool) {
	names := make([]string, 0, len(all))
	for _, s := range all {
		names = append(names, s.frontend)
	}
	slices.Sort(names)
	known := "known frontends: " + strings.Join(names, ", ")
	if len(all) == 0 {
		known = "no frontend is configured"
	}
	q := r.URL.Query()
	switch v := q["frontend"]; {
	case len(v) > 1:
		adminError(w, http.StatusBadRequest, "invalid_request", "frontend given more than once")
		return nil, false
	case len(v) == 0 || v[0] == "":
		if len(all) == 1 {
			return all[0], true
		}
		if len(all) == 0 {
			adminError(w, http.StatusNotFound, errFrontendUnknown, known)
			return nil, false
		}
		adminError(w, http.StatusBadRequest, "invalid_request", "frontend is required; "+known)
		return nil, false
	default:
		for _, s := range all {
			if s.frontend == v[0] {
				return s, true
			}
		}
		adminError(w, http.StatusNotFound, errFrontendUnknown, "no such frontend; "+known)
		return nil, false
	}
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
func adminFault(w http.ResponseWriter, r *http.Request, logger *slog.Logger, s *Sessions, err error) {
	logger.LogAttrs(r.Context(), slog.LevelWarn, "admin: request failed",
		slog.String(FrontendAttr, s.frontend), slog.String("path", r.URL.Path), slog.Any("error", err))
	if errors.Is(err, session.ErrUnavailable) {
		w.Header().Set("Retry-After", retryAfterSeconds)
		adminError(w, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable")
		return
	}
	adminError(w, http.StatusInternalServerError, "server_error", "internal error")
}
