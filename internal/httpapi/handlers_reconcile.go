package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"

	"dualledger/internal/ledger"
	"dualledger/internal/reconcile"
	"dualledger/internal/statement"
)

// DiscrepancyList is one page of reconciliation discrepancies, in id order.
type DiscrepancyList struct {
	Discrepancies []reconcile.Discrepancy `json:"discrepancies"`
	NextAfter     *int64                  `json:"next_after"`
}

// ResolveDiscrepancyRequest is the body of POST /v1/discrepancies/{discrepancy_id}/resolve.
type ResolveDiscrepancyRequest struct {
	Resolution string `json:"resolution"` // requeue, correct, explained
	Reason     string `json:"reason"`
	// Correction (resolution correct): "reverse": true reverses our entry of the discrepancy
	// ("amount" for part of it), or "entry" is the correcting entry (its reference_id is
	// recon-<id>, set by the server).
	Correction *CorrectionRequest `json:"correction,omitempty"`
}

// CorrectionRequest is the correcting entry of a `correct` resolution.
type CorrectionRequest struct {
	Reverse bool               `json:"reverse,omitempty"`
	Amount  string             `json:"amount,omitempty"`
	Entry   *ledger.EntryInput `json:"entry,omitempty"`
}

// ResolveDiscrepancyResponse is the resolved discrepancy and, for correct, the correcting entry.
type ResolveDiscrepancyResponse struct {
	Discrepancy reconcile.Discrepancy `json:"discrepancy"`
	Correction  *ledger.Entry         `json:"correction"` // null unless resolution correct
}

