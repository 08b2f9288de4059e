package harness

import (
	"context"
	"strconv"
)

// StartRedis starts redis-server on a free loopback port with persistence
// off, and waits until it answers PING. extraArgs are added to its command
// line (for example "--appendonly", "yes").
func StartRedis(ctx context.Context, dir string, extraArgs ...string) (*Process, string, error) {
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	p, err := startRedisOn(ctx, dir, "redis-"+strconv.Itoa(port), port, append(serverArgs(dir, port), extraArgs...))
	if err != nil {
		return nil, "", err
	}
	return p, "127.0.0.1:" + strconv.Itoa(port), nil
}
