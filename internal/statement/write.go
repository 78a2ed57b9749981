package statement

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// sum adds decimal amounts exactly (never a float).
type sum struct{ d decimal.Decimal }

func newSum() *sum { return &sum{} }

func (s *sum) add(v string) {
	if d, err := decimal.NewFromString(v); err == nil {
		s.d = s.d.Add(d)
	}
}

func (s *sum) String() string { return s.d.String() }

// Write writes st in format f.
func Write(w io.Writer, st Statement, f Format) error {
	switch f {
	case CSV:
		return WriteCSV(w, st)
	case Camt053:
		return WriteCamt053(w, st)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(st)
}

// CSVHeader is the first line of a CSV statement. The first row after it is the opening
// balance (row_type opening), the last the closing balance (closing); the rows between are the
// entries (entry), each with the balance after it.
var CSVHeader = []string{"row_type", "ledger_id", "account_id", "currency_code", "seq", "entry_id", "booked_at", "value_at",
	"reference_id", "transaction_type", "direction", "counterparty", "amount", "balance"}

// WriteCSV writes st as CSV (RFC 4180).
func WriteCSV(w io.Writer, st Statement) error {
	cw := csv.NewWriter(w)
	row := func(kind, seq, entryID, booked, value, ref, typ, dir, cp, amount, balance string) {
		_ = cw.Write([]string{kind, st.LedgerID, st.AccountID, st.CurrencyCode, seq, entryID, booked, value, csvSafe(ref), csvSafe(typ), dir,
			csvSafe(cp), amount, balance})
	}
	_ = cw.Write(CSVHeader)
	row("opening", "", "", st.From, "", "", "", "", "", "", st.OpeningBalance)
	for _, l := range st.Entries {
		row("entry", strconv.FormatInt(l.Seq, 10), strconv.FormatInt(l.EntryID, 10), l.BookedAt.Format(time.RFC3339Nano),
			l.ValueAt.Format(time.RFC3339Nano), l.ReferenceID, l.TransactionType, l.Direction, l.Counterparty, l.Amount, l.Balance)
	}
	row("closing", "", "", st.To, "", "", "", "", "", "", st.ClosingBalance)
	cw.Flush()
	return cw.Error()
}

// csvSafe keeps a spreadsheet from reading a text field as a formula (CWE-1236): a leading
// = + - @ gets a quote. Reference ids are free text from clients.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// Camt053Namespace is the XML namespace of camt.053.001.08.
const Camt053Namespace = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"

// The camt.053.001.08 elements we write and read (the subset of BankToCustomerStatementV08 a
// ledger statement needs; element names and order as in the schema).
type camtDocument struct {
	XMLName xml.Name      `xml:"Document"`
	Xmlns   string        `xml:"xmlns,attr"`
	Stmt    camtStatement `xml:"BkToCstmrStmt"`
}

type camtStatement struct {
	GrpHdr struct {
		MsgID    string `xml:"MsgId"`
		CreDtTm  string `xml:"CreDtTm"`
		AddtlInf string `xml:"AddtlInf,omitempty"`
	} `xml:"GrpHdr"`
	Stmt []camtStmt `xml:"Stmt"`
}

type camtStmt struct {
	ID      string `xml:"Id"`
	CreDtTm string `xml:"CreDtTm"`
	FrToDt  *struct {
		FrDtTm string `xml:"FrDtTm"`
		ToDtTm string `xml:"ToDtTm"`
	} `xml:"FrToDt"`
	Acct struct {
		ID struct {
			Othr struct {
				ID string `xml:"Id"`
			} `xml:"Othr"`
		} `xml:"Id"`
		Ccy string `xml:"Ccy,omitempty"`
	} `xml:"Acct"`
	Bal  []camtBal   `xml:"Bal"`
	Ntry []camtEntry `xml:"Ntry"`
}

type camtAmt struct {
	Ccy   string `xml:"Ccy,attr"`
	Value string `xml:",chardata"`
}

type camtBal struct {
	Tp struct {
		CdOrPrtry struct {
			Cd string `xml:"Cd"`
		} `xml:"CdOrPrtry"`
	} `xml:"Tp"`
	Amt       camtAmt `xml:"Amt"`
	CdtDbtInd string  `xml:"CdtDbtInd"`
	Dt        struct {
		Dt string `xml:"Dt"`
	} `xml:"Dt"`
}

type camtDtTm struct {
	DtTm string `xml:"DtTm"`
}

type camtEntry struct {
	NtryRef   string  `xml:"NtryRef,omitempty"`
	Amt       camtAmt `xml:"Amt"`
	CdtDbtInd string  `xml:"CdtDbtInd"`
	RvslInd   *bool   `xml:"RvslInd,omitempty"`
	Sts       struct {
		Cd string `xml:"Cd"`
	} `xml:"Sts"`
	BookgDt     *camtDtTm `xml:"BookgDt"`
	ValDt       *camtDtTm `xml:"ValDt"`
	AcctSvcrRef string    `xml:"AcctSvcrRef,omitempty"`
	BkTxCd      struct {
		Prtry *struct {
			Cd string `xml:"Cd"`
		} `xml:"Prtry"`
	} `xml:"BkTxCd"`
	NtryDtls *struct {
		TxDtls []struct {
			Refs struct {
				AcctSvcrRef string `xml:"AcctSvcrRef,omitempty"`
				EndToEndID  string `xml:"EndToEndId,omitempty"`
			} `xml:"Refs"`
		} `xml:"TxDtls"`
	} `xml:"NtryDtls"`
	AddtlNtryInf string `xml:"AddtlNtryInf,omitempty"`
}

// max35 keeps an identifier within Max35Text: as is when it fits, else a readable prefix and a
// hash of the whole (still unique).
func max35(s string) string {
	if len([]rune(s)) <= 35 {
		return s
	}
	h := sha256.Sum256([]byte(s))
	r := []rune(s)
	return string(r[:22]) + "~" + hex.EncodeToString(h[:6])
}

// camtAmount renders a balance or amount: absolute value and the CRDT/DBIT indicator. camt.053
// amounts have at most 5 decimals (ActiveOrHistoricCurrencyAndAmount).
func camtAmount(v string) (string, string, error) {
	d, err := decimal.NewFromString(v)
	if err != nil {
		return "", "", fmt.Errorf("amount %q: %w", v, err)
	}
	ind := "CRDT"
	if d.IsNegative() {
		ind, d = "DBIT", d.Neg()
	}
	if d.Exponent() < -5 && !d.Equal(d.Round(5)) {
		return "", "", fmt.Errorf("%w: %s", errTooPrecise, v)
	}
	return d.StringFixed(max(0, min(5, -d.Exponent()))), ind, nil
}

// WriteCamt053 writes st as a camt.053.001.08 BankToCustomerStatement: one Stmt with the
// opening (OPBD) and closing (CLBD) booked balances and one Ntry per entry (Amt, CdtDbtInd,
// status BOOK, booking and value date-times, our ledger:seq as the servicer's reference, the
// transaction type as proprietary bank transaction code, the reference_id as end-to-end id).
func WriteCamt053(w io.Writer, st Statement) error {
	doc := camtDocument{Xmlns: Camt053Namespace}
	created := st.GeneratedAt.UTC().Format("2006-01-02T15:04:05.000Z")
	doc.Stmt.GrpHdr.MsgID = max35(fmt.Sprintf("DL-%s-%s-%d", st.LedgerID, st.From, st.GeneratedAt.UnixNano()))
	doc.Stmt.GrpHdr.CreDtTm = created
	s := camtStmt{ID: max35(fmt.Sprintf("%s/%s/%s/%s", st.LedgerID, st.AccountID, st.From, st.To)), CreDtTm: created}
	s.FrToDt = &struct {
		FrDtTm string `xml:"FrDtTm"`
		ToDtTm string `xml:"ToDtTm"`
	}{FrDtTm: st.From + "T00:00:00.000Z", ToDtTm: st.To + "T23:59:59.999Z"}
	if len([]rune(st.AccountID)) > 34 {
		return fmt.Errorf("account id %q is longer than camt.053's 34 characters", st.AccountID)
	}
	s.Acct.ID.Othr.ID = st.AccountID
	s.Acct.Ccy = st.CurrencyCode
	for _, b := range []struct{ code, value, date string }{{"OPBD", st.OpeningBalance, st.From}, {"CLBD", st.ClosingBalance, st.To}} {
		v, ind, err := camtAmount(b.value)
		if err != nil {
			return err
		}
		var bal camtBal
		bal.Tp.CdOrPrtry.Cd = b.code
		bal.Amt = camtAmt{Ccy: st.CurrencyCode, Value: v}
		bal.CdtDbtInd = ind
		bal.Dt.Dt = b.date
		s.Bal = append(s.Bal, bal)
	}
	for _, l := range st.Entries {
		v, _, err := camtAmount(l.Amount)
		if err != nil {
			return err
		}
		e := camtEntry{NtryRef: max35(l.ReferenceID), Amt: camtAmt{Ccy: st.CurrencyCode, Value: v}, CdtDbtInd: "CRDT",
			AcctSvcrRef:  max35(fmt.Sprintf("%s:%d", st.LedgerID, l.Seq)),
			BookgDt:      &camtDtTm{DtTm: l.BookedAt.UTC().Format("2006-01-02T15:04:05.000000Z")},
			ValDt:        &camtDtTm{DtTm: l.ValueAt.UTC().Format("2006-01-02T15:04:05.000000Z")},
			AddtlNtryInf: "counterparty " + l.Counterparty}
		if l.Direction == Debit {
			e.CdtDbtInd = "DBIT"
		}
		if l.ReversesEntryID != nil {
			t := true
			e.RvslInd = &t
		}
		e.Sts.Cd = "BOOK"
		e.BkTxCd.Prtry = &struct {
			Cd string `xml:"Cd"`
		}{Cd: max35(l.TransactionType)}
		e.NtryDtls = &struct {
			TxDtls []struct {
				Refs struct {
					AcctSvcrRef string `xml:"AcctSvcrRef,omitempty"`
					EndToEndID  string `xml:"EndToEndId,omitempty"`
				} `xml:"Refs"`
			} `xml:"TxDtls"`
		}{}
		e.NtryDtls.TxDtls = make([]struct {
			Refs struct {
				AcctSvcrRef string `xml:"AcctSvcrRef,omitempty"`
				EndToEndID  string `xml:"EndToEndId,omitempty"`
			} `xml:"Refs"`
		}, 1)
		e.NtryDtls.TxDtls[0].Refs.AcctSvcrRef = strconv.FormatInt(l.EntryID, 10)
		e.NtryDtls.TxDtls[0].Refs.EndToEndID = max35(l.ReferenceID)
		s.Ntry = append(s.Ntry, e)
	}
	doc.Stmt.Stmt = []camtStmt{s}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
