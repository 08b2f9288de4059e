package authz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/envoy-bff/envoy-bff/oidcflow"
)

// traceContext is the W3C trace context (traceparent, tracestate), what
// Envoy's OpenTelemetry tracer and browsers' OpenTelemetry SDKs send.
var traceContext propagation.TraceContext

// Span attributes of a Check. None carries a header value other than the
// request ID: never a cookie, token or query.
const (
	attrFrontend  = attribute.Key("envoy_bff.frontend")
	attrPolicy    = attribute.Key("envoy_bff.policy")
	attrAnswer    = attribute.Key("envoy_bff.answer")
	attrStatus    = attribute.Key("http.response.status_code")
	attrMethod    = attribute.Key("http.request.method")
	attrPath      = attribute.Key("url.path") // normalised, without the query
	attrRequestID = attribute.Key("envoy_bff." + oidcflow.RequestIDAttr)
)

// tracedCheck is Check inside a span. Its parent is the span Envoy sent
// with the gRPC call (Envoy tracing on), else the traceparent of the
// request being authorized (a browser's own trace), else none.
func (s *Server) tracedCheck(ctx context.Context, in *authv3.CheckRequest) *authv3.CheckResponse {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = traceContext.Extract(ctx, metadataCarrier(md))
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = traceContext.Extract(ctx, headerCarrier(in.GetAttributes().GetRequest().GetHttp().GetHeaders()))
	}
	ctx, span := s.tracer.Start(ctx, "envoy-bff Check", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	var out checked
	resp := s.check(ctx, in, &out)
	code := 200
	if d := resp.GetDeniedResponse(); d != nil {
		code = int(d.GetStatus().GetCode())
	}
	span.SetAttributes(
		attrFrontend.String(out.frontend),
		attrPolicy.String(policyLabel(out.req.policy)),
		attrAnswer.String(out.answer),
		attrStatus.Int(code),
		attrMethod.String(out.req.method),
		attrPath.String(out.req.path),
		attrRequestID.String(out.req.id),
	)
	if code >= 500 {
		span.SetStatus(codes.Error, out.answer)
	}
	return resp
}

// policyLabel names a policy in metrics and spans.
func policyLabel(p Policy) string {
	if p == "" {
		return "unknown" // the request was refused before its policy was known
	}
	return string(p)
}

// headerCarrier reads trace context from a CheckRequest's headers (Envoy
// lower-cases their names).
type headerCarrier map[string]string

func (h headerCarrier) Get(key string) string { return h[key] }
func (h headerCarrier) Set(string, string)    {} // extraction only
func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// metadataCarrier reads trace context from gRPC metadata.
type metadataCarrier metadata.MD

func (m metadataCarrier) Get(key string) string {
	if v := metadata.MD(m).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (m metadataCarrier) Set(string, string) {} // extraction only
func (m metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
