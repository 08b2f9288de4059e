package oidcflow

import (
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
)

// retryAfterSeconds is the Retry-After sent with every 503.
const retryAfterSeconds = "2"

// errorBody is every deny body: a fixed code and a fixed text, never input.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// noStore marks a response as private and never cached.
func noStore(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
}

// writeJSON answers v as JSON, never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	noStore(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// redirect answers 302 to loc, never cached.
func redirect(w http.ResponseWriter, loc string) {
	noStore(w)
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusFound)
}

// deny answers err per the denials table, as JSON, or as a small page when
// page is set and the request is a browser navigation (Accept: text/html).
// The log line carries err, which never holds a token, code or cookie value.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, err error, page bool) {
	d := denialFor(err)
	lvl := slog.LevelInfo
	if d.status >= 500 {
		lvl = slog.LevelWarn
	}
	h.logger.LogAttrs(r.Context(), lvl, "oidcflow: request denied",
		slog.String("path", r.URL.Path), slog.Int("status", d.status), slog.String("error_code", d.code), slog.Any("error", err))
	if d.retry {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	if d.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" { // endpoints with other methods set their own
		w.Header().Set("Allow", "GET, HEAD")
	}
	if page && strings.Contains(r.Header.Get("Accept"), "text/html") {
		noStore(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.WriteHeader(d.status)
		_ = errorPage.Execute(w, struct{ Code, Description, Home string }{d.code, d.description, h.home})
		return
	}
	writeJSON(w, d.status, errorBody{Error: d.code, Description: d.description})
}

// errorPage is what a person sees when a sign-in navigation fails. Every
// value in it comes from the denials table or the config, never from the
// request.
var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in problem</title>
<style>body{font:16px system-ui,sans-serif;max-width:36rem;margin:4rem auto;color:#222}code{color:#555}</style>
</head><body><h1>Sign-in problem</h1><p>{{.Description}}.</p><p><code>{{.Code}}</code></p>
<p><a href="{{.Home}}">Back to the application</a></p></body></html>
`))
