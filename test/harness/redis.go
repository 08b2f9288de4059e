package harness

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// StartRedis starts redis-server on a free loopback port with persistence
// off, and waits until it answers PING. extraArgs are added to its command
// line (for example "--appendonly", "yes").
func StartRedis(ctx context.Context, dir string, extraArgs ...string) (*Process, string, error) {
	bin, err := findBinary("REDIS_SERVER_BIN", "redis-server", "run `make bootstrap` or apt-get install redis-server")
	if err != nil {
		return nil, "", err
	}
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "yes",
	}, extraArgs...)
	p, err := StartProcess("redis-"+strconv.Itoa(port), dir, bin, args, nil)
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
		if redisPing(addr) == nil {
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
