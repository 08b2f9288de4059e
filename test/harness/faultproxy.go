package harness

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// FaultProxy is a TCP proxy on a fixed loopback address in front of a real
// server (redis-server), for the network faults a test cannot get from the
// server itself: added latency per direction, refused connections, dropped
// connections, and a switch to another upstream (a replica, a restarted
// server). Point the client at Addr and change the fault at any time; it
// applies to bytes and connections from then on. Safe for concurrent use.
type FaultProxy struct {
	addr string

	mu       sync.Mutex
	ln       net.Listener // nil while refusing
	target   string
	toServer time.Duration
	toClient time.Duration
	conns    map[*proxyConn]struct{}
	closed   bool

	wg sync.WaitGroup // accept loops and pipes
}

// proxyConn is one proxied client connection and its upstream.
type proxyConn struct {
	client net.Conn
	done   chan struct{} // closed when either side ends

	mu     sync.Mutex
	server net.Conn // nil until dialled
	ended  bool
}

// setServer attaches the dialled upstream, or reports false (and closes it)
// when the connection was dropped while dialling.
func (c *proxyConn) setServer(s net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		s.Close()
		return false
	}
	c.server = s
	return true
}

func (c *proxyConn) close() {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	server := c.server
	c.mu.Unlock()
	close(c.done)
	c.client.Close()
	if server != nil {
		server.Close()
	}
}

// StartFaultProxy listens on a free loopback port and forwards every
// connection to target (host:port), without faults until told otherwise.
// Close stops it.
func StartFaultProxy(target string) (*FaultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy: listen: %w", err)
	}
	p := &FaultProxy{addr: ln.Addr().String(), target: target, conns: map[*proxyConn]struct{}{}}
	p.serve(ln)
	return p, nil
}

// Addr is the proxy's host:port; it stays the same across Refuse and Accept.
func (p *FaultProxy) Addr() string { return p.addr }

// SetTarget sends connections accepted from now on to addr. Open
// connections keep their upstream; DropConnections ends them, as a failover
// or a restart would.
func (p *FaultProxy) SetTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

// SetLatency delays every chunk of bytes by toServer on its way to the
// server and by toClient on its way back, so one request/reply round trip
// takes at least toServer+toClient longer. Zero removes the delay.
func (p *FaultProxy) SetLatency(toServer, toClient time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.toServer, p.toClient = toServer, toClient
}

// Refuse closes the listener and drops every open connection, so the
// client's next dial gets a real ECONNREFUSED from the kernel, as from a
// stopped server. Accept undoes it.
func (p *FaultProxy) Refuse() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	p.DropConnections()
}

// Accept listens again on the same address after Refuse. It fails if
// another process took the port meanwhile.
func (p *FaultProxy) Accept() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.New("fault proxy: closed")
	}
	if p.ln != nil {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("fault proxy: listen again on %s: %w", p.addr, err)
	}
	p.serve(ln)
	return nil
}

// DropConnections closes every open connection on both sides, as a server
// crash or a network partition healing with resets would.
func (p *FaultProxy) DropConnections() {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Conns is the number of connections open through the proxy now.
func (p *FaultProxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, drops every connection and waits for the proxy's
// goroutines to end. It is idempotent.
func (p *FaultProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	p.DropConnections()
	p.wg.Wait()
	return nil
}

// serve makes ln the listener and accepts on it until it is closed.
func (p *FaultProxy) serve(ln net.Listener) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return
	}
	p.ln = ln
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Refuse or Close
			}
			p.handle(c)
		}
	}()
}

// handle connects one client to the current target and starts its pipes.
// A target that cannot be reached closes the client at once, as a reset
// would.
func (p *FaultProxy) handle(client net.Conn) {
	pc := &proxyConn{client: client, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		client.Close()
		return
	}
	target := p.target
	p.conns[pc] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		defer p.forget(pc)
		server, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			pc.close()
			return
		}
		if !pc.setServer(server) {
			return
		}
		var pipes sync.WaitGroup
		pipes.Go(func() { p.pipe(pc, server, client, true) })
		pipes.Go(func() { p.pipe(pc, client, server, false) })
		pipes.Wait()
	}()
}

func (p *FaultProxy) forget(pc *proxyConn) {
	pc.close()
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
}

// pipe copies src to dst chunk by chunk, holding each chunk for the
// direction's current latency, until either side ends.
func (p *FaultProxy) pipe(pc *proxyConn, dst, src net.Conn, toServer bool) {
	defer pc.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d := p.toClient
			if toServer {
				d = p.toServer
			}
			p.mu.Unlock()
			if d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-pc.done:
					t.Stop()
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed side: end both directions
		}
	}
}
