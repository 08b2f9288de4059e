package harness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// RedisOptions shapes one redis-server started by StartRedisWith.
type RedisOptions struct {
	// Dir is the working directory: the log, and the RDB or AOF files when
	// persistence is on (required).
	Dir string
	// Port is the port on 127.0.0.1 (0: a free one). Give the port of a
	// stopped server to restart it where its clients expect it.
	Port int
	// AppendOnly turns on the append-only file with appendfsync always, so
	// every acknowledged write survives a restart.
	AppendOnly bool
	// ReplicaOf (host:port) starts the server as a read-only replica of that master.
	ReplicaOf string
	// AcceptLoading returns as soon as the server answers at all, even with
	// LOADING while it reads its dataset, instead of waiting for PONG.
	AcceptLoading bool
	// Args are added to the command line last, so they win (for example
	// "--maxmemory", "10mb").
	Args []string
}

// StartRedis starts redis-server on a free loopback port with persistence
// off, and waits until it answers PING. extraArgs are added to its command
// line (for example "--appendonly", "yes").
func StartRedis(ctx context.Context, dir string, extraArgs ...string) (*Process, string, error) {
	return StartRedisWith(ctx, RedisOptions{Dir: dir, Args: extraArgs})
}

// StartRedisWith starts redis-server as o says (persistence off unless
// AppendOnly) and waits until it answers PING, and returns the process and
// its host:port.
func StartRedisWith(ctx context.Context, o RedisOptions) (*Process, string, error) {
	port := o.Port
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, "", err
		}
	}
	args := serverArgs(o.Dir, port)
	if o.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	if o.ReplicaOf != "" {
		host, mport, ok := strings.Cut(o.ReplicaOf, ":")
		if !ok {
			return nil, "", fmt.Errorf("start redis: ReplicaOf must be host:port, got %q", o.ReplicaOf)
		}
		args = append(args, "--replicaof", host, mport)
	}
	args = append(args, o.Args...)
	accept := func(err error) bool { return err == nil }
	if o.AcceptLoading {
		accept = func(err error) bool { return err == nil || strings.HasPrefix(err.Error(), "-LOADING") }
	}
	p, err := startRedisAccepting(ctx, o.Dir, "redis-"+strconv.Itoa(port), port, args, accept)
	if err != nil {
		return nil, "", err
	}
	return p, "127.0.0.1:" + strconv.Itoa(port), nil
}
