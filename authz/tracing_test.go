package authz

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"
)

// withTracer records every Check's span.
func withTracer(rec *tracetest.SpanRecorder) envOption {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	return func(_ *Config, d *Deps) { d.Tracer = tp.Tracer("authz-test") }
}

// TestTracing: with a tracer, each Check is one server span, a child of the
// trace context Envoy sent, whose attributes say how it was answered and
// carry no token, cookie or session ID (T49).
func TestTracing(t *testing.T) {
	t.Parallel()
	const (
		headerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		grpcTrace   = "0af7651916cd43dd8448eb211c80319c"
	)
	traceparent := func(traceID string) string { return "00-" + traceID + "-00f067aa0ba902b7-01" }
	tests := []struct {
		name      string
		ctx       func() context.Context
		change    map[string]string
		wantTrace string
		want      map[string]any
	}{
		{
			name:      "ok_child_of_the_requests_traceparent",
			ctx:       context.Background,
			change:    map[string]string{"traceparent": traceparent(headerTrace)},
			wantTrace: headerTrace,
			want: map[string]any{"envoy_bff.policy": "user", "envoy_bff.answer": "ok", "http.response.status_code": int64(200),
				"http.request.method": "GET", "url.path": "/api/orders", "envoy_bff.request_id": "req-1"},
		},
		{
			name: "envoys_grpc_span_wins",
			ctx: func() context.Context {
				return metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", traceparent(grpcTrace)))
			},
			change:    map[string]string{"traceparent": traceparent(headerTrace)},
			wantTrace: grpcTrace,
			want:      map[string]any{"envoy_bff.answer": "ok"},
		},
		{
			name:   "denial_without_parent_is_a_root",
			ctx:    context.Background,
			change: map[string]string{"cookie": ""},
			want:   map[string]any{"envoy_bff.answer": "unauthenticated", "http.response.status_code": int64(401)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			e := newEnv(t, withTracer(rec))
			if _, err := e.srv.Check(tc.ctx(), api(tc.change)(e)); err != nil {
				t.Fatal(err)
			}
			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			sp := spans[0]
			if tc.wantTrace != "" && (sp.SpanContext().TraceID().String() != tc.wantTrace || !sp.Parent().IsRemote()) {
				t.Errorf("trace %s (remote parent %v), want a child in %s", sp.SpanContext().TraceID(), sp.Parent().IsRemote(), tc.wantTrace)
			}
			if tc.wantTrace == "" && sp.Parent().IsValid() {
				t.Errorf("span has a parent %s", sp.Parent().SpanID())
			}
			got := map[string]any{}
			for _, kv := range sp.Attributes() {
				got[string(kv.Key)] = kv.Value.AsInterface()
				for _, secret := range []string{testToken, testFresh, e.idStr, "rt-secret", cookieName + "="} {
					if kv.Value.Type() == attribute.STRING && strings.Contains(kv.Value.AsString(), secret) {
						t.Errorf("attribute %s carries a secret", kv.Key)
					}
				}
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v (%T), want %v", k, got[k], got[k], v)
				}
			}
		})
	}
}

// TestTracingOff: without a tracer nothing is recorded anywhere, and Check
// answers as before (its cost is BenchmarkCheckValidSession's).
func TestTracingOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if e.srv.tracer != nil {
		t.Fatal("a tracer without Deps.Tracer")
	}
	if resp := e.check(t, api(map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})(e)); status(resp) != 200 {
		t.Fatalf("status %d", status(resp))
	}
}
