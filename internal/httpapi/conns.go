package httpapi

import (
	"net"
	"net/http"
	"sync"
)

// connCap keeps at most max client connections open. Past the cap a new connection makes room
// by closing a connection that is doing nothing (idle between keep-alive requests, or new and
// silent); if every connection is busy with a request, the new one is closed at once. So idle or
// silent clients cannot lock everyone else out by sitting on the connection slots (a listener
// that merely stops accepting would leave the next clients in the kernel's backlog with no
// answer at all).
type connCap struct {
	max int

	mu      sync.Mutex
	conns   map[net.Conn]http.ConnState
	pending int // accepted, not yet announced by the server (StateNew)
	closed  int // evictions and refusals, for tests and metrics
}

func newConnCap(max int) *connCap {
	return &connCap{max: max, conns: make(map[net.Conn]http.ConnState)}
}

// track is the http.Server's ConnState hook.
func (c *connCap) track(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateNew:
		if c.pending > 0 {
			c.pending--
		}
		c.conns[conn] = st
	case http.StateActive, http.StateIdle:
		c.conns[conn] = st
	case http.StateHijacked, http.StateClosed:
		delete(c.conns, conn)
	}
}

// admit reports whether a just-accepted connection may stay, closing a do-nothing connection to
// make room if needed.
func (c *connCap) admit() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.conns)+c.pending < c.max {
		c.pending++
		return true
	}
	for _, want := range []http.ConnState{http.StateIdle, http.StateNew} {
		for conn, st := range c.conns {
			if st == want {
				_ = conn.Close() // the server sees it closed and reports StateClosed
				delete(c.conns, conn)
				c.closed++
				c.pending++
				return true
			}
		}
	}
	c.closed++
	return false
}

// listener closes the connections that admit refuses.
func (c *connCap) listener(ln net.Listener) net.Listener { return &capListener{Listener: ln, cap: c} }

type capListener struct {
	net.Listener
	cap *connCap
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.cap.admit() {
			return conn, nil
		}
		_ = conn.Close()
	}
}
