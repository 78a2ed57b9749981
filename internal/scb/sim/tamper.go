package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"dualledger/internal/scb"
)

// Tamper actions: a member bank that is wrong after it acknowledged an entry. These are the
// faults reconciliation exists to find (docs/reconciliation.md); each is a durable line of the
// log, so a restarted simulator is as wrong as before.
const (
	tamperLose   = "lose"   // the entry is gone: GET answers 404, the list skips it, a new POST posts it again
	tamperAlter  = "alter"  // the SCB's copy changes (amount, block_hash, accounts, transaction type)
	tamperInvent = "invent" // an entry appears that we never sent
	tamperHold   = "hold"   // the entry stays at a status short of FINAL
)

// Tamper is the body of POST /v1/admin/tamper.
type Tamper struct {
	Action      string `json:"action"` // lose, alter, invent, hold
	LedgerID    string `json:"ledger_id"`
	ReferenceID string `json:"reference_id"`
	// alter: the fields present replace the SCB's copy. A block_hash of "" means "some other
	// hash" (the sha256 of the old one).
	Amount          *string `json:"amount,omitempty"`
	BlockHash       *string `json:"block_hash,omitempty"`
	DebitAccountID  *string `json:"debit_account_id,omitempty"`
	CreditAccountID *string `json:"credit_account_id,omitempty"`
	TransactionType *string `json:"transaction_type,omitempty"`
	// hold: ACCEPTED or POSTED (default POSTED).
	Status string `json:"status,omitempty"`
	// invent: the entry (ledger_id and reference_id are taken from it).
	Entry *scb.Entry `json:"entry,omitempty"`
}

// errNoEntry is a tamper of an entry the SCB does not have.
var errNoEntry = errors.New("no such entry")

// Tamper changes the SCB's ledger as t says, durably, and returns the entry as the SCB now shows
// it (for lose, as it was).
func (s *Server) Tamper(t Tamper) (scb.EntryView, error) {
	now := s.now()
	if t.Action == tamperInvent {
		if t.Entry == nil {
			return scb.EntryView{}, errors.New("invent needs the entry")
		}
		e := *t.Entry
		e.TimestampUTC = e.TimestampUTC.UTC()
		if err := e.Validate(); err != nil {
			return scb.EntryView{}, fmt.Errorf("invent: %w", err)
		}
		rec, err := s.store.invent(e, now)
		if err != nil {
			return scb.EntryView{}, err
		}
		return s.view(rec, now), nil
	}
	key := t.LedgerID + ":" + t.ReferenceID
	old, ok := s.store.get(key)
	if !ok {
		return scb.EntryView{}, fmt.Errorf("%s %s: %w", t.Action, key, errNoEntry)
	}
	rec := record{Seq: old.Seq, Key: key, Tamper: t.Action}
	switch t.Action {
	case tamperLose:
	case tamperAlter:
		e := old.Entry
		set := func(dst *string, v *string) {
			if v != nil {
				*dst = *v
			}
		}
		set(&e.Amount, t.Amount)
		set(&e.DebitAccountID, t.DebitAccountID)
		set(&e.CreditAccountID, t.CreditAccountID)
		set(&e.TransactionType, t.TransactionType)
		if t.BlockHash != nil {
			e.BlockHash = *t.BlockHash
			if e.BlockHash == "" {
				sum := sha256.Sum256([]byte(old.Entry.BlockHash))
				e.BlockHash = hex.EncodeToString(sum[:])
			}
		}
		if e == old.Entry {
			return scb.EntryView{}, errors.New("alter: nothing to change (amount, block_hash, debit_account_id, credit_account_id, transaction_type)")
		}
		rec.Entry = e
	case tamperHold:
		rec.Status = t.Status
		if rec.Status == "" {
			rec.Status = scb.StatusPosted
		}
		if rec.Status != scb.StatusAccepted && rec.Status != scb.StatusPosted {
			return scb.EntryView{}, fmt.Errorf("hold: status must be ACCEPTED or POSTED, not %q", rec.Status)
		}
	default:
		return scb.EntryView{}, fmt.Errorf("action must be lose, alter, invent or hold, not %q", t.Action)
	}
	if err := s.store.tamper(rec); err != nil {
		return scb.EntryView{}, err
	}
	if t.Action == tamperLose {
		return s.view(old, now), nil
	}
	cur, _ := s.store.get(key)
	return s.view(cur, now), nil
}

