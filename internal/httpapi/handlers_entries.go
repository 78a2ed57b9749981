package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"dualledger/internal/ledger"
)

// postEntry posts one entry through the group-commit Poster: concurrent requests for one ledger
// share a transaction, each still gets its own result.
func (s *Server) postEntry(w http.ResponseWriter, r *http.Request) error {
	ledgerID := r.PathValue("ledger_id")
	in, err := s.decodeEntry(r.Body)
	if err != nil {
		return err
	}
	if err := s.checkLedger(r.Context(), ledgerID); err != nil {
		s.metrics.posted("single", ledger.CodeOf(clientError(err)), 1, 0)
		return err
	}
	if err := s.checkDebits(r, ledgerID, []ledger.EntryInput{in}); err != nil {
		return err
	}
	start := time.Now()
	res, err := s.poster.Post(r.Context(), ledgerID, in)
	took := time.Since(start)
	if err != nil {
		err = clientError(err)
		s.metrics.posted("single", ledger.CodeOf(err), 1, took)
		return err
	}
	s.metrics.posted("single", res.Code, 1, took)
	if !res.OK() {
		return bankSafe(r, res.Err())
	}
	// For a replay the result carries the original's id, seq, hashes, times and balances, and
	// every other field equals the request's (that is what makes it a replay): the response is
	// the original entry without another round trip.
	entry, err := ledger.EntryFromResult(ledgerID, in, res)
	if err != nil {
		return fmt.Errorf("entry of result %s: %w", res.Code, err)
	}
	if err := s.redactEntries(r, &entry); err != nil {
		return err
	}
	status := http.StatusCreated
	if res.Code == ledger.CodeReplayed {
		status = http.StatusOK
	}
	w.Header().Set("Location", entryPath(ledgerID, entry.ReferenceID))
	writeJSON(w, status, PostingResponse{Result: res.Code, Replayed: res.Code == ledger.CodeReplayed, Entry: entry})
	return nil
}

// postBatch posts a client's batch in one transaction (within the per-ledger admission limit
// shared with group commit), atomic or not.
func (s *Server) postBatch(w http.ResponseWriter, r *http.Request) error {
	ledgerID := r.PathValue("ledger_id")
	data, err := readBody(r.Body)
	if err != nil {
		return err
	}
	atomic, entries, err := s.decodeBatch(data)
	if err != nil {
		return err
	}
	if err := s.checkLedger(r.Context(), ledgerID); err != nil {
		s.metrics.posted("batch", ledger.CodeOf(clientError(err)), len(entries), 0)
		return err
	}
	if err := s.checkDebits(r, ledgerID, entries); err != nil {
		return err
	}
	start := time.Now()
	results, err := s.poster.PostBatch(r.Context(), ledgerID, entries, atomic)
	took := time.Since(start)
	if err != nil {
		err = clientError(err)
		s.metrics.posted("batch", ledger.CodeOf(err), len(entries), took)
		return err
	}
	s.metrics.postingDuration.WithLabelValues("batch").Observe(took.Seconds())

	resp := BatchResponse{Atomic: atomic, Results: make([]BatchResult, len(results))}
	firstRejected := -1
	for i, res := range results {
		s.metrics.posted("batch", res.Code, 1, 0)
		br := BatchResult{Index: i, Result: res.Code}
		switch res.Code {
		case ledger.CodeCreated, ledger.CodeReplayed:
			e, err := ledger.EntryFromResult(ledgerID, entries[i], res)
			if err != nil {
				return fmt.Errorf("entry %d of result %s: %w", i, res.Code, err)
			}
			if err := s.redactEntries(r, &e); err != nil {
				return err
			}
			br.Entry = &e
			if res.Code == ledger.CodeCreated {
				resp.Created++
			} else {
				resp.Replayed++
			}
		default:
			body := errorBodyOf(bankSafe(r, res.Err()))
			body.Details = withBatchIndexes(body.Details)
			br.Error = &body
			resp.Rejected++
			if firstRejected < 0 && res.Code != ledger.CodeNotApplied {
				firstRejected = i
			}
		}
		resp.Results[i] = br
	}
	resp.Applied = !atomic || resp.Rejected == 0
	if resp.Applied {
		writeJSON(w, http.StatusOK, resp)
		return nil
	}
	first := results[max(firstRejected, 0)]
	writeJSON(w, http.StatusUnprocessableEntity, BatchRejectedResponse{
		BatchResponse: resp,
		// Positions in messages are 1-based, as the entries' own results say them; index (the
		// JSON array's) is 0-based (docs/error-codes.md, "Positions").
		Error: errorBodyOf(ledger.Errorf(CodeBatchRejected,
			"the atomic batch was not applied: entry %d was rejected (%s); nothing was written", max(firstRejected, 0)+1, first.Code).
			WithDetails(map[string]any{"index": max(firstRejected, 0), "result": first.Code})),
	})
	return nil
}

