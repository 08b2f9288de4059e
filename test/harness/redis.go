package harness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
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
	bin, err := findBinary("REDIS_SERVER_BIN", "redis-server", "run `make bootstrap` or apt-get install redis-server")
	if err != nil {
		return nil, "", err
	}
	port := o.Port
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, "", err
		}
	}
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", o.Dir, "--protected-mode", "yes",
	}
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
	p, err := StartProcess("redis-"+strconv.Itoa(port), o.Dir, bin, args, nil)
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if exited, werr := p.Exited(); exited {
			return nil, "", fmt.Errorf("redis-server exited while starting (%v):\n%s", werr, p.Tail(2000))
		}
		err := redisPing(addr)
		if err == nil || o.AcceptLoading && strings.HasPrefix(err.Error(), "-LOADING") {
			return p, addr, nil
		}
		select {
		case <-ctx.Done():
			p.Stop(time.Second)
			return nil, "", fmt.Errorf("redis-server at %s did not answer PING: %w", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
