package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process the harness started. Its output goes to a log
// file, which Tail reads back when a test fails.
type Process struct {
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// StartProcess starts bin with args in its own process group, writing
// stdout and stderr to dir/name.log.
func StartProcess(name, dir, bin string, args []string, env []string) (*Process, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process's whole group.
func (p *Process) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop asks the process to end (SIGTERM), waits up to grace, then kills its
// group. It returns once the process is gone.
func (p *Process) Stop(grace time.Duration) {
	if exited, _ := p.Exited(); exited {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Kill ends the process group at once (SIGKILL), as a crash would.
func (p *Process) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n bytes of the process's log.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// FreePort asks the kernel for a free loopback port. Another process may
// take it before we bind; the callers retry start-up failures rarely enough
// that this is the usual trade-off.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePorts returns n distinct free ports.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// WaitHTTP polls url until it answers want, p exits, or ctx ends.
func WaitHTTP(ctx context.Context, p *Process, url string, want int) error {
	return waitHTTPWith(ctx, p, http.DefaultClient, url, want)
}

// waitHTTPWith is WaitHTTP through base's transport (a TLS server's CA).
func waitHTTPWith(ctx context.Context, p *Process, base *http.Client, url string, want int) error {
	client := &http.Client{Timeout: time.Second, Transport: base.Transport}
	var last string
	for {
		if p != nil {
			if exited, err := p.Exited(); exited {
				return fmt.Errorf("%s exited while starting (%v); log tail:\n%s", p.Name, err, p.Tail(4000))
			}
		}
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = resp.Status + " " + strings.TrimSpace(string(body)) // /readyz says why
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if p == nil {
				return fmt.Errorf("service not ready at %s (last: %s): %w", url, last, ctx.Err())
			}
			return fmt.Errorf("%s not ready at %s (last: %s): %w; log tail:\n%s", p.Name, url, last, ctx.Err(), p.Tail(4000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitTCP polls addr until it accepts a connection.
func waitTCP(ctx context.Context, p *Process, addr string) error {
	for {
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("%s exited while starting (%v); log tail:\n%s", p.Name, err, p.Tail(4000))
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not accepting on %s: %w", p.Name, addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// findBinary resolves a required executable from an environment variable,
// then PATH. A missing binary is an error that says how to get it.
func findBinary(envVar, name, hint string) (string, error) {
	if v := os.Getenv(envVar); v != "" {
		if _, err := os.Stat(v); err != nil {
			return "", fmt.Errorf("%s=%s: %w (%s)", envVar, v, err, hint)
		}
		return v, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found (set %s or put it on PATH; %s): %w", name, envVar, hint, err)
	}
	return p, nil
}

// redisCLIPing answers whether a Redis server at addr answers PING.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("+PONG")) {
		return errors.New(strings.TrimSpace(string(buf[:n])))
	}
	return nil
}
