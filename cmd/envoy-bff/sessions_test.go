package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestSessionsFrontend: --frontend travels as ?frontend= on every call, is
// left out when not given, and the replica's refusal (which names the
// frontends it knows) reaches the operator.
func TestSessionsFrontend(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		q := r.URL.Query()
		switch {
		case q.Get("frontend") == "":
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "frontend is required; known frontends: admin, shop"})
		case r.Method == http.MethodGet:
			_ = json.NewEncoder(w).Encode(map[string]any{"sessions": []map[string]any{{"ref": "ref-of-one-session", "sid": "s1"}}})
		default:
			_ = json.NewEncoder(w).Encode(map[string]int{"ended": 1})
		}
	}))
	t.Cleanup(srv.Close)
	const ref = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantCall string
	}{
		{"list", []string{"list", "--frontend", "shop", "--sub", "a b"}, 0, "ref-of-one-session", "GET /admin/sessions?frontend=shop&sub=a+b"},
		{"revoke_sub", []string{"revoke", "--frontend", "shop", "--sub", "u"}, 0, "ended 1 session(s)", "DELETE /admin/sessions?frontend=shop&sub=u"},
		{"revoke_ref", []string{"revoke", "--frontend", "admin", "--ref", ref}, 0, "ended 1 session(s)", "DELETE /admin/sessions/" + ref + "?frontend=admin"},
		{"no_frontend", []string{"list", "--sub", "u"}, 1, "invalid_request: frontend is required; known frontends: admin, shop", "GET /admin/sessions?sub=u"},
		{"no_frontend_ref", []string{"revoke", "--ref", ref}, 1, "known frontends: admin, shop", "DELETE /admin/sessions/" + ref},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := runSessions(t.Context(), append(tc.args, "--admin", srv.URL), &out, &errOut, func(string) (string, bool) { return "", false })
			if code != tc.wantCode || !strings.Contains(out.String()+errOut.String(), tc.wantOut) {
				t.Fatalf("code %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, tc.wantCode, out.String(), errOut.String(), tc.wantOut)
			}
			mu.Lock()
			last := seen[len(seen)-1]
			mu.Unlock()
			if last != tc.wantCall {
				t.Fatalf("called %q, want %q", last, tc.wantCall)
			}
		})
	}
}
