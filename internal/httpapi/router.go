package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"dualledger/internal/ledger"
)

// router builds the ServeMux from the route table and wraps it in the middleware every request
// passes: request id, in-flight tracking, request timeout, panic recovery, metrics, debug log,
// and JSON answers for unknown paths (404) and methods (405).
func (s *Server) router(routes []route) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.method+" "+rt.path, s.endpoint(rt))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.inflight.Add(1)
		defer s.inflight.Done()

		sw := &statusWriter{ResponseWriter: w}
		reqID := requestID(r)
		sw.Header().Set("X-Request-Id", reqID)
		info := &reqInfo{}
		ctx, cancel := context.WithTimeout(withReqInfo(r.Context(), info), s.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)

		// A path that is not in canonical form (`//v1/...`, `/v1/./ledgers`, `/v1/x/../ledgers`)
		// is not served: the mux would redirect it to the cleaned path, with an HTML body, and a
		// client that follows redirects would send its body and key again to a path it did not
		// write (a POST through `//v1/.../entries` posted). It is a 404 naming the canonical path.
		// (The escaped path, as the mux's rule: an account id may hold "/../" as %2F..%2F.)
		escaped := r.URL.EscapedPath()
		canonical := cleanPath(escaped)
		pattern := ""
		if canonical == escaped {
			_, pattern = mux.Handler(r)
		}
		routeLabel := "unmatched"
		if _, path, ok := strings.Cut(pattern, " "); ok {
			routeLabel = path
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.LogAttrs(ctx, slog.LevelError, "handler panicked", slog.Any("panic", p),
					slog.String("stack", string(debug.Stack())), slog.String("request_id", reqID))
				if sw.status == 0 {
					s.writeError(sw, r, fmt.Errorf("panic: %v", p))
				}
			}
			took := time.Since(start)
			s.metrics.request(methodLabel(r.Method), routeLabel, sw.code(), took)
			// The access log: who (the key id, never the token), what (the route, not the
			// path, which may carry references), the answer and how long it took. No bodies.
			// Requests shed by the in-flight limit are counted (dualledger_http_requests_shed_total)
			// and logged at debug only: a flood must not turn into a flood of log lines.
			level := slog.LevelInfo
			if info.shed {
				level = slog.LevelDebug
			}
			s.log.LogAttrs(ctx, level, "http request",
				slog.String("key_id", info.keyID), slog.String("method", r.Method), slog.String("route", routeLabel),
				slog.Int("status", sw.code()), slog.Int64("bytes", sw.bytes), slog.Duration("took", took),
				slog.String("request_id", reqID), slog.String("remote", r.RemoteAddr))
		}()
		if canonical != escaped {
			s.writeError(sw, r, ledger.Errorf(ledger.CodeNotFound, "no such endpoint: %s %s is not a canonical path; did you mean %s?",
				r.Method, clip(escaped), clip(canonical)).
				WithDetails(map[string]any{"path": clip(escaped), "canonical_path": clip(canonical)}))
			return
		}
		if pattern == "" {
			s.unmatched(sw, r, mux)
			return
		}
		mux.ServeHTTP(sw, r)
	})
}

// unmatched answers a request no route takes, in the error envelope: 405 when the path exists
// with other methods (the mux knows, and sets Allow), 404 otherwise.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	rec := &recorder{header: http.Header{}}
	mux.ServeHTTP(rec, r)
	switch {
	case rec.status == http.StatusMethodNotAllowed:
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		s.writeError(w, r, ledger.Errorf(CodeMethodNotAllowed, "method %s is not allowed here; allowed: %s", r.Method, allow).
			WithDetails(map[string]any{"method": r.Method, "allowed": strings.Split(allow, ", ")}))
	default:
		s.writeError(w, r, ledger.Errorf(ledger.CodeNotFound, "no such endpoint: %s %s", r.Method, clip(r.URL.Path)))
	}
}