func (s *Server) listEntries(w http.ResponseWriter, r *http.Request) error {
	after, err := queryInt(r, "after_seq", 0, 0, math.MaxInt64)
	if err != nil {
		return err
	}
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	if bank := keyOf(r).Bank(); bank != "" {
		return s.listBankEntries(w, r, bank, after, limit)
	}
	entries, err := ledger.ListEntries(r.Context(), s.pool, r.PathValue("ledger_id"), after, limit+1)
	if err != nil {
		return err
	}
	var out EntryList
	out.Entries, out.NextAfterSeq = page(entries, limit, func(e ledger.Entry) int64 { return e.Seq })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getEntry(w http.ResponseWriter, r *http.Request) error {
	e, err := ledger.GetEntryByReference(r.Context(), s.pool, r.PathValue("ledger_id"), r.PathValue("reference_id"))
	if keyOf(r).Bank() != "" {
		// A member bank's key learns nothing of entries that are not its bank's, not even
		// whether they exist.
		if err != nil {
			return forbidden("a member bank's key reads only the entries that touch its bank's accounts")
		}
		if ok, err := s.visibleEntry(r, &e); err != nil || !ok {
			return cmpErr(err, forbidden("a member bank's key reads only the entries that touch its bank's accounts"))
		}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

func entryPath(ledgerID, ref string) string {
	return "/v1/ledgers/" + url.PathEscape(ledgerID) + "/entries/" + url.PathEscape(ref)
}

// listBankEntries is listEntries for a member bank's key: only the entries that touch its bank's
// accounts, each page looking at a bounded window of seqs (ledger.BankScanWindow), so a bank
// whose entries are rare in a busy ledger cannot make the server scan it whole. A page may then
// hold fewer entries than asked, or none, and still point at the next one (next_after_seq).
func (s *Server) listBankEntries(w http.ResponseWriter, r *http.Request, bank string, after int64, limit int) error {
	entries, scannedTo, head, err := ledger.ListBankEntries(r.Context(), s.pool, r.PathValue("ledger_id"), bank, after, limit+1, s.cfg.BankScanWindow)
	if err != nil {
		return err
	}
	var out EntryList
	out.Entries, out.NextAfterSeq = page(entries, limit, func(e ledger.Entry) int64 { return e.Seq })
	ptrs := make([]*ledger.Entry, len(out.Entries))
	for i := range out.Entries {
		ptrs[i] = &out.Entries[i]
	}
	if err := s.redactEntries(r, ptrs...); err != nil {
		return err
	}
	if out.NextAfterSeq == nil && len(entries) <= limit && scannedTo < head {
		out.NextAfterSeq = &scannedTo
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// withBatchIndexes gives the 1-based batch positions that the posting function puts in a
// result's details (rejected_entry of not_applied, batch_entry of a reference used twice in the
// batch) their 0-based twins, rejected_index and batch_index: the index of the result they name
// in this answer's results array, as every other position of the HTTP API is
// (docs/error-codes.md, "Positions").
func withBatchIndexes(details json.RawMessage) json.RawMessage {
	if !bytes.Contains(details, []byte(`_entry"`)) {
		return details
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(details, &m); err != nil {
		return details
	}
	changed := false
	for from, to := range map[string]string{"rejected_entry": "rejected_index", "batch_entry": "batch_index"} {
		var pos int
		if raw, ok := m[from]; ok && json.Unmarshal(raw, &pos) == nil && pos >= 1 {
			m[to] = json.RawMessage(strconv.Itoa(pos - 1))
			changed = true
		}
	}
	if !changed {
		return details
	}
	out, err := json.Marshal(m)
	if err != nil {
		return details
	}
	return out
}
