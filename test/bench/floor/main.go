// Command floor is the benchmark's floor: the least an ext_authz server can
// do per Check. With --redis it also makes one Redis GET per Check, the
// least a server with Redis-backed sessions can do. `make bench` compares
// envoy-bff against both, measured in the same run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/envoy-bff/envoy-bff/session"
)

// server answers every Check with OK and one header.
type server struct {
	authv3.UnimplementedAuthorizationServer
	rdb *redis.Client
	ok  *authv3.CheckResponse
}

func (s *server) Check(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if s.rdb != nil {
		if err := s.rdb.Get(ctx, "floor:session").Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
	}
	return s.ok, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "gRPC address")
	redisAddr := flag.String("redis", "", "make one GET per Check on this Redis (host:port)")
	bearerLen := flag.Int("bearer-len", 1000, "length of the bearer token each answer carries (the real access token's)")
	bearerFile := flag.String("bearer-file", "", "a file holding the bearer token each answer carries (instead of --bearer-len filler): an API behind Envoy then accepts it")
	valueLen := flag.Int("value-len", 2600, "length of the value GET reads (a sealed session record's)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "Usage: floor [--listen ADDR] [--redis HOST:PORT] [--bearer-len N | --bearer-file FILE] [--value-len N]\n\nA minimal ext_authz server: the benchmark's floor.\n\nFlags:")
		flag.PrintDefaults()
	}
	flag.Parse()
	bearer := strings.Repeat("f", *bearerLen)
	if *bearerFile != "" {
		raw, err := os.ReadFile(*bearerFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		bearer = strings.TrimSpace(string(raw))
	}
	s := &server{ok: &authv3.CheckResponse{
		Status: &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "authorization", Value: "Bearer " + bearer}}},
		}},
	}}
	if *redisAddr != "" {
		// RESP2, as envoy-bff speaks it: the cheapest a GET gets with
		// go-redis. The pool is envoy-bff's default (redis.pool_size), so
		// both queue alike under the same load.
		pool := session.DefaultConfig().Redis.PoolSize
		s.rdb = redis.NewClient(&redis.Options{Addr: *redisAddr, PoolSize: pool, Protocol: 2})
		if err := s.rdb.Set(context.Background(), "floor:session", make([]byte, *valueLen), 0).Err(); err != nil {
			fmt.Fprintln(os.Stderr, "floor: redis:", err)
			os.Exit(1)
		}
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	// As envoy-bff's gRPC server (cmd/envoy-bff grpcStreamWorkers), so the
	// ratio measures envoy-bff's work, not a transport setting.
	g := grpc.NewServer(grpc.NumStreamWorkers(128))
	authv3.RegisterAuthorizationServer(g, s)
	fmt.Println(l.Addr().String()) // the orchestrator reads where to connect
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		g.GracefulStop()
	}()
	if err := g.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}