// endpoint applies a route's request rules (query parameters, media type, body size) and runs
// its handler.
func (s *Server) endpoint(rt route) http.Handler {
	known := map[string]bool{}
	for _, q := range rt.query {
		known[q.name] = true
	}
	params := pathParams(rt.path)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Who is asking comes first (the key is in memory; an unknown one costs at most a
		// bounded, shared look-up), so nothing below is revealed or spent for a stranger.
		if !rt.access.public {
			var err error
			if r, err = s.authorize(w, r, rt); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		// Ids in the path are text: bytes that are not UTF-8 (or a NUL) can name nothing, and the
		// database would refuse them as an encoding error.
		for _, name := range params {
			if err := checkText("path", name, r.PathValue(name)); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		if rt.strictQuery {
			if err := checkQuery(r, known); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		if rt.body != nil {
			if err := checkContentType(r); err != nil {
				s.writeError(w, r, err)
				return
			}
			if r.ContentLength > rt.maxBody {
				s.writeError(w, r, bodyTooLarge(rt.maxBody))
				return
			}
			// The whole body is read before the request takes an in-flight slot: a client that
			// sends its body slowly holds a connection (bounded by --read-timeout and
			// --max-conns), never a slot that others need.
			data, err := readBody(http.MaxBytesReader(w, r.Body, rt.maxBody))
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(data))
		}
		if !rt.access.public {
			// Over the in-flight limits (the server's, and one key's share of it) the answer is
			// immediate: a request that would only wait for the database costs nothing more.
			release, err := s.admit(keyOf(r))
			if err != nil {
				if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
					ri.shed = true
				}
				s.metrics.shed.Inc()
				w.Header().Set("Retry-After", "1")
				s.writeError(w, r, err)
				return
			}
			defer release()
		}
		if err := rt.handle(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// checkQuery refuses query parameters the route does not document, and repeated ones: a typo
// such as ?afterseq= would otherwise silently return the first page.
func checkQuery(r *http.Request, known map[string]bool) error {
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	for name, vals := range q {
		if !known[name] {
			if len(known) == 0 {
				return fieldError(ledger.CodeInvalidRequest, clip(name), "unknown query parameter %s: this endpoint takes none", quoteField(name))
			}
			return fieldError(ledger.CodeInvalidRequest, clip(name), "unknown query parameter %s (the parameters are: %s)", quoteField(name), fieldList(known))
		}
		if len(vals) > 1 {
			return fieldError(ledger.CodeInvalidRequest, name, "query parameter %s is given %d times", quoteField(name), len(vals))
		}
		if err := checkText("query", name, vals[0]); err != nil {
			return err
		}
	}
	return nil
}

// checkText refuses a path or query parameter (kind) that cannot be text in the database: bytes
// that are not UTF-8, or a NUL, which is valid UTF-8 but which PostgreSQL's text cannot hold (so
// it can name nothing). name is a documented parameter's.
func checkText(kind, name, v string) error {
	switch {
	case strings.ContainsRune(v, 0):
		return fieldError(ledger.CodeInvalidRequest, name, "%s parameter %s may not contain a NUL character (%%00)", kind, name)
	case !utf8.ValidString(v):
		return fieldError(ledger.CodeInvalidRequest, name, "%s parameter %s is not valid UTF-8 text", kind, name)
	}
	return nil
}

// checkContentType requires application/json (parameters such as charset=utf-8 allowed).
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != "application/json" {
		got := ct
		if got == "" {
			got = "none"
		}
		return ledger.Errorf(CodeUnsupportedMediaType, "Content-Type must be application/json, got %s", clip(got)).
			WithDetails(map[string]string{"content_type": clip(got)})
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return ledger.Errorf(CodeUnsupportedMediaType, "the charset must be utf-8, got %s", clip(cs)).
			WithDetails(map[string]string{"content_type": clip(ct)})
	}
	return nil
}

// requestID returns the client's X-Request-Id if it is sane, else a new random one.
func requestID(r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if id != "" && len(id) <= 128 && !strings.ContainsFunc(id, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// methodLabel keeps the metrics' method label to a known set (a client picks the method).
func methodLabel(m string) string {
	if slices.Contains([]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions}, m) {
		return m
	}
	return "other"
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach the connection (e.g. for Flush).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recorder captures the status and headers the mux would answer for an unmatched request (its
// body is not kept: the answer is always written in the error envelope).
type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil // only the status and the headers are used (unmatched)
}

// cleanPath is the path the ServeMux would redirect to (its own rule: path.Clean, keeping a
// trailing slash).
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// pathParams lists the {names} of a route path.
func pathParams(path string) []string {
	var out []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			out = append(out, strings.Trim(seg, "{}"))
		}
	}
	return out
}
