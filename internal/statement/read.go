package statement

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// maxCamtBytes bounds a camt.053 document read back (a statement of MaxEntries entries fits).
const maxCamtBytes = 64 << 20

var camtAmountRE = regexp.MustCompile(`^[0-9]{1,18}(\.[0-9]{1,5})?$`)

// ParseCamt053 reads a camt.053.001.08 BankToCustomerStatement (ours, or a member bank's that
// only sends statements) into Statements: per Stmt the account (Acct/Id/Othr/Id), currency, the
// OPBD and CLBD balances (signed: DBIT is negative) and each entry (amount, direction, booking
// and value times, references). Only what a statement must have is required; any malformed
// value is an error naming the statement and entry, and nothing is returned with it.
func ParseCamt053(r io.Reader) ([]Statement, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxCamtBytes+1))
	if err != nil {
		return nil, fmt.Errorf("camt.053: %w", err)
	}
	if len(data) > maxCamtBytes {
		return nil, fmt.Errorf("camt.053: the document is larger than %d bytes", maxCamtBytes)
	}
	var doc camtDocument
	dec := xml.NewDecoder(strings.NewReader(string(data)))
	dec.Strict = true
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("camt.053: not a readable XML document: %w", err)
	}
	if doc.XMLName.Space != Camt053Namespace {
		return nil, fmt.Errorf("camt.053: namespace %q, want %s", doc.XMLName.Space, Camt053Namespace)
	}
	if len(doc.Stmt.Stmt) == 0 {
		return nil, errors.New("camt.053: no Stmt")
	}
	var out []Statement
	for i, s := range doc.Stmt.Stmt {
		st, err := fromCamt(s)
		if err != nil {
			return nil, fmt.Errorf("camt.053: Stmt %d (%s): %w", i+1, s.ID, err)
		}
		out = append(out, st)
	}
	return out, nil
}

func fromCamt(s camtStmt) (Statement, error) {
	st := Statement{AccountID: s.Acct.ID.Othr.ID, CurrencyCode: s.Acct.Ccy, Entries: []Line{}}
	if st.AccountID == "" {
		return st, errors.New("no account (Acct/Id/Othr/Id)")
	}
	if s.FrToDt != nil {
		st.From, st.To = datePart(s.FrToDt.FrDtTm), datePart(s.FrToDt.ToDtTm)
	}
	seen := map[string]bool{}
	for _, b := range s.Bal {
		v, err := signed(b.Amt, b.CdtDbtInd)
		if err != nil {
			return st, fmt.Errorf("balance %s: %w", b.Tp.CdOrPrtry.Cd, err)
		}
		if st.CurrencyCode == "" {
			st.CurrencyCode = b.Amt.Ccy
		}
		switch b.Tp.CdOrPrtry.Cd {
		case "OPBD":
			st.OpeningBalance = v
		case "CLBD":
			st.ClosingBalance = v
		}
		seen[b.Tp.CdOrPrtry.Cd] = true
	}
	if !seen["OPBD"] || !seen["CLBD"] {
		return st, errors.New("a statement needs an OPBD and a CLBD balance")
	}
	credits, debits := newSum(), newSum()
	for i, n := range s.Ntry {
		l := Line{ReferenceID: n.NtryRef, TransactionType: "", Amount: n.Amt.Value}
		if !camtAmountRE.MatchString(n.Amt.Value) {
			return st, fmt.Errorf("entry %d: amount %q is not a decimal with at most 5 decimals", i+1, clip(n.Amt.Value))
		}
		if n.Amt.Ccy != st.CurrencyCode {
			return st, fmt.Errorf("entry %d: currency %q, the statement's is %q", i+1, clip(n.Amt.Ccy), st.CurrencyCode)
		}
		switch n.CdtDbtInd {
		case "CRDT":
			l.Direction = Credit
			credits.add(n.Amt.Value)
		case "DBIT":
			l.Direction = Debit
			debits.add(n.Amt.Value)
		default:
			return st, fmt.Errorf("entry %d: CdtDbtInd %q is not CRDT or DBIT", i+1, clip(n.CdtDbtInd))
		}
		var err error
		if n.BookgDt != nil {
			if l.BookedAt, err = time.Parse(time.RFC3339Nano, n.BookgDt.DtTm); err != nil {
				return st, fmt.Errorf("entry %d: booking date-time %q: %w", i+1, clip(n.BookgDt.DtTm), err)
			}
		}
		if n.ValDt != nil {
			if l.ValueAt, err = time.Parse(time.RFC3339Nano, n.ValDt.DtTm); err != nil {
				return st, fmt.Errorf("entry %d: value date-time %q: %w", i+1, clip(n.ValDt.DtTm), err)
			}
		}
		if n.BkTxCd.Prtry != nil {
			l.TransactionType = n.BkTxCd.Prtry.Cd
		}
		if n.NtryDtls != nil && len(n.NtryDtls.TxDtls) > 0 {
			refs := n.NtryDtls.TxDtls[0].Refs
			if refs.EndToEndID != "" {
				l.ReferenceID = refs.EndToEndID
			}
			if id, err := strconv.ParseInt(refs.AcctSvcrRef, 10, 64); err == nil {
				l.EntryID = id
			}
		}
		if _, seq, ok := strings.Cut(n.AcctSvcrRef, ":"); ok {
			if v, err := strconv.ParseInt(seq, 10, 64); err == nil {
				l.Seq = v
			}
		}
		st.Entries = append(st.Entries, l)
	}
	st.Count = len(st.Entries)
	st.TotalCredits, st.TotalDebits = credits.String(), debits.String()
	return st, nil
}

func datePart(s string) string {
	if len(s) >= 10 {
		return s[:10]
	}
	return s
}

// signed is a camt amount with its indicator as a signed decimal string.
func signed(a camtAmt, ind string) (string, error) {
	if !camtAmountRE.MatchString(a.Value) {
		return "", fmt.Errorf("amount %q is not a decimal with at most 5 decimals", clip(a.Value))
	}
	d, err := decimal.NewFromString(a.Value)
	if err != nil {
		return "", err
	}
	switch ind {
	case "CRDT":
	case "DBIT":
		d = d.Neg()
	default:
		return "", fmt.Errorf("CdtDbtInd %q is not CRDT or DBIT", clip(ind))
	}
	return d.String(), nil
}

// Check says whether a statement adds up: opening + credits − debits = closing.
func Check(st Statement) error {
	o, err1 := decimal.NewFromString(st.OpeningBalance)
	c, err2 := decimal.NewFromString(st.ClosingBalance)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("balances: %w", err)
	}
	sum := o
	for i, l := range st.Entries {
		a, err := decimal.NewFromString(l.Amount)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i+1, err)
		}
		if l.Direction == Debit {
			a = a.Neg()
		}
		sum = sum.Add(a)
	}
	if !sum.Equal(c) {
		return fmt.Errorf("opening %s + entries = %s, but closing is %s", o, sum, c)
	}
	return nil
}
