package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bounds of the topology start-ups: each is a few seconds on a busy
// machine; these only stop a broken start-up from hanging a suite.
const (
	topologyStartTimeout = 30 * time.Second
	portAttempts         = 3 // a port found free may be taken before redis-server binds it
)

// startRedisOn runs redis-server (or, with args naming a config file and
// --sentinel, a Sentinel) on port, waiting until it answers PING.
func startRedisOn(ctx context.Context, dir, name string, port int, args []string) (*Process, error) {
	// A server with a password answers, refusing: it is up.
	return startRedisAccepting(ctx, dir, name, port, args, func(err error) bool {
		return err == nil || strings.HasPrefix(err.Error(), "-NOAUTH")
	})
}

// startRedisAccepting starts a redis-server and waits until its answer to
// PING satisfies up.
func startRedisAccepting(ctx context.Context, dir, name string, port int, args []string, up func(error) bool) (*Process, error) {
	bin, err := findBinary("REDIS_SERVER_BIN", "redis-server", "run `make bootstrap` or apt-get install redis-server")
	if err != nil {
		return nil, err
	}
	p, err := StartProcess(name, dir, bin, args, nil)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if exited, werr := p.Exited(); exited {
			return nil, fmt.Errorf("%s exited while starting (%v):\n%s", name, werr, p.Tail(2000))
		}
		if up(redisPing(addr)) {
			return p, nil
		}
		select {
		case <-ctx.Done():
			p.Stop(time.Second)
			return nil, fmt.Errorf("%s at %s did not answer PING: %w", name, addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// serverArgs are the command-line options every topology node shares:
// loopback only, persistence off.
func serverArgs(dir string, port int) []string {
	return []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "yes",
	}
}

// startRetrying starts one server on a fresh port from pick, trying again
// on another when the start fails (most often: the port was taken).
func startRetrying(ctx context.Context, pick func() (int, error), start func(port int) (*Process, error)) (*Process, int, error) {
	var last error
	for range portAttempts {
		port, err := pick()
		if err != nil {
			return nil, 0, err
		}
		p, err := start(port)
		if err == nil {
			return p, port, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, 0, last
}

// RedisSentinel is a real Sentinel deployment on loopback: one master, one
// replica of it, and Sentinels monitoring the master under MasterName.
type RedisSentinel struct {
	// MasterName is the name the Sentinels know the master by.
	MasterName string
	// Master and Replica are the data nodes as started; after a failover
	// their roles are swapped (ask a Sentinel, see CurrentMaster).
	Master, Replica *Process
	// MasterAddr and ReplicaAddr are their host:port as started.
	MasterAddr, ReplicaAddr string
	// Sentinels are the Sentinel processes; SentinelAddrs their host:port.
	Sentinels     []*Process
	SentinelAddrs []string

	password, sentinelPassword string
	closeOnce                  sync.Once
}

// data are client options for a data node at addr.
func (s *RedisSentinel) data(addr string) *redis.Options {
	return &redis.Options{Addr: addr, Password: s.password, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1}
}

// sentinel are client options for a Sentinel at addr.
func (s *RedisSentinel) sentinel(addr string) *redis.Options {
	return &redis.Options{Addr: addr, Password: s.sentinelPassword, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1}
}

// SentinelOptions shapes a Sentinel deployment.
type SentinelOptions struct {
	// Sentinels is how many Sentinels watch the master: 1 to 3 (default 3).
	Sentinels int
	// Password, when set, is the data nodes' requirepass (and the
	// replica's masterauth, and the Sentinels' auth-pass).
	Password string
	// SentinelPassword, when set, is the Sentinels' own requirepass.
	SentinelPassword string
}

// StartSentinel starts a master, a replica that has finished its first
// sync, and Sentinels (quorum a majority of them) that all see the master,
// the replica and each other, so a failover can start at once. Close stops
// every process. Nothing is persisted; each Sentinel's config file lives in
// dir.
func StartSentinel(ctx context.Context, dir string, o SentinelOptions) (_ *RedisSentinel, err error) {
	n := o.Sentinels
	if n == 0 {
		n = 3
	}
	if n < 1 || n > 3 {
		return nil, fmt.Errorf("start sentinel: %d sentinels, want 1 to 3", n)
	}
	ctx, cancel := context.WithTimeout(ctx, topologyStartTimeout)
	defer cancel()
	s := &RedisSentinel{MasterName: "bffmaster", password: o.Password, sentinelPassword: o.SentinelPassword}
	dataArgs := func(port int) []string {
		args := serverArgs(dir, port)
		if o.Password != "" {
			args = append(args, "--requirepass", o.Password, "--masterauth", o.Password)
		}
		return args
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	p, port, err := startRetrying(ctx, FreePort, func(port int) (*Process, error) {
		return startRedisOn(ctx, dir, "redis-master-"+strconv.Itoa(port), port, dataArgs(port))
	})
	if err != nil {
		return nil, fmt.Errorf("start sentinel master: %w", err)
	}
	s.Master, s.MasterAddr = p, "127.0.0.1:"+strconv.Itoa(port)
	p, port, err = startRetrying(ctx, FreePort, func(port int) (*Process, error) {
		args := append(dataArgs(port), "--replicaof", "127.0.0.1", strings.TrimPrefix(s.MasterAddr, "127.0.0.1:"))
		return startRedisOn(ctx, dir, "redis-replica-"+strconv.Itoa(port), port, args)
	})
	if err != nil {
		return nil, fmt.Errorf("start sentinel replica: %w", err)
	}
	s.Replica, s.ReplicaAddr = p, "127.0.0.1:"+strconv.Itoa(port)
	if err := waitRedis(ctx, s.data(s.ReplicaAddr), "replica in sync", func(ctx context.Context, c *redis.Client) (bool, error) {
		info, err := c.Info(ctx, "replication").Result()
		return strings.Contains(info, "master_link_status:up"), err
	}); err != nil {
		return nil, err
	}

	quorum := n/2 + 1
	masterHost, masterPort, _ := net.SplitHostPort(s.MasterAddr)
	for range n {
		p, port, err := startRetrying(ctx, FreePort, func(port int) (*Process, error) {
			conf := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".conf")
			// Short timings so a test's failover takes seconds: the master
			// is down after 1 s without an answer, and a failed election is
			// retried after 6 s (failover-timeout) rather than the default 3 min.
			lines := []string{
				"port " + strconv.Itoa(port),
				"bind 127.0.0.1",
				"dir " + dir,
				"sentinel monitor " + s.MasterName + " " + masterHost + " " + masterPort + " " + strconv.Itoa(quorum),
				"sentinel down-after-milliseconds " + s.MasterName + " 1000",
				"sentinel failover-timeout " + s.MasterName + " 6000",
				"sentinel parallel-syncs " + s.MasterName + " 1",
			}
			if o.Password != "" {
				lines = append(lines, "sentinel auth-pass "+s.MasterName+" "+o.Password)
			}
			if o.SentinelPassword != "" {
				lines = append(lines, "requirepass "+o.SentinelPassword)
			}
			text := strings.Join(append(lines, ""), "\n")
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				return nil, fmt.Errorf("write sentinel config: %w", err)
			}
			return startRedisOn(ctx, dir, "redis-sentinel-"+strconv.Itoa(port), port, []string{conf, "--sentinel"})
		})
		if err != nil {
			return nil, fmt.Errorf("start sentinel: %w", err)
		}
		s.Sentinels = append(s.Sentinels, p)
		s.SentinelAddrs = append(s.SentinelAddrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	for _, addr := range s.SentinelAddrs {
		if err := waitRedis(ctx, s.sentinel(addr), "sentinel sees the replica and its peers", func(ctx context.Context, c *redis.Client) (bool, error) {
			return s.sentinelReady(ctx, c, n-1)
		}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// sentinelReady answers whether a Sentinel sees a healthy replica and
// peers other Sentinels.
func (s *RedisSentinel) sentinelReady(ctx context.Context, c *redis.Client, peers int) (bool, error) {
	replicas, err := c.Do(ctx, "SENTINEL", "REPLICAS", s.MasterName).Slice()
	if err != nil {
		return false, err
	}
	ok := false
	for _, r := range replicas {
		f := fields(r)
		if f["flags"] == "slave" && f["master-link-status"] == "ok" {
			ok = true
		}
	}
	others, err := c.Do(ctx, "SENTINEL", "SENTINELS", s.MasterName).Slice()
	if err != nil {
		return false, err
	}
	return ok && len(others) >= peers, nil
}

// fields reads one entry of SENTINEL REPLICAS/SENTINELS: a flat list of
// names and values under RESP2, a map under RESP3.
func fields(v any) map[string]string {
	out := map[string]string{}
	switch e := v.(type) {
	case []any:
		for i := 0; i+1 < len(e); i += 2 {
			out[fmt.Sprint(e[i])] = fmt.Sprint(e[i+1])
		}
	case map[any]any:
		for k, val := range e {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return out
}

// URL is the session.redis.url of this deployment: the first Sentinel as
// the URL's host, the others as addr= parameters, and master_name; the
// data nodes' password as the URL's, and the Sentinels' as
// sentinel_password when it differs.
func (s *RedisSentinel) URL() string {
	auth := ""
	if s.password != "" {
		auth = ":" + url.QueryEscape(s.password) + "@"
	}
	u := "redis://" + auth + s.SentinelAddrs[0] + "/0?master_name=" + s.MasterName
	for _, a := range s.SentinelAddrs[1:] {
		u += "&addr=" + a
	}
	if s.sentinelPassword != s.password {
		u += "&sentinel_password=" + url.QueryEscape(s.sentinelPassword)
	}
	return u
}

// CurrentMaster asks the first Sentinel which address it holds for master.
func (s *RedisSentinel) CurrentMaster(ctx context.Context) (string, error) {
	c := redis.NewSentinelClient(s.sentinel(s.SentinelAddrs[0]))
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
	if err != nil {
		return "", fmt.Errorf("ask sentinel for the master: %w", err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("ask sentinel for the master: answer %q", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// Failover makes the first Sentinel fail the master over to the replica at
// once (SENTINEL FAILOVER), without waiting for the master to fail.
func (s *RedisSentinel) Failover(ctx context.Context) error {
	c := redis.NewSentinelClient(s.sentinel(s.SentinelAddrs[0]))
	defer c.Close()
	if err := c.Failover(ctx, s.MasterName).Err(); err != nil {
		return fmt.Errorf("sentinel failover: %w", err)
	}
	return nil
}

// WaitReplicated waits until the replica has everything the master held
// when it was called (its replication offset caught up), so a failover
// after it loses no write made before it.
func (s *RedisSentinel) WaitReplicated(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m := redis.NewClient(s.data(s.MasterAddr))
	defer m.Close()
	info, err := m.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("read the master's replication offset: %w", err)
	}
	want, ok := infoInt(info, "master_repl_offset")
	if !ok {
		return fmt.Errorf("read the master's replication offset: no master_repl_offset in\n%s", info)
	}
	return waitRedis(ctx, s.data(s.ReplicaAddr), "replica offset "+strconv.FormatInt(want, 10), func(ctx context.Context, c *redis.Client) (bool, error) {
		info, err := c.Info(ctx, "replication").Result()
		got, ok := infoInt(info, "slave_repl_offset")
		return ok && got >= want, err
	})
}

// infoInt reads one integer field of an INFO reply.
func infoInt(info, field string) (int64, bool) {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// Processes are every process of the deployment.
func (s *RedisSentinel) Processes() []*Process {
	var ps []*Process
	for _, p := range append([]*Process{s.Master, s.Replica}, s.Sentinels...) {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Logs returns the tail of every process's log, for failure messages.
func (s *RedisSentinel) Logs(n int) string { return logsOf(s.Processes(), n) }

// Close stops the Sentinels first (so none starts a failover while the
// data nodes go), then the data nodes. It is idempotent.
func (s *RedisSentinel) Close() {
	s.closeOnce.Do(func() {
		stopAll(s.Sentinels)
		stopAll([]*Process{s.Master, s.Replica})
	})
}

// RedisCluster is a real Redis Cluster on loopback: masters only, the hash
// slots split evenly between them.
type RedisCluster struct {
	// Nodes are the redis-server processes; Addrs their host:port.
	Nodes []*Process
	Addrs []string

	closeOnce sync.Once
}

// StartCluster starts n (at least 3) cluster-enabled redis-servers, joins
// them with `redis-cli --cluster create --cluster-replicas 0`, and waits
// until every node reports cluster_state:ok and knows the others. Each
// node's bus port is its port+10000, so both must be free. Close stops
// every node.
func StartCluster(ctx context.Context, dir string, n int) (_ *RedisCluster, err error) {
	if n < 3 {
		return nil, fmt.Errorf("start cluster: %d nodes, want at least 3", n)
	}
	cli, err := findBinary("REDIS_CLI_BIN", "redis-cli", "run `make bootstrap` or apt-get install redis-tools")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, topologyStartTimeout)
	defer cancel()
	c := &RedisCluster{}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for range n {
		p, port, err := startRetrying(ctx, freePortWithBus, func(port int) (*Process, error) {
			args := append(serverArgs(dir, port),
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes-"+strconv.Itoa(port)+".conf",
				"--cluster-node-timeout", "2000")
			return startRedisOn(ctx, dir, "redis-cluster-"+strconv.Itoa(port), port, args)
		})
		if err != nil {
			return nil, fmt.Errorf("start cluster node: %w", err)
		}
		c.Nodes = append(c.Nodes, p)
		c.Addrs = append(c.Addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	for _, addr := range c.Addrs {
		if err := waitRedis(ctx, &redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1}, "cluster_state:ok", func(ctx context.Context, cl *redis.Client) (bool, error) {
			info, err := cl.ClusterInfo(ctx).Result()
			return strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)+"\r"), err
		}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// freePortWithBus finds a free port whose cluster bus port (port+10000) is
// free as well.
func freePortWithBus() (int, error) {
	for range 50 {
		port, err := FreePort()
		if err != nil {
			return 0, err
		}
		if port+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("find free port: no free port with a free cluster bus port (port+10000)")
}

// URL is the session.redis.url of this cluster: the first node as the
// URL's host and the others as addr= parameters.
func (c *RedisCluster) URL() string {
	u := "redis://" + c.Addrs[0]
	for i, a := range c.Addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// Logs returns the tail of every node's log, for failure messages.
func (c *RedisCluster) Logs(n int) string { return logsOf(c.Nodes, n) }

// Close stops every node. It is idempotent.
func (c *RedisCluster) Close() {
	c.closeOnce.Do(func() { stopAll(c.Nodes) })
}

// waitRedis polls cond against the server opts names every 50 ms until it
// holds or ctx ends; the last error or "not yet" is in the failure.
func waitRedis(ctx context.Context, opts *redis.Options, what string, cond func(context.Context, *redis.Client) (bool, error)) error {
	addr := opts.Addr
	c := redis.NewClient(opts)
	defer c.Close()
	last := errors.New("not yet")
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := cond(cctx, c)
		cancel()
		if ok && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s at %s (last: %v): %w", what, addr, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopAll stops processes in parallel, each with a short grace.
func stopAll(ps []*Process) {
	var wg sync.WaitGroup
	for _, p := range ps {
		if p != nil {
			wg.Go(func() { p.Stop(3 * time.Second) })
		}
	}
	wg.Wait()
}

// logsOf is the tail of each process's log under its name.
func logsOf(ps []*Process, n int) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "----- %s (%s)\n%s\n", p.Name, p.LogPath, p.Tail(n))
	}
	return b.String()
}
