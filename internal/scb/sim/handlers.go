package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"dualledger/internal/scb"
)

const maxRequestBody = 1 << 20

// withFaults wraps a /v1/entries handler with the faults of the package doc. The POST handler
// receives the plan to apply drop-after-commit itself, after its work is done.
func (s *Server) withFaults(h func(http.ResponseWriter, *http.Request, plan)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		now := s.now()
		p := s.faults.draw(now)
		switch {
		case p.outageLeft > 0:
			s.countFault(faultOutage)
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(p.outageLeft.Seconds()))))
			writeError(w, http.StatusServiceUnavailable, "outage", "the SCB is down for maintenance (simulated outage)", nil)
			return
		case p.errorCode != 0:
			s.countFault(faultError)
			writeError(w, p.errorCode, "internal_error", "simulated server error", nil)
			return
		case p.rateLimit:
			s.countFault(faultRateLimit)
			ra := time.Duration(p.faults.RetryAfter)
			if ra <= 0 {
				ra = time.Second
			}
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ra.Seconds()))))
			writeError(w, http.StatusTooManyRequests, "rate_limited", "too many requests (simulated)", nil)
			return
		case p.timeout:
			s.countFault(faultTimeout)
			hold := time.Duration(p.faults.TimeoutHold)
			if hold <= 0 {
				hold = DefaultTimeoutHold
			}
			// Read the body first: only then does the server watch the connection and cancel
			// r.Context() when the client gives up.
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxRequestBody))
			t := time.NewTimer(hold)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done(): // the client gave up, as it should
			case <-s.stopping:
			}
			drop(w)
			return
		}
		if p.delay > 0 {
			s.countFault(faultLatency)
			// Buffer the body first, as in the timeout case: only a server that has read the
			// request notices a client that gives up, and this one must then not post.
			body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
			if err != nil {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			t := time.NewTimer(p.delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-s.stopping:
				t.Stop()
			}
		}
		if !bearerOK(r, s.cfg.APIKey) {
			s.rejected.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer realm="scb"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "invalid API key", nil)
			return
		}
		h(w, r, p)
	}
}

func (s *Server) reject(w http.ResponseWriter, code int, errCode, msg string, details any) {
	s.rejected.Add(1)
	writeError(w, code, errCode, msg, details)
}

func (s *Server) handlePost(w http.ResponseWriter, r *http.Request, p plan) {
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if key == "" {
		s.reject(w, http.StatusBadRequest, "missing_idempotency_key", "the Idempotency-Key header is required (<ledger_id>:<reference_id>)", nil)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			s.reject(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json", nil)
			return
		}
	}
	e, status, code, msg, details := decodeEntry(w, r)
	if status != 0 {
		s.reject(w, status, code, msg, details)
		return
	}
	if key != e.IdempotencyKey() {
		s.reject(w, http.StatusUnprocessableEntity, "idempotency_key_mismatch",
			fmt.Sprintf("Idempotency-Key %q is not ledger_id:reference_id (%q)", key, e.IdempotencyKey()), nil)
		return
	}
	body, err := e.Body()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error(), nil)
		return
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])

	now := s.now()
	rec, created, err := s.store.post(key, hash, e, now)
	if err != nil {
		s.log.Error("scb-sim: post failed", "key", key, "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error(), nil)
		return
	}
	if !created && rec.Hash != hash {
		s.conflicts.Add(1)
		writeError(w, http.StatusConflict, "idempotency_conflict",
			fmt.Sprintf("Idempotency-Key %s was used for a different entry (%s)", key, rec.SCBEntryID),
			map[string]string{"scb_entry_id": rec.SCBEntryID})
		return
	}
	if !created {
		s.replays.Add(1)
	}
	if p.drop {
		// The entry is durable; the answer is lost. A client that retries with the same key
		// gets the stored answer; one that "posts again" with a new key double-posts.
		s.countFault(faultDropAfterCommit)
		s.log.Debug("scb-sim: dropping the answer after commit", "key", key, "scb_entry_id", rec.SCBEntryID)
		drop(w)
		return
	}
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	s.log.Debug("scb-sim: post", "key", key, "created", created, "scb_entry_id", rec.SCBEntryID)
	writeJSON(w, http.StatusCreated, scb.PostResult{SCBEntryID: rec.SCBEntryID, Status: s.view(rec, now).Status})
}

