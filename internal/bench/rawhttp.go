package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// rawConns is the load generator's HTTP/1.1 client for the closed-loop modes: keep-alive
// connections used one request at a time, each request written from a prepared header in one
// write, each answer read with http.ReadResponse. net/http's Transport runs a reader and a writer
// goroutine per connection and hands every request and answer between them; with the server and
// PostgreSQL on the same two vCPUs, that made the generator cost about as much CPU per request as
// the server's own HTTP handling (docs/benchmarks.md), and the figure measured the generator as
// much as the server. wrk, which the reference figures used, does what this does.
type rawConns struct {
	addr   string        // host:port to dial
	prefix string        // " HTTP/1.1\r\nHost: ...\r\nAuthorization: ...\r\nContent-Type: ...\r\nContent-Length: "
	idle   chan *rawConn // connections not in use
}

type rawConn struct {
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // the end of its last request
}

// Connections idle for longer are closed rather than reused: the server closes idle keep-alive
// connections (serve --idle-timeout, 90 s by default), and a request on a connection it has
// closed fails. requestTimeout bounds a request whose context has no deadline (as net/http's
// Client.Timeout did).
const (
	maxIdle        = 30 * time.Second
	requestTimeout = time.Minute
)

// newRawConns returns a client for base (http://host:port only; nil for anything else, and the
// caller keeps net/http) keeping up to conns connections.
func newRawConns(base, token string, conns int) *rawConns {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &rawConns{
		addr: addr,
		prefix: " HTTP/1.1\r\nHost: " + u.Host + "\r\nAuthorization: Bearer " + token +
			"\r\nContent-Type: application/json\r\nContent-Length: ",
		idle: make(chan *rawConn, conns),
	}
}

// post sends body to path and returns the status and the whole answer body.
func (p *rawConns) post(ctx context.Context, path string, body []byte) (int, []byte, error) {
	c, err := p.get(ctx)
	if err != nil {
		return 0, nil, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(requestTimeout)
	}
	_ = c.nc.SetDeadline(dl)
	// A cancelled context (Ctrl-C) ends a request in flight too: the connection is closed under it.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	status, answer, keep, err := c.roundTrip(p.prefix, path, body)
	if !stop() && err == nil {
		keep = false // the deadline was moved while the answer was read: do not reuse it
	}
	if err != nil || !keep {
		_ = c.nc.Close()
		return status, answer, err
	}
	c.used = time.Now()
	select {
	case p.idle <- c:
	default:
		_ = c.nc.Close()
	}
	return status, answer, nil
}

func (p *rawConns) get(ctx context.Context) (*rawConn, error) {
	for {
		select {
		case c := <-p.idle:
			if time.Since(c.used) < maxIdle {
				return c, nil
			}
			_ = c.nc.Close()
			continue
		default:
		}
		break
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 16<<10)}, nil
}

func (c *rawConn) roundTrip(prefix, path string, body []byte) (status int, answer []byte, keep bool, err error) {
	c.bw.WriteString("POST ")
	c.bw.WriteString(path)
	c.bw.WriteString(prefix)
	c.bw.WriteString(strconv.Itoa(len(body)))
	c.bw.WriteString("\r\n\r\n")
	c.bw.Write(body)
	if err := c.bw.Flush(); err != nil {
		return 0, nil, false, fmt.Errorf("POST %s: %w", path, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, false, fmt.Errorf("POST %s: read the answer: %w", path, err)
	}
	answer, err = io.ReadAll(resp.Body) // Content-Length or chunked, read to the end
	resp.Body.Close()
	if err != nil {
		return 0, nil, false, fmt.Errorf("POST %s: read the answer: %w", path, err)
	}
	return resp.StatusCode, answer, !resp.Close, nil
}

// close closes the idle connections.
func (p *rawConns) close() {
	for {
		select {
		case c := <-p.idle:
			_ = c.nc.Close()
		default:
			return
		}
	}
}
