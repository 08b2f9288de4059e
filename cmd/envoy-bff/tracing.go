package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// tracingConfig is the `tracing:` section: OpenTelemetry spans for every
// Check and every provider call, exported over OTLP/gRPC. Off by default;
// off, nothing is built and Check costs what it did without it.
type tracingConfig struct {
	// Enabled turns tracing on.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the OTLP/gRPC collector, host:port (default 127.0.0.1:4317).
	Endpoint string `yaml:"endpoint"`
	// Insecure sends spans without TLS (a collector on the same host or pod).
	Insecure bool `yaml:"insecure"`
	// SampleRatio is the share of new traces recorded, 0 to 1 (default
	// 0.1). A request whose parent (Envoy, the browser) was sampled is
	// always recorded, one whose parent was not never is.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName names envoy-bff in the traces (default envoy-bff).
	ServiceName string `yaml:"service_name"`
}

func defaultTracingConfig() tracingConfig {
	return tracingConfig{Endpoint: "127.0.0.1:4317", SampleRatio: 0.1, ServiceName: "envoy-bff"}
}

func (c tracingConfig) validate() error {
	var errs []error
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		errs = append(errs, fmt.Errorf("sample_ratio: must be between 0 and 1, got %v", c.SampleRatio))
	}
	if !c.Enabled {
		return errors.Join(errs...)
	}
	if _, _, err := net.SplitHostPort(c.Endpoint); err != nil {
		errs = append(errs, fmt.Errorf("endpoint: must be host:port, got %q", c.Endpoint))
	}
	if c.ServiceName == "" {
		errs = append(errs, errors.New("service_name: required when tracing is enabled"))
	}
	return errors.Join(errs...)
}

// tracing is what the other parts need when tracing is on.
type tracing struct {
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
}

// startTracing builds the exporter and tracer provider; the exporter
// connects lazily, so a collector that is down costs spans, not start-up.
// It returns nil when tracing is off.
func startTracing(ctx context.Context, c tracingConfig) (*tracing, error) {
	if !c.Enabled {
		return nil, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(c.Endpoint)}
	if c.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("start tracing: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", c.ServiceName),
		attribute.String("service.version", version)))
	if err != nil {
		return nil, fmt.Errorf("start tracing: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
	)
	return &tracing{provider: tp, propagator: propagation.TraceContext{}}, nil
}

// tracer is the tracer for Check, or nil when tracing is off.
func (t *tracing) tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.provider.Tracer("github.com/envoy-bff/envoy-bff/authz")
}

// transport wraps rt so each provider call is a client span (the request
// URL, method and status; never a header or body: the forms carry codes
// and tokens) and carries traceparent to the provider.
func (t *tracing) transport(rt http.RoundTripper) http.RoundTripper {
	if t == nil {
		return rt
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "provider " + r.Method + " " + r.URL.Path }))
}

// handler wraps the browser endpoints so each request is a server span,
// a child of the traceparent Envoy forwarded. The span keeps the path,
// never the query (the callback's carries the code and state).
func (t *tracing) handler(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return otelhttp.NewHandler(h, "envoy-bff browser",
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }))
}

// shutdown flushes the spans still buffered.
func (t *tracing) shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}
