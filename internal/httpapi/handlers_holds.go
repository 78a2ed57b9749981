package httpapi

import (
	"math"
	"net/http"
	"net/url"
	"slices"

	"dualledger/internal/ledger"
)

// HoldResponse answers the creation, void and reading of a hold.
type HoldResponse struct {
	Result   string      `json:"result"`
	Replayed bool        `json:"replayed"`
	Hold     ledger.Hold `json:"hold"`
}

// CaptureResponse answers a capture: the hold, now CAPTURED, and the entry it posted.
type CaptureResponse struct {
	Result   string       `json:"result"`
	Replayed bool         `json:"replayed"`
	Hold     ledger.Hold  `json:"hold"`
	Entry    ledger.Entry `json:"entry"`
}

// HoldList is one page of holds.
type HoldList struct {
	Holds       []ledger.Hold `json:"holds"`
	NextAfterID *int64        `json:"next_after_id"`
}

func holdPath(ledgerID, ref string) string {
	return "/v1/ledgers/" + url.PathEscape(ledgerID) + "/holds/" + url.PathEscape(ref)
}

// createHold reserves funds. A member bank's key holds funds only of its own bank's accounts
// (the debit account), as it posts only from them.
func (s *Server) createHold(w http.ResponseWriter, r *http.Request) error {
	ledgerID := r.PathValue("ledger_id")
	var in ledger.HoldInput
	if err := s.decodeJSON(r.Body, &in); err != nil {
		return err
	}
	if err := s.metadataLimits().check(in.Metadata); err != nil {
		return err
	}
	if err := s.checkDebits(r, ledgerID, []ledger.EntryInput{{DebitAccountID: in.DebitAccountID}}); err != nil {
		return err
	}
	res, err := ledger.CreateHold(r.Context(), s.pool, ledgerID, in)
	if err != nil {
		return err
	}
	if !res.OK() {
		return bankSafe(r, res.Err())
	}
	status := http.StatusCreated
	if res.Code == ledger.CodeReplayed {
		status = http.StatusOK
	}
	w.Header().Set("Location", holdPath(ledgerID, res.Hold.ReferenceID))
	writeJSON(w, status, HoldResponse{Result: res.Code, Replayed: res.Code == ledger.CodeReplayed, Hold: *res.Hold})
	return nil
}

// ownHold checks, for a member bank's key, that the hold's debit account is its bank's (to
// capture or void it) or that either account is (to read it); any other hold, or none, is
// refused the same way, so the key learns nothing of other banks' holds.
func (s *Server) ownHold(r *http.Request, ledgerID, ref string, debitOnly bool) error {
	bank := keyOf(r).Bank()
	if bank == "" {
		return nil
	}
	h, err := ledger.GetHold(r.Context(), s.pool, ledgerID, ref)
	refused := forbidden("a member bank's key reaches only the holds on its own bank's accounts")
	if err != nil {
		if ledger.CodeOf(err) == ledger.CodeUnknownHold {
			return refused
		}
		return err
	}
	banks, err := ledger.AccountBanks(r.Context(), s.pool, ledgerID, []string{h.DebitAccountID, h.CreditAccountID})
	if err != nil {
		return err
	}
	if banks[h.DebitAccountID] == bank || (!debitOnly && banks[h.CreditAccountID] == bank) {
		return nil
	}
	return refused
}

func (s *Server) captureHold(w http.ResponseWriter, r *http.Request) error {
	ledgerID, ref := r.PathValue("ledger_id"), r.PathValue("hold_reference_id")
	var in ledger.CaptureInput
	if err := s.decodeJSON(r.Body, &in); err != nil {
		return err
	}
	if err := notReserved("reference_id", in.ReferenceID); err != nil {
		return err
	}
	if err := s.ownHold(r, ledgerID, ref, true); err != nil {
		return err
	}
	res, err := ledger.CaptureHold(r.Context(), s.pool, ledgerID, ref, in)
	if err != nil {
		return err
	}
	if !res.OK() {
		return bankSafe(r, res.Err())
	}
	if res.Entry == nil || res.Hold == nil {
		return ledger.Errorf(ledger.CodeInternal, "capture of hold %q answered %s without its entry", ref, res.Code)
	}
	if err := s.redactEntries(r, res.Entry); err != nil {
		return err
	}
	status := http.StatusCreated
	if res.Code == ledger.CodeReplayed {
		status = http.StatusOK
	}
	w.Header().Set("Location", entryPath(ledgerID, res.Entry.ReferenceID))
	writeJSON(w, status, CaptureResponse{Result: res.Code, Replayed: res.Code == ledger.CodeReplayed, Hold: *res.Hold, Entry: *res.Entry})
	return nil
}

func (s *Server) voidHold(w http.ResponseWriter, r *http.Request) error {
	ledgerID, ref := r.PathValue("ledger_id"), r.PathValue("hold_reference_id")
	if err := s.ownHold(r, ledgerID, ref, true); err != nil {
		return err
	}
	res, err := ledger.VoidHold(r.Context(), s.pool, ledgerID, ref)
	if err != nil {
		return err
	}
	if !res.OK() {
		return res.Err()
	}
	writeJSON(w, http.StatusOK, HoldResponse{Result: res.Code, Replayed: res.Code == ledger.CodeReplayed, Hold: *res.Hold})
	return nil
}

func (s *Server) getHold(w http.ResponseWriter, r *http.Request) error {
	ledgerID, ref := r.PathValue("ledger_id"), r.PathValue("hold_reference_id")
	if err := s.ownHold(r, ledgerID, ref, false); err != nil {
		return err
	}
	h, err := ledger.GetHold(r.Context(), s.pool, ledgerID, ref)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h)
	return nil
}

func (s *Server) listHolds(w http.ResponseWriter, r *http.Request) error {
	after, err := queryInt(r, "after_id", 0, 0, math.MaxInt64)
	if err != nil {
		return err
	}
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	status := q.Get("status")
	if status != "" && !slices.Contains(ledger.HoldStatuses, status) {
		return fieldError(ledger.CodeInvalidRequest, "status", "status must be one of %v, got %s", ledger.HoldStatuses, quoteField(status))
	}
	holds, err := ledger.ListHolds(r.Context(), s.pool, r.PathValue("ledger_id"), ledger.HoldFilter{
		Status: status, Account: q.Get("account"), Bank: keyOf(r).Bank(), AfterID: after, Limit: limit + 1})
	if err != nil {
		return err
	}
	var out HoldList
	out.Holds, out.NextAfterID = page(holds, limit, func(h ledger.Hold) int64 { return h.ID })
	writeJSON(w, http.StatusOK, out)
	return nil
}
