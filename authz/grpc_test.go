package authz

import (
	"context"
	"net"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// TestGRPC registers the Server as Envoy's ext_authz service and calls Check
// over an in-memory connection: denials arrive as answers, never as errors.
func TestGRPC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, e.srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := authv3.NewAuthorizationClient(conn)

	cases := []struct {
		name   string
		in     *authv3.CheckRequest
		status int
	}{
		{"valid_session", creq("GET", "/api/orders", e.apiHeaders(), userRoute()), 200},
		{"T1_no_cookie", creq("GET", "/api/orders", map[string]string{csrfHeader: "1"}, userRoute()), 401},
		{"T13_no_csrf", creq("GET", "/api/orders", map[string]string{"cookie": e.sessionCookie()}, userRoute()), 403},
		{"empty_request", &authv3.CheckRequest{}, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(t.Context(), tc.in)
			if err != nil {
				t.Fatalf("gRPC error: %v", err)
			}
			if got := status(resp); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if tc.status == 200 {
				wantBearer(testToken)(t, e, resp)
			}
		})
	}
}

// TestConcurrentChecks shares one Server, and its precomputed responses,
// across goroutines; -race checks that marshalling them is read-only.
func TestConcurrentChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, quiet())
	reqs := []*authv3.CheckRequest{
		creq("GET", "/api/orders", e.apiHeaders(), userRoute()),
		creq("GET", "/api/orders", map[string]string{csrfHeader: "1"}, userRoute()),
		creq("GET", "/", nil, nil),
		creq("GET", "/api/orders", map[string]string{"cookie": e.sessionCookie()}, userRoute()),
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				resp, err := e.srv.Check(context.Background(), reqs[(g+i)%len(reqs)])
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := proto.Marshal(resp); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