// decodeEntry reads the body: 413 too large, 400 not JSON, 422 JSON of the wrong shape or an
// invalid entry. Unknown fields are refused so that a client bug (a renamed field) shows at once.
func decodeEntry(w http.ResponseWriter, r *http.Request) (e scb.Entry, status int, code, msg string, details any) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return e, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes", maxRequestBody), nil
		}
		return e, http.StatusBadRequest, "bad_body", "cannot read the body", nil
	}
	if !json.Valid(data) {
		return e, http.StatusBadRequest, "bad_json", "the body is not valid JSON", nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return e, http.StatusUnprocessableEntity, "invalid_entry", fmt.Sprintf("%s must be a JSON %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value), nil
		}
		// Unknown fields and the like: the decoder's message names the field.
		return e, http.StatusUnprocessableEntity, "invalid_entry", "the body is not an entry: " + strings.TrimPrefix(err.Error(), "json: "), nil
	}
	e.TimestampUTC = e.TimestampUTC.UTC()
	if err := e.Validate(); err != nil {
		problems := strings.Split(err.Error(), "\n")
		return e, http.StatusUnprocessableEntity, "invalid_entry", "invalid entry: " + strings.Join(problems, "; "), map[string]any{"problems": problems}
	}
	return e, 0, "", "", nil
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "int64", "int", "float64":
		return "number"
	case "struct":
		return "string (RFC 3339 time)"
	}
	return k
}

func (s *Server) view(rec record, now time.Time) scb.EntryView {
	status := s.statusAt(rec.PostedAt, now)
	if rec.Status != "" { // held back (tamper hold)
		status = rec.Status
	}
	return scb.EntryView{SCBEntryID: rec.SCBEntryID, Entry: rec.Entry, Status: status, PostedAt: rec.PostedAt}
}

// handleGet looks an entry up by reference_id, in ledger_id if given. Reference ids are unique
// per ledger only, so without ledger_id a reference found in several ledgers is a 409.
func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, _ plan) {
	ref := r.PathValue("reference_id")
	now := s.now()
	if l := r.URL.Query().Get("ledger_id"); l != "" {
		rec, ok := s.store.get(l + ":" + ref)
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no entry %s in ledger %s", ref, l), nil)
			return
		}
		writeJSON(w, http.StatusOK, s.view(rec, now))
		return
	}
	recs := s.store.byReference(ref)
	switch len(recs) {
	case 0:
		writeError(w, http.StatusNotFound, "not_found", "no entry "+ref, nil)
	case 1:
		writeJSON(w, http.StatusOK, s.view(recs[0], now))
	default:
		ledgers := make([]string, len(recs))
		for i, rec := range recs {
			ledgers[i] = rec.Entry.LedgerID
		}
		writeError(w, http.StatusConflict, "ambiguous_reference", "reference "+ref+" exists in several ledgers: pass ?ledger_id=",
			map[string]any{"ledgers": ledgers})
	}
}

// handleList pages through the entries in post order. The cursor is the sequence number of the
// last entry returned, as text; clients treat it as opaque.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request, _ plan) {
	q := r.URL.Query()
	var since int64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.reject(w, http.StatusBadRequest, "bad_cursor", "since must be a cursor returned as next_since", nil)
			return
		}
		since = n
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.reject(w, http.StatusBadRequest, "bad_limit", "limit must be from 1 to 1000", nil)
			return
		}
		limit = n
	}
	recs, more := s.store.page(since, limit)
	now := s.now()
	page := scb.Page{Entries: make([]scb.EntryView, 0, len(recs)), NextSince: strconv.FormatInt(since, 10), HasMore: more}
	for _, rec := range recs {
		page.Entries = append(page.Entries, s.view(rec, now))
	}
	if len(recs) > 0 {
		page.NextSince = strconv.FormatInt(recs[len(recs)-1].Seq, 10)
	}
	writeJSON(w, http.StatusOK, page)
}
