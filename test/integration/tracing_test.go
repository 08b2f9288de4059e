package integration

import (
	"context"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// otlpReceiver is an OTLP/gRPC trace collector in the test process.
type otlpReceiver struct {
	collectorpb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) all() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// TestTracing: the real binary with tracing on, behind real Envoy, sends
// its spans to an OTLP collector. An API call carrying a browser's
// traceparent is a Check span in that trace, under that parent; the login
// made provider-call spans; and no span attribute holds a token, the
// authorization code or the session cookie (T49 for traces).
func TestTracing(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{}
	srv := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(srv, rcv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	s := startStack(t, harness.Options{BFFConfig: func(doc map[string]any) {
		doc["tracing"] = map[string]any{"enabled": true, "endpoint": lis.Addr().String(), "insecure": true, "sample_ratio": 1}
	}})
	u := loginUser(t, s)
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/api/whoami?q=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Cookie", u.cookie)
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("API call: %d", resp.StatusCode)
	}
	s.BFFs[0].Stop(20 * time.Second) // shutting down flushes the spans

	var check *tracepb.Span
	names := map[string]int{}
	secrets := append(s.Provider.IssuedTokens(), strings.TrimPrefix(u.cookie, "__Host-bff="))
	for _, sp := range rcv.all() {
		names[sp.GetName()]++
		if sp.GetName() == "envoy-bff Check" && hex.EncodeToString(sp.GetTraceId()) == traceID {
			check = sp
		}
		for _, kv := range sp.GetAttributes() {
			for _, secret := range secrets {
				if strings.Contains(kv.GetValue().String(), secret) {
					t.Errorf("span %q attribute %s holds a token or the session cookie", sp.GetName(), kv.GetKey())
				}
			}
			if strings.Contains(kv.GetValue().String(), "code=") {
				t.Errorf("span %q attribute %s holds a query with the code", sp.GetName(), kv.GetKey())
			}
		}
	}
	if check == nil {
		t.Fatalf("no Check span in trace %s; spans: %v", traceID, names)
	}
	if hex.EncodeToString(check.GetParentSpanId()) != parentID {
		t.Errorf("the Check span's parent is %x, want the browser's %s", check.GetParentSpanId(), parentID)
	}
	attrs := map[string]*commonpb.AnyValue{}
	for _, kv := range check.GetAttributes() {
		attrs[kv.GetKey()] = kv.GetValue()
	}
	if attrs["envoy_bff.answer"].GetStringValue() != "ok" || attrs["envoy_bff.policy"].GetStringValue() != "user" ||
		attrs["url.path"].GetStringValue() != "/api/whoami" || attrs["envoy_bff.request_id"].GetStringValue() == "" {
		t.Errorf("Check span attributes: %v", attrs)
	}
	if names["provider POST "+oidctest.PathToken] == 0 || names["GET /bff/callback"] == 0 {
		t.Errorf("no token-endpoint or callback span from the login; spans: %v", names)
	}
}
