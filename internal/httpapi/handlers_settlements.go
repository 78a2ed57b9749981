package httpapi

import (
	"net/http"

	"dualledger/internal/settlement"
)

func (s *Server) postSettlement(w http.ResponseWriter, r *http.Request) error {
	var req settlement.Request
	if err := decodeJSON(r.Body, &req); err != nil {
		return err
	}
	if err := notReserved("reference_id", req.ReferenceID); err != nil {
		return err
	}
	if k := keyOf(r); !k.AllowsLedger(s.settle.LedgerID()) {
		return forbidden("this key may not use ledger %s, where settlements are posted", s.settle.LedgerID())
	}
	if bank := keyOf(r).Bank(); bank != "" && req.SourceBankID != bank {
		return forbidden("a member bank's key settles only from its own bank (source_bank_id %s)", bank).
			WithDetails(map[string]string{"field": "source_bank_id"})
	}
	out, err := s.settle.Settle(r.Context(), req)
	if err != nil {
		return bankSafe(r, err)
	}
	if err := s.redactEntries(r, &out.Entry); err != nil {
		return err
	}
	hideSCBErrors(r, &out)
	status := http.StatusAccepted
	if out.Replayed {
		status = http.StatusOK
	}
	writeJSON(w, status, out)
	return nil
}

func (s *Server) getSettlement(w http.ResponseWriter, r *http.Request) error {
	k := keyOf(r)
	if !k.AllowsLedger(s.settle.LedgerID()) {
		return forbidden("this key may not use ledger %s, where settlements are posted", s.settle.LedgerID())
	}
	out, err := s.settle.Get(r.Context(), r.PathValue("reference_id"))
	if k.Bank() != "" {
		if err != nil {
			return forbidden("a member bank's key reads only the settlements that touch its bank's accounts")
		}
		if ok, err := s.visibleEntry(r, &out.Entry); err != nil || !ok {
			return cmpErr(err, forbidden("a member bank's key reads only the settlements that touch its bank's accounts"))
		}
	}
	if err != nil {
		return err
	}
	hideSCBErrors(r, &out)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// hideSCBErrors keeps what an SCB answered (last_error) and the operators' acknowledgements (an
// incident's who and why) for the operator: only admin keys see them.
func hideSCBErrors(r *http.Request, out *settlement.Settlement) {
	if !keyOf(r).IsAdmin() {
		for i := range out.Sync {
			out.Sync[i].LastError = nil
			out.Sync[i].AcknowledgedBy, out.Sync[i].AcknowledgedReason = nil, nil
		}
	}
}
