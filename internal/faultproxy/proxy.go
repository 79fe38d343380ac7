// Package faultproxy puts faults between a client and an AWS endpoint (moto in tests): a TCP proxy
// whose connections can be dropped or stalled, and an HTTP proxy that answers a share of requests
// with the throttling error each AWS protocol really uses. Tests point AWS_ENDPOINT_URL (or an
// aws.Config's BaseEndpoint) at a proxy and switch its mode while the code under test runs.
//
// Proxy (TCP) modes:
//   - Pass: bytes flow both ways.
//   - Drop: every open connection is reset and new ones are accepted and reset at once, as when the
//     endpoint is unreachable.
//   - Stall: connections are accepted and kept open, but no byte moves in either direction until
//     the mode changes; then the held bytes flow again, as after a healed network partition (or,
//     on Drop, the connections are reset and the held bytes discarded). A stalled connection the
//     client closes is noticed only when the stall ends.
//
// Throttler (HTTP) answers a configurable share of requests with a throttling error, per service.
// Chain them (Throttler in front of a Proxy's URL) to have both.
package faultproxy

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
)

// Mode is what a Proxy does with connections.
type Mode int

// Modes of a Proxy.
const (
	ModePass Mode = iota
	ModeDrop
	ModeStall
)

func (m Mode) String() string {
	switch m {
	case ModePass:
		return "pass"
	case ModeDrop:
		return "drop"
	case ModeStall:
		return "stall"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Proxy is a TCP proxy to one target address with switchable faults.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu      sync.Mutex
	mode    Mode
	flowing chan struct{} // closed while bytes may flow (not stalled); replaced on Stall
	closed  bool
	conns   map[*pair]struct{}
	stats   ProxyStats
}

// ProxyStats counts what a Proxy did.
type ProxyStats struct {
	Accepted int // connections accepted
	Dropped  int // connections reset by Drop (open ones, and new ones while dropping)
	Stalled  int // connections that were held by Stall at some point
}

// pair is one proxied connection: client side and target side.
type pair struct {
	client, target net.Conn
	once           sync.Once
	stalled        bool
}

func (c *pair) close(reset bool) {
	c.once.Do(func() {
		if reset {
			resetConn(c.client)
		}
		// Tearing down a test connection: a failed close has nobody to tell.
		_ = c.client.Close()
		if c.target != nil {
			_ = c.target.Close()
		}
	})
}

// resetConn makes Close send a TCP RST instead of a FIN, so the peer sees "connection reset".
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}

// New starts a proxy on a free loopback port forwarding to target (host:port, or a URL such as
// "http://127.0.0.1:5000"). It starts in pass-through mode.
func New(target string) (*Proxy, error) {
	addr, err := hostPort(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening: %w", err)
	}
	flowing := make(chan struct{})
	close(flowing)
	p := &Proxy{target: addr, ln: ln, flowing: flowing, conns: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is the proxy's address as an HTTP endpoint URL, for AWS_ENDPOINT_URL.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Pass restores pass-through: stalled connections resume, new connections are forwarded.
func (p *Proxy) Pass() { p.setMode(ModePass) }

// Drop resets every open connection and every new one until the mode changes.
func (p *Proxy) Drop() { p.setMode(ModeDrop) }

// Stall holds every open and new connection open without moving bytes until the mode changes.
func (p *Proxy) Stall() { p.setMode(ModeStall) }

func (p *Proxy) setMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == m {
		return
	}
	prev := p.mode
	p.mode = m
	switch m {
	case ModeStall:
		p.flowing = make(chan struct{})
		for c := range p.conns {
			if !c.stalled {
				c.stalled = true
				p.stats.Stalled++
			}
		}
	case ModeDrop:
		// Reset before releasing held bytes (below), so none of them gets through.
		for c := range p.conns {
			c.close(true)
			delete(p.conns, c)
			p.stats.Dropped++
		}
	}
	if prev == ModeStall {
		close(p.flowing) // release the held bytes (or, after a Drop, let their goroutines end)
	}
}

// Stats returns counts of what the proxy did so far.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops listening, closes every connection and waits for the proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.mode == ModeStall {
		close(p.flowing)
	}
	for c := range p.conns {
		c.close(false)
		delete(p.conns, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = conn.Close() // the proxy is closed: refuse
			return
		}
		p.stats.Accepted++
		if p.mode == ModeDrop {
			p.stats.Dropped++
			p.mu.Unlock()
			resetConn(conn)
			_ = conn.Close() // dropped on purpose
			continue
		}
		c := &pair{client: conn}
		if p.mode == ModeStall {
			c.stalled = true
			p.stats.Stalled++
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *Proxy) serve(c *pair) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.close(false)
	}()
	target, err := net.Dial("tcp", p.target)
	if err != nil {
		return // the client sees its connection closed, as with an unreachable endpoint
	}
	p.mu.Lock()
	if _, open := p.conns[c]; !open { // dropped or closed while dialing
		p.mu.Unlock()
		_ = target.Close() // nobody is left to use it
		return
	}
	c.target = target
	p.mu.Unlock()

	done := make(chan struct{}, 2)
	go func() { p.pipe(c.target, c.client); done <- struct{}{} }()
	go func() { p.pipe(c.client, c.target); done <- struct{}{} }()
	<-done // one direction ended: end both
	c.close(false)
	<-done
}

// pipe copies src to dst, holding each chunk while the proxy is stalled.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			flowing := p.flowing
			p.mu.Unlock()
			<-flowing // closed unless stalled (Close releases it too)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or closed: serve ends both directions
		}
	}
}

// hostPort accepts "host:port" or an http(s) URL.
func hostPort(target string) (string, error) {
	if strings.Contains(target, "://") {
		u, err := url.Parse(target)
		if err != nil {
			return "", fmt.Errorf("faultproxy: target %q: %w", target, err)
		}
		target = u.Host
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		return "", fmt.Errorf("faultproxy: target %q is not host:port or a URL with a port: %w", target, err)
	}
	return target, nil
}