func (s *Server) listDiscrepancies(w http.ResponseWriter, r *http.Request) error {
	k := keyOf(r)
	q := r.URL.Query()
	after, err := queryInt(r, "after", 0, 0, math.MaxInt64)
	if err != nil {
		return err
	}
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	f := reconcile.Filter{AfterID: after, Limit: limit + 1, SCBID: q.Get("scb_id"), LedgerID: q.Get("ledger_id"), Kind: q.Get("kind"),
		Status: q.Get("status")}
	if f.Kind != "" && !slices.Contains(reconcile.Kinds(), f.Kind) {
		return fieldError(ledger.CodeInvalidRequest, "kind", "kind must be one of %v", reconcile.Kinds())
	}
	if f.Status != "" && !slices.Contains([]string{reconcile.StatusOpen, reconcile.StatusAcknowledged, reconcile.StatusResolved}, f.Status) {
		return fieldError(ledger.CodeInvalidRequest, "status", "status must be OPEN, ACKNOWLEDGED or RESOLVED")
	}
	switch v := q.Get("cleared"); v {
	case "", "false":
	case "true":
		f.Cleared = true
	default:
		return fieldError(ledger.CodeInvalidRequest, "cleared", "cleared must be true or false")
	}
	// A member bank's key sees only its own bank's discrepancies, a ledger-limited key only its ledgers'.
	if bank := k.Bank(); bank != "" {
		if f.SCBID != "" && f.SCBID != bank {
			return forbidden("a member bank's key sees only its own bank's discrepancies")
		}
		f.SCBID = bank
	}
	if len(k.Ledgers) > 0 {
		if f.LedgerID != "" && !k.AllowsLedger(f.LedgerID) {
			return forbidden("this key may not use ledger %s", clip(f.LedgerID))
		}
		f.Ledgers = k.Ledgers
	}
	ds, err := reconcile.List(r.Context(), s.pool, f)
	if err != nil {
		return err
	}
	var out DiscrepancyList
	out.Discrepancies, out.NextAfter = page(ds, limit, func(d reconcile.Discrepancy) int64 { return d.ID })
	if !k.IsAdmin() {
		for i := range out.Discrepancies {
			if err := hideOperatorNotes(&out.Discrepancies[i]); err != nil {
				return err
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// hideOperatorNotes keeps what an SCB answered (our side's failure_reason, the SCB's error text
// as the outbox recorded it) and the operators' who and why (acknowledgement, resolution) for
// the operator, as hideSCBErrors does for settlements: only admin keys see them. What was found,
// its status and the resolution's kind stay.
func hideOperatorNotes(d *reconcile.Discrepancy) error {
	d.AcknowledgedBy, d.AcknowledgeReason, d.ResolvedBy, d.ResolutionReason = nil, nil, nil, nil
	if len(d.DBIS) == 0 || string(d.DBIS) == "null" {
		return nil
	}
	var dbis map[string]json.RawMessage
	if err := json.Unmarshal(d.DBIS, &dbis); err != nil {
		return fmt.Errorf("discrepancy %d: dbis: %w", d.ID, err)
	}
	if _, ok := dbis["failure_reason"]; !ok {
		return nil
	}
	delete(dbis, "failure_reason")
	raw, err := json.Marshal(dbis)
	if err != nil {
		return fmt.Errorf("discrepancy %d: dbis: %w", d.ID, err)
	}
	d.DBIS = raw
	return nil
}

func (s *Server) resolveDiscrepancy(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("discrepancy_id"), 10, 64)
	if err != nil || id < 1 {
		return fieldError(ledger.CodeInvalidRequest, "discrepancy_id", "the discrepancy id must be a positive integer")
	}
	var req ResolveDiscrepancyRequest
	if err := decodeJSON(r.Body, &req); err != nil {
		return err
	}
	k := keyOf(r)
	d, err := reconcile.Get(r.Context(), s.pool, id)
	if err != nil {
		return err
	}
	if (k.Bank() != "" && d.SCBID != k.Bank()) || !k.AllowsLedger(d.LedgerID) {
		// Another bank's (or ledger's) discrepancy does not exist for this key.
		return ledger.Errorf(ledger.CodeUnknownDiscrepancy, "no discrepancy %d", id)
	}
	res := reconcile.Resolution{Kind: req.Resolution, Reason: req.Reason}
	if c := req.Correction; c != nil {
		res.Correction = &reconcile.Correction{Reverse: c.Reverse, Amount: c.Amount, Entry: c.Entry}
		if c.Entry != nil {
			if err := s.checkDebits(r, d.LedgerID, []ledger.EntryInput{*c.Entry}); err != nil {
				return err
			}
		}
	}
	resolved, posted, err := reconcile.Resolve(r.Context(), s.pool, k.Actor(), id, res)
	if err != nil {
		return err
	}
	out := ResolveDiscrepancyResponse{Discrepancy: resolved}
	if posted != nil {
		e, err := ledger.GetEntryByReference(r.Context(), s.pool, resolved.LedgerID, reconcile.CorrectionReference(id))
		if err != nil {
			return err
		}
		out.Correction = &e
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// accountStatement answers GET /v1/ledgers/{ledger_id}/accounts/{account_id}/statement: JSON
// (statement.Statement), CSV or camt.053.001.08 XML by ?format=. A member bank's key gets only
// its own bank's accounts.
func (s *Server) accountStatement(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	from, to := q.Get("from"), q.Get("to")
	if from == "" || to == "" {
		field := "from"
		if from != "" {
			field = "to"
		}
		return fieldError(ledger.CodeInvalidRequest, field, "from and to are required (YYYY-MM-DD)")
	}
	format := q.Get("format")
	if format == "" {
		format = string(statement.JSON)
	}
	f, err := statement.ParseFormat(format)
	if err != nil {
		return err
	}
	fromT, toT, err := statement.Dates(from, to)
	if err != nil {
		return err
	}
	ledgerID, accountID := r.PathValue("ledger_id"), r.PathValue("account_id")
	if bank := keyOf(r).Bank(); bank != "" {
		a, err := ledger.GetAccount(r.Context(), s.pool, ledgerID, accountID)
		if err != nil || a.BankID == nil || *a.BankID != bank {
			return forbidden("a member bank's key reads only its own bank's accounts")
		}
	}
	st, err := statement.Build(r.Context(), s.pool, ledgerID, accountID, fromT, toT)
	if err != nil {
		return err
	}
	if f == statement.JSON {
		writeJSON(w, http.StatusOK, st)
		return nil
	}
	var buf bytes.Buffer
	if err := statement.Write(&buf, st, f); err != nil {
		return ledger.Errorf(ledger.CodeInvalidRequest, "%v", err).WithDetails(map[string]string{"field": "format"})
	}
	w.Header().Set("Content-Type", f.ContentType())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}
