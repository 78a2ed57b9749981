package httpapi

import (
	"net/http"
	"net/url"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
)

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) error {
	ledgerID := r.PathValue("ledger_id")
	var in ledger.AccountInput
	if err := s.decodeJSON(r.Body, &in); err != nil {
		return err
	}
	k := keyOf(r)
	// An overdraft limit is credit: only an admin may grant it. A member bank's key opens
	// accounts of its own bank only.
	if ledger.GrantsCredit(in.OverdraftLimit) && !k.IsAdmin() {
		return forbidden("opening an account with an overdraft limit (non-zero or unlimited) needs the admin scope")
	}
	if bank := k.Bank(); bank != "" && (in.BankID == nil || *in.BankID != bank) {
		return forbidden("a member bank's key opens accounts of its own bank only (bank_id %s)", bank)
	}
	// Tying an account to a member bank changes that bank's settlement setup: a settlement uses
	// the bank's one account per currency and asset type, and a second one makes every
	// settlement with the bank ambiguous. So a bank_id needs the banks scope (or admin), as
	// registering the bank does; a member bank's key (which cannot have banks) may still open
	// its own bank's accounts, checked above.
	if in.BankID != nil && k.Bank() == "" && !k.Has(auth.ScopeBanks) {
		return forbidden("opening an account tied to a member bank (bank_id) needs the banks scope (or admin): it changes that bank's settlement accounts").
			WithDetails(map[string]string{"field": "bank_id"})
	}
	a, err := ledger.CreateAccount(r.Context(), s.pool, k.Actor(), ledgerID, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/ledgers/"+url.PathEscape(ledgerID)+"/accounts/"+url.PathEscape(a.ID))
	writeJSON(w, http.StatusCreated, a)
	return nil
}

// updateAccount changes an account's status or overdraft limit, with a reason for the operator
// log. Changing a limit needs admin (it is credit); member banks' keys change no account.
func (s *Server) updateAccount(w http.ResponseWriter, r *http.Request) error {
	var u ledger.AccountUpdate
	if err := decodeJSON(r.Body, &u); err != nil {
		return err
	}
	k := keyOf(r)
	if k.Bank() != "" {
		return forbidden("a member bank's key cannot change accounts; ask the operator")
	}
	if u.OverdraftLimit != nil && !k.IsAdmin() {
		return forbidden("changing an overdraft limit needs the admin scope").WithDetails(map[string]string{"field": "overdraft_limit"})
	}
	if u.Status != nil && *u.Status == "active" && !k.Has(auth.ScopeBanks) {
		// Making a member bank's account active again (a closed one reopened) gives the bank a
		// settlement account back, as opening one does: the same rule as bank_id on creation,
		// or a key without banks could make the bank's settlements ambiguous this way. (A
		// bank's accounts never change bank, so the look-up cannot go stale.)
		a, err := ledger.GetAccount(r.Context(), s.pool, r.PathValue("ledger_id"), r.PathValue("account_id"))
		if err != nil {
			return err
		}
		if a.BankID != nil {
			return forbidden("making an account of a member bank active needs the banks scope (or admin): it changes that bank's settlement accounts").
				WithDetails(map[string]string{"field": "status"})
		}
	}
	a, err := ledger.UpdateAccount(r.Context(), s.pool, k.Actor(), r.PathValue("ledger_id"), r.PathValue("account_id"), u)
	if err != nil {
		return err
	}
	if !k.Has(auth.ScopeRead) {
		// The account's balances are read's (review of 2026-12-02: an accounts-only key read any
		// account's balance by setting the status it had): the change is made, nothing is shown.
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) error {
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	// One more than asked tells whether another page exists, so the last page says so
	// (next_after null) instead of sending the client for an empty one.
	accounts, err := ledger.ListAccounts(r.Context(), s.pool, r.PathValue("ledger_id"), r.URL.Query().Get("after"), limit+1, keyOf(r).Bank())
	if err != nil {
		return err
	}
	var out AccountList
	out.Accounts, out.NextAfter = page(accounts, limit, func(a ledger.Account) string { return a.ID })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) error {
	k := keyOf(r)
	q := r.URL.Query()
	seq, at, err := ledger.ParseAsOf(q.Get("as_of_seq"), q.Get("as_of"))
	if err != nil {
		return err
	}
	var a ledger.AccountAsOf
	if seq != nil || at != nil {
		a, err = ledger.GetAccountAsOf(r.Context(), s.pool, r.PathValue("ledger_id"), r.PathValue("account_id"), seq, at)
	} else {
		a.Account, err = ledger.GetAccount(r.Context(), s.pool, r.PathValue("ledger_id"), r.PathValue("account_id"))
	}
	if k.Bank() != "" && (err != nil || a.BankID == nil || *a.BankID != k.Bank()) {
		// Whether the account exists is not the member bank's business unless it is theirs.
		return forbidden("a member bank's key reads only its own bank's accounts")
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// checkDebits refuses what a key may not debit, before anything is written (a batch is refused
// whole):
//   - without the issue scope (admin has it), an account with an unlimited overdraft: debiting
//     an issuance account creates money (docs/security.md, "Scopes"). Known per ledger from
//     issuanceAccounts, read at most once per key refresh interval, so that a posting pays no
//     look-up of its own;
//   - for a member bank's key, any account that is not one of its bank's: such a key moves money
//     only out of its own accounts. An account that does not exist is refused the same way (the
//     key learns nothing about other banks' accounts).
func (s *Server) checkDebits(r *http.Request, ledgerID string, entries []ledger.EntryInput) error {
	k := keyOf(r)
	bank := k.Bank()
	at := func(i int, field string, err *ledger.Error) error {
		if len(entries) > 1 {
			return err.WithDetails(map[string]any{"index": i, "field": field})
		}
		return err.WithDetails(map[string]any{"field": field})
	}
	if bank != "" {
		ids := make([]string, 0, len(entries))
		for _, e := range entries {
			ids = append(ids, e.DebitAccountID)
		}
		banks, err := ledger.AccountBanks(r.Context(), s.pool, ledgerID, ids)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if b, ok := banks[e.DebitAccountID]; !ok || b != bank {
				return at(i, "debit_account_id", forbidden("a member bank's key moves money only out of its own bank's accounts (%s): debit_account_id %s is not one",
					bank, clip(e.DebitAccountID)))
			}
		}
	}
	// After the bank's check: a member bank's key learns nothing of other banks' accounts.
	if !k.Has(auth.ScopeIssue) {
		// Only a ledger that exists gets a set kept for it: made-up ledger ids must not grow the
		// server's memory (review of 2026-12-02: the holds route checks debits first).
		if err := s.checkLedger(r.Context(), ledgerID); err != nil {
			return err
		}
		unlimited, err := s.issuance.of(r.Context(), ledgerID)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if unlimited[e.DebitAccountID] {
				return at(i, "debit_account_id", forbidden("debit_account_id %s has an unlimited overdraft: debiting it creates money, which needs the issue scope",
					clip(e.DebitAccountID)))
			}
		}
	}
	if bank == "" {
		return nil
	}
	var reversed []int64
	for _, e := range entries {
		if e.ReversesEntryID != nil {
			reversed = append(reversed, *e.ReversesEntryID)
		}
	}
	// A reversal moves money back out of the account the entry paid into, so a member bank may
	// reverse only entries that paid into its own accounts; checking it here, before the posting
	// function, also keeps that function's answer (which describes the target entry) from
	// telling the key about other banks' entries.
	if len(reversed) > 0 {
		own, err := ledger.EntriesCreditingBank(r.Context(), s.pool, ledgerID, reversed, bank)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if e.ReversesEntryID != nil && !own[*e.ReversesEntryID] {
				return at(i, "reverses_entry_id", forbidden("a member bank's key reverses only entries paid into its own bank's accounts"))
			}
		}
	}
	return nil
}

// visibleEntry says whether the request's key may read an entry, and shapes it for that key:
// a member bank's key sees only the entries that touch one of its bank's accounts, and in them
// only its own accounts' balances (one query for both).
func (s *Server) visibleEntry(r *http.Request, e *ledger.Entry) (bool, error) {
	bank := keyOf(r).Bank()
	if bank == "" {
		return true, nil
	}
	banks, err := ledger.AccountBanks(r.Context(), s.pool, e.LedgerID, []string{e.DebitAccountID, e.CreditAccountID})
	if err != nil {
		return false, err
	}
	if banks[e.DebitAccountID] != bank && banks[e.CreditAccountID] != bank {
		return false, nil
	}
	redactEntry(banks, bank, e)
	return true, nil
}
