package harness

import (
	"bufio"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// echoServer answers every line with the line, prefixed by name.
func echoServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(name + ":" + line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends one line through addr and reads the answer within wait.
func roundTrip(addr string, wait time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestFaultProxy(t *testing.T) {
	t.Parallel()
	a, b := echoServer(t, "a"), echoServer(t, "b")
	p, err := StartFaultProxy(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	if got, err := roundTrip(p.Addr(), 5*time.Second); err != nil || got != "a:ping\n" {
		t.Fatalf("forwarding: %q %v", got, err)
	}

	// A reply held for 10 s cannot arrive within 200 ms.
	p.SetLatency(0, 10*time.Second)
	var nerr net.Error
	if _, err := roundTrip(p.Addr(), 200*time.Millisecond); !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("latency: want a read timeout, got %v", err)
	}
	p.SetLatency(0, 0)

	p.Refuse()
	if _, err := roundTrip(p.Addr(), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("refusing: want ECONNREFUSED, got %v", err)
	}
	if err := p.Accept(); err != nil {
		t.Fatal(err)
	}
	p.SetTarget(b)
	if got, err := roundTrip(p.Addr(), 5*time.Second); err != nil || got != "b:ping\n" {
		t.Fatalf("after Accept and SetTarget: %q %v", got, err)
	}

	// An open connection is cut by DropConnections.
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	p.DropConnections()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after DropConnections")
	} else if errors.As(err, &nerr) && nerr.Timeout() {
		t.Fatal("connection not closed by DropConnections")
	}
}
