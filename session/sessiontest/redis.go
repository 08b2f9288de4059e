package sessiontest

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// redisStartTimeout bounds how long StartRedis waits for PING to answer.
const redisStartTimeout = 10 * time.Second

// StartRedis starts a real redis-server on a free 127.0.0.1 port with
// persistence off, waits until it answers PING, and stops it when the test
// ends. It returns host:port. REDIS_SERVER_BIN overrides the binary; a
// missing redis-server fails the test (never a skip: a skipped store test
// proves nothing). args are added to its command line (for example
// "--replicaof", "127.0.0.1", "6379").
func StartRedis(t testing.TB, args ...string) (addr string) {
	t.Helper()
	bin := os.Getenv("REDIS_SERVER_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			t.Fatalf("redis-server is not on PATH (run `make bootstrap` or apt-get install redis-server, or set REDIS_SERVER_BIN): %v", err)
		}
	}
	var lastErr string
	for range 3 { // a port found free may be taken before redis binds it
		addr, errText, ok := tryStartRedis(t, bin, args)
		if ok {
			return addr
		}
		lastErr = errText
	}
	t.Fatalf("start redis-server: %s", lastErr)
	return ""
}

func tryStartRedis(t testing.TB, bin string, args []string) (addr, errText string, ok bool) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return "", "find a free port: " + err.Error(), false
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	out := &SyncBuffer{}
	cmd := exec.Command(bin, append([]string{"--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--bind", "127.0.0.1", "--dir", t.TempDir()}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() { _ = cmd.Process.Kill(); <-exited }

	deadline := time.Now().Add(redisStartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return "", "redis-server exited while starting:\n" + out.String(), false
		default:
		}
		if ping(addr) {
			t.Cleanup(stop)
			return addr, "", true
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	return "", "redis-server at " + addr + " did not answer PING within " + redisStartTimeout.String() + ":\n" + out.String(), false
}

func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// SyncBuffer is a writer several goroutines share (redis-server's two
// pipes, a log handler and the test reading it).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p under the lock.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
