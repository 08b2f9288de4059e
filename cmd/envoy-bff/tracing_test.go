package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// receiver is an OTLP/gRPC trace collector in the test process.
type receiver struct {
	collectorpb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	names []string // service.name of each resource
}

func (r *receiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				r.names = append(r.names, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	srv := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return r, lis.Addr().String()
}

// TestTracingExport: with tracing on, spans reach an OTLP/gRPC collector
// under the configured service name, provider calls are client spans that
// carry traceparent to the provider, and a Check's tracer joins them.
func TestTracingExport(t *testing.T) {
	t.Parallel()
	rcv, addr := startReceiver(t)
	c := defaultTracingConfig()
	c.Enabled, c.Endpoint, c.Insecure, c.SampleRatio, c.ServiceName = true, addr, true, 1, "bff-test"
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	tr, err := startTracing(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}

	parents := make(chan string, 1)
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parents <- r.Header.Get("Traceparent")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(provider.Close)

	ctx, span := tr.tracer().Start(t.Context(), "envoy-bff Check", trace.WithSpanKind(trace.SpanKindServer))
	hc := &http.Client{Transport: tr.transport(http.DefaultTransport)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, provider.URL+"/keys", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	span.End()
	if err := tr.shutdown(t.Context()); err != nil { // flushes to the receiver
		t.Fatal(err)
	}

	traceID := span.SpanContext().TraceID()
	gotParent := <-parents
	if gotParent == "" || gotParent[3:35] != traceID.String() {
		t.Errorf("the provider got traceparent %q, want one in trace %s", gotParent, traceID)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	names := map[string]bool{}
	for _, s := range rcv.spans {
		if trace.TraceID(s.GetTraceId()) == traceID {
			names[s.GetName()] = true
		}
	}
	if !names["envoy-bff Check"] || !names["provider GET /keys"] {
		t.Errorf("spans in the trace: %v, want the check and the provider call", names)
	}
	if len(rcv.names) == 0 || rcv.names[0] != "bff-test" {
		t.Errorf("service names %v, want bff-test", rcv.names)
	}
}

// TestTracingOffBuildsNothing: off, no provider exists and the wrappers
// hand back what they were given.
func TestTracingOffBuildsNothing(t *testing.T) {
	t.Parallel()
	tr, err := startTracing(t.Context(), defaultTracingConfig())
	if err != nil || tr != nil {
		t.Fatalf("tracing off: %v, %v", tr, err)
	}
	if tr.tracer() != nil || tr.transport(http.DefaultTransport) != http.DefaultTransport || tr.shutdown(t.Context()) != nil {
		t.Fatal("tracing off still wraps something")
	}
	mux := http.NewServeMux()
	if got, ok := tr.handler(mux).(*http.ServeMux); !ok || got != mux {
		t.Fatal("tracing off wraps the browser endpoints")
	}
}
