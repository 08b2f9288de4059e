package oidcflow

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestRequestID: every log line about a browser request names it by
// Envoy's x-request-id (request_id), one is made up when Envoy sent none
// or an unusable one, and the answer echoes it.
func TestRequestID(t *testing.T) {
	t.Parallel()
	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, tc := range []struct {
		name   string
		header string // "" sends none
		want   string // "" expects a generated ID
	}{
		{name: "from_envoy", header: "3f6c1a8e-5b0d-4d8e-9f1a-2b3c4d5e6f70", want: "3f6c1a8e-5b0d-4d8e-9f1a-2b3c4d5e6f70"},
		{name: "absent_generated"},
		{name: "with_space_replaced", header: "a b"},
		{name: "too_long_replaced", header: strings.Repeat("x", maxRequestID+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			h := http.Header{}
			if tc.header != "" {
				h.Set("X-Request-Id", tc.header)
			}
			r := e.browser().do(http.MethodGet, "/bff/callback?state=s&code=c", h)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("callback: %d", r.Status)
			}
			got := r.Header.Get("X-Request-Id")
			switch {
			case tc.want != "" && got != tc.want:
				t.Fatalf("answer's X-Request-Id %q, want %q", got, tc.want)
			case tc.want == "" && !generated.MatchString(got):
				t.Fatalf("answer's X-Request-Id %q is not a generated one", got)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, "msg=\"oidcflow: request denied\"") || !strings.Contains(logs, "request_id="+got) {
				t.Fatalf("the denial's log line does not carry request_id=%s:\n%s", got, logs)
			}
			if tc.header != "" && tc.want == "" && strings.Contains(logs, tc.header) {
				t.Fatal("the refused x-request-id reached the log")
			}
		})
	}
}

// TestRequestIDLogger: lines logged under a context with a request ID
// carry it once, however often the logger is wrapped or given attributes;
// lines without one are left alone.
func TestRequestIDLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := requestIDLogger(requestIDLogger(slog.New(slog.NewTextHandler(&buf, nil)))).With("component", "x")
	l = requestIDLogger(l)
	l.InfoContext(WithRequestID(context.Background(), "r-1"), "with", "a", 1, "b", 2, "c", 3, "d", 4, "e", 5, "f", 6)
	l.InfoContext(context.Background(), "without")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	if strings.Count(lines[0], "request_id=r-1") != 1 || !strings.Contains(lines[0], "component=x") || !strings.Contains(lines[0], "f=6") {
		t.Errorf("line with a request ID: %s", lines[0])
	}
	if strings.Contains(lines[1], "request_id") {
		t.Errorf("line without a request ID: %s", lines[1])
	}
}
