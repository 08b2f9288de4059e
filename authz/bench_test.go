package authz

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkCheckValidSession is the hot path: a valid session on a user
// route, one store Get (the memory store), no refresh, the session cookie
// stripped from others.
func BenchmarkCheckValidSession(b *testing.B) {
	benchValidSession(b, newEnv(b))
}

// BenchmarkCheckNoCookie is the cheapest denial: no store call at all.
func BenchmarkCheckNoCookie(b *testing.B) {
	e := newEnv(b)
	in := creq("GET", "/api/orders", map[string]string{csrfHeader: "1"}, userRoute())
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if resp, _ := e.srv.Check(ctx, in); resp.GetDeniedResponse() == nil {
			b.Fatal(resp)
		}
	}
}

// BenchmarkCheckValidSessionRedis is the hot path on the store users run:
// one GETEX to a real redis-server per Check.
func BenchmarkCheckValidSessionRedis(b *testing.B) {
	benchValidSession(b, withRedis(b, newEnv(b), false))
}

// BenchmarkCheckValidSessionRedisCached is the same with the session cache
// on: after the first Check the session is served from the process.
func BenchmarkCheckValidSessionRedisCached(b *testing.B) {
	benchValidSession(b, withRedis(b, newEnv(b), true))
}

// BenchmarkCheckValidSessionTraced is the hot path with tracing on, every
// span sampled and recorded, none exported (what tracing costs in
// envoy-bff; off, it costs nothing).
func BenchmarkCheckValidSessionTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	benchValidSession(b, newEnv(b, func(_ *Config, d *Deps) { d.Tracer = tp.Tracer("bench") }))
}

// benchValidSession runs Check on e's valid session until b is done.
func benchValidSession(b *testing.B, e *env) {
	in := creq("POST", "/api/orders/42?expand=items", e.apiHeaders(), userRoute())
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := e.srv.Check(ctx, in)
		if err != nil || resp.GetOkResponse() == nil {
			b.Fatal(resp, err)
		}
	}
}

// withRedis moves e's session to a real redis-server, with or without the
// session cache in front.
func withRedis(b *testing.B, e *env, cached bool) *env {
	sessions, creator := newRedisStore(b, cached)
	if err := creator.Create(b.Context(), e.id, validRecord()); err != nil {
		b.Fatal(err)
	}
	e.srv.sessions = sessions
	e.srv.peeker, _ = sessions.(SessionPeeker)
	return e
}