// invent posts e as if we had sent it, but without counting it as one of our posts.
func (st *store) invent(e scb.Entry, now time.Time) (record, error) {
	key := e.IdempotencyKey()
	st.mu.Lock()
	if st.failed != nil {
		st.mu.Unlock()
		return record{}, st.failed
	}
	if st.closed {
		st.mu.Unlock()
		return record{}, errClosed
	}
	if _, ok := st.byKey[key]; ok {
		st.mu.Unlock()
		return record{}, fmt.Errorf("invent: the SCB already has %s", key)
	}
	seq := st.nextSeq
	st.nextSeq++
	sl := &slot{done: make(chan struct{}), rec: record{Seq: seq, Key: key, SCBEntryID: fmt.Sprintf("%s-%08d", st.id, seq),
		PostedAt: now.UTC(), Entry: e, Tamper: tamperInvent}}
	st.byKey[key] = sl
	st.enqueueLocked(sl)
	st.mu.Unlock()
	<-sl.done
	return sl.rec, sl.err
}

// tamper writes rec (lose, alter, hold of a committed entry) and applies it once durable.
func (st *store) tamper(rec record) error {
	st.mu.Lock()
	if st.failed != nil {
		st.mu.Unlock()
		return st.failed
	}
	if st.closed {
		st.mu.Unlock()
		return errClosed
	}
	sl := &slot{done: make(chan struct{}), rec: rec}
	st.enqueueLocked(sl)
	st.mu.Unlock()
	<-sl.done
	return sl.err
}

func (st *store) enqueueLocked(sl *slot) {
	st.queue = append(st.queue, sl)
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// applyTamper applies a lose, alter or hold line (st.mu held, or loading).
func (st *store) applyTamper(rec record) {
	sl, ok := st.byKey[rec.Key]
	if !ok || !sl.committed || sl.rec.Seq != rec.Seq {
		return // the entry was lost before, or posted again since: the line no longer applies
	}
	switch rec.Tamper {
	case tamperLose:
		delete(st.byKey, rec.Key)
		refs := st.byRef[sl.rec.Entry.ReferenceID]
		for i, k := range refs {
			if k == rec.Key {
				refs = append(refs[:i:i], refs[i+1:]...)
				break
			}
		}
		if len(refs) == 0 {
			delete(st.byRef, sl.rec.Entry.ReferenceID)
		} else {
			st.byRef[sl.rec.Entry.ReferenceID] = refs
		}
		i := sort.Search(len(st.order), func(i int) bool { return st.order[i].rec.Seq >= rec.Seq })
		if i < len(st.order) && st.order[i] == sl {
			st.order = append(st.order[:i:i], st.order[i+1:]...)
		}
		// A redelivery after the loss is a post again, not a double post.
		if st.postsPerKey[rec.Key]--; st.postsPerKey[rec.Key] <= 0 {
			delete(st.postsPerKey, rec.Key)
		}
	case tamperAlter:
		// A new slot: readers holding the old record keep what they read.
		n := &slot{rec: sl.rec, done: sl.done, committed: true}
		n.rec.Entry = rec.Entry
		st.replaceSlot(sl, n)
	case tamperHold:
		n := &slot{rec: sl.rec, done: sl.done, committed: true}
		n.rec.Status = rec.Status
		st.replaceSlot(sl, n)
	}
}

func (st *store) replaceSlot(old, n *slot) {
	st.byKey[n.rec.Key] = n
	i := sort.Search(len(st.order), func(i int) bool { return st.order[i].rec.Seq >= old.rec.Seq })
	if i < len(st.order) && st.order[i] == old {
		st.order[i] = n
	}
}

func (s *Server) handleTamper(w http.ResponseWriter, r *http.Request) {
	var t Tamper
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		writeError(w, http.StatusBadRequest, "bad_json", "tamper: "+err.Error(), nil)
		return
	}
	v, err := s.Tamper(t)
	switch {
	case errors.Is(err, errNoEntry):
		writeError(w, http.StatusNotFound, "not_found", err.Error(), nil)
		return
	case err != nil:
		writeError(w, http.StatusUnprocessableEntity, "invalid_tamper", err.Error(), nil)
		return
	}
	s.log.Info("scb-sim: ledger tampered", "action", t.Action, "key", v.IdempotencyKey())
	writeJSON(w, http.StatusOK, v)
}
