package transform

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"dualledger/internal/backfill/source"
	"dualledger/internal/jsonlimit"
	"dualledger/internal/ledger"
	"dualledger/internal/money"
)

// Row is a source row made into a posting.
type Row struct {
	LedgerID string
	Entry    ledger.EntryInput
	// Time is the row's business time (nil: the source gave none, the entry takes the time of
	// posting).
	Time *time.Time
	// OwnEntryID, for an SCB's history (source type scb), is the dbis_entry_id the SCB lists
	// with the entry: DBIS's id of an entry that DBIS delivered to the SCB (0: none). Such an
	// entry is already ours; the SCB holds only the fields it was sent (OwnDelivery).
	OwnEntryID int64
}

// UnsentFields are the fields of an entry that its delivery to an SCB does not carry (docs/design.md
// §5): an SCB's copy of our entry lacks them.
var UnsentFields = []string{FieldMetadata, FieldFxRate, FieldReversesEntryID}

// OwnDelivery reports whether a row of an SCB's history whose reference the ledger holds as
// entry existingID, differing from it in diff, is that entry as DBIS delivered it: the SCB names
// it as DBIS's entry existingID, and they differ only in fields the delivery does not carry.
func OwnDelivery(row Row, existingID int64, diff []string) bool {
	if row.OwnEntryID == 0 || row.OwnEntryID != existingID {
		return false
	}
	for _, f := range diff {
		if !slices.Contains(UnsentFields, f) {
			return false
		}
	}
	return true
}

// Transformer applies a mapping to rows of one source.
type Transformer struct {
	m             Mapping
	sourceKey     string // what makes a generated reference id belong to this source
	sourceType    string
	defaultLedger string
	defaultValid  bool // defaultLedger is a well-formed ledger id (checked once, not per row)
	loc           *time.Location
	thousands     string              // the thousands separators (normalise)
	decimal       rune                // the decimal separator, '.' or ','
	columnOf      map[string][]string // field -> candidate source columns
	mapped        map[string]bool     // source columns that are some field
	off           map[string]bool     // source columns the mapping turns off ("-"): neither read nor kept
	dotted        map[string]bool     // source columns read inside, as JSON (a dotted column's head)
}

// New returns a Transformer for the rows of source sourceType/sourceID; rows that name no
// ledger go to defaultLedger (--ledger). m may be nil (the seed's columns, no maps).
func New(m *Mapping, sourceType, sourceID, defaultLedger string) *Transformer {
	t := &Transformer{sourceKey: sourceType + "/" + sourceID, sourceType: sourceType, defaultLedger: defaultLedger, loc: time.UTC,
		columnOf: map[string][]string{}, mapped: map[string]bool{}, off: map[string]bool{}, dotted: map[string]bool{}}
	if m != nil {
		t.m = *m
	}
	if t.m.Unmapped == "" && (sourceType == "api" || sourceType == "scb") {
		// An API's items carry their metadata as a field; the rest (ids, hashes, statuses of the
		// other system) is that system's bookkeeping, not the entry's content.
		t.m.Unmapped = "ignore"
	}
	if t.m.Defaults.LedgerID != "" && defaultLedger == "" {
		t.defaultLedger = t.m.Defaults.LedgerID
	}
	t.defaultValid = ledger.ValidLedgerID(t.defaultLedger)
	if t.m.Timestamp.Timezone != "" {
		if loc, err := time.LoadLocation(t.m.Timestamp.Timezone); err == nil {
			t.loc = loc
		}
	}
	t.decimal = Rune(t.m.decimalSep())
	if t.m.Amount.ThousandsSeparators != nil {
		t.thousands = *t.m.Amount.ThousandsSeparators
	} else {
		t.thousands = "_' \u00a0\u202f"
		if t.m.decimalSep() == "." {
			t.thousands += ","
		} else {
			t.thousands += "."
		}
	}
	for _, f := range append(slices.Clone(Fields), FieldReversesEntryID) {
		if c, ok := t.m.Columns[f]; ok {
			if c != "-" {
				t.columnOf[f] = []string{c}
			}
		} else {
			t.columnOf[f] = defaultColumns[f]
		}
		for _, c := range t.columnOf[f] {
			head, _, dotted := strings.Cut(c, ".")
			t.mapped[head] = true
			if dotted {
				t.dotted[head] = true
			}
		}
	}
	if m != nil {
		for c := range m.Columns {
			if m.Columns[c] == "-" {
				for _, d := range defaultColumns[c] {
					t.mapped[d] = true // a column turned off is not "other" either
					t.off[d] = true
				}
			}
		}
	}
	return t
}

// CheckColumns checks a source's columns (a CSV header) before any row is read. It refuses
// (source.ErrUnusable) two columns that are names of one field, of which only one would be read
// and the other silently lost (reference_id beside referenceId), and a field that every row needs
// but that no column holds and no default gives (every row would be rejected, and the import
// would end "completed" with nothing posted).
func (t *Transformer) CheckColumns(columns []string) error {
	have := map[string]bool{}
	for _, c := range columns {
		have[c] = true
	}
	required := map[string]string{
		FieldDebitAccountID:  t.m.Defaults.DebitAccountID,
		FieldCreditAccountID: t.m.Defaults.CreditAccountID,
		FieldAmount:          "",
		FieldCurrencyCode:    t.m.Defaults.CurrencyCode,
		FieldTransactionType: t.m.Defaults.TransactionType,
	}
	for _, f := range Fields {
		var found []string
		for _, c := range t.columnOf[f] {
			if have[strings.SplitN(c, ".", 2)[0]] {
				found = append(found, c)
			}
		}
		if len(found) > 1 {
			return source.Unusablef("the columns %s and %s are both %s: keep one, or name the one to read in the mapping's columns (%s: ...)", quote(found[0]), quote(found[1]), f, f)
		}
		if def, ok := required[f]; ok && len(found) == 0 && def == "" {
			looked := "the mapping turns it off"
			if len(t.columnOf[f]) > 0 {
				looked = "looked for " + strings.Join(quoteAll(t.columnOf[f]), ", ")
			}
			return source.Unusablef("no column holds %s, which every row needs (%s; the columns are %s): name it in the mapping's columns (%s: <column>)%s",
				f, looked, strings.Join(quoteAll(columns), ", "), f, defaultHint(f))
		}
	}
	return nil
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = quote(s)
	}
	return out
}

func defaultHint(field string) string {
	if field == FieldAmount {
		return ""
	}
	return " or give defaults." + field
}

// reject is a row's rejection: the code the posting function would answer for the same problem.
func reject(code, field, format string, args ...any) *ledger.Error {
	return ledger.Errorf(code, format, args...).WithDetails(map[string]string{"field": field})
}

// get returns a field's value from the row ("" when absent).
func (t *Transformer) get(rec source.Record, field string) string {
	for _, c := range t.columnOf[field] {
		if v, ok := rec.Fields[c]; ok && v != "" {
			return v
		}
		if head, rest, ok := strings.Cut(c, "."); ok {
			if v := jsonPath(rec.Fields[head], rest); v != "" {
				return v
			}
		}
	}
	return ""
}

// jsonPath reads a dotted path inside a JSON object given as text; strings come back unquoted,
// numbers as written, objects and arrays as JSON.
func jsonPath(doc, path string) string {
	if doc == "" {
		return ""
	}
	var cur json.RawMessage = json.RawMessage(doc)
	for _, k := range strings.Split(path, ".") {
		var obj map[string]json.RawMessage
		if json.Unmarshal(cur, &obj) != nil {
			return ""
		}
		var ok bool
		if cur, ok = obj[k]; !ok {
			return ""
		}
	}
	return ScalarText(cur)
}

// ScalarText renders a JSON value as a cell: a string unquoted, null as "", anything else as
// its JSON.
func ScalarText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	if string(v) == "null" {
		return ""
	}
	return string(v)
}

// Transform makes rec into a posting, or says why it cannot be one.
func (t *Transformer) Transform(rec source.Record) (Row, *ledger.Error) {
	if rec.Err != nil {
		return Row{}, reject(ledger.CodeInvalidRequest, "row", "%s", rec.Err.Error())
	}
	if err := t.storable(rec); err != nil {
		return Row{}, err
	}
	// A reversal names the entry it reverses by that entry's id in the source, which is not its
	// id here (the import draws new ids), and the posting function checks a reversal against the
	// entry it names. Dropping the link silently imported a reversal as an ordinary entry, which
	// left the reversed entry open to being reversed again in full; the operator decides instead.
	if v := strings.TrimSpace(t.get(rec, FieldReversesEntryID)); v != "" {
		return Row{}, reject(ledger.CodeInvalidRequest, FieldReversesEntryID,
			"the row reverses entry %s of its source, and an import cannot carry that link over (the entry has another id here): "+
				"turn the link off in the mapping (columns: {reverses_entry_id: \"-\"}) to import reversals as ordinary entries, "+
				"or post this reversal with POST /v1/ledgers/{ledger_id}/entries naming the entry's id here", quote(v))
	}
	var row Row
	row.LedgerID = t.get(rec, FieldLedgerID)
	if row.LedgerID == "" {
		row.LedgerID = t.defaultLedger
	}
	if row.LedgerID == "" {
		return Row{}, reject(ledger.CodeInvalidRequest, FieldLedgerID, "the row names no ledger and no --ledger was given")
	}
	if !(row.LedgerID == t.defaultLedger && t.defaultValid) && !ledger.ValidLedgerID(row.LedgerID) {
		return Row{}, reject(ledger.CodeUnknownLedger, FieldLedgerID, "ledger id %q is not a valid ledger id", row.LedgerID)
	}
	e := &row.Entry
	var err *ledger.Error
	if e.DebitAccountID, err = t.account(rec, FieldDebitAccountID); err != nil {
		return Row{}, err
	}
	if e.CreditAccountID, err = t.account(rec, FieldCreditAccountID); err != nil {
		return Row{}, err
	}
	e.CurrencyCode = strings.TrimSpace(t.get(rec, FieldCurrencyCode))
	if e.CurrencyCode == "" {
		e.CurrencyCode = t.m.Defaults.CurrencyCode
	}
	if e.CurrencyCode == "" {
		return Row{}, reject(ledger.CodeUnknownCurrency, FieldCurrencyCode, "currency_code is missing (an ISO 4217 code such as \"USD\"; or set defaults.currency_code in the mapping)")
	}
	e.AssetType = strings.TrimSpace(t.get(rec, FieldAssetType))
	if e.AssetType == "" {
		e.AssetType = t.m.Defaults.AssetType
	}
	if e.AssetType == "" {
		e.AssetType = string(money.Fiat) // the seed's default
	}
	if e.Amount, err = t.amount(t.get(rec, FieldAmount), e.CurrencyCode, e.AssetType); err != nil {
		return Row{}, err
	}
	e.TransactionType = strings.TrimSpace(t.get(rec, FieldTransactionType))
	if mapped, ok := t.m.TransactionTypes[e.TransactionType]; ok {
		e.TransactionType = mapped
	}
	if e.TransactionType == "" {
		e.TransactionType = t.m.Defaults.TransactionType
	}
	if e.TransactionType == "" {
		return Row{}, reject(ledger.CodeInvalidRequest, FieldTransactionType, "transaction_type is missing (or set defaults.transaction_type in the mapping)")
	}
	if fx := strings.TrimSpace(t.get(rec, FieldFxRate)); fx != "" {
		plain, _, problem := t.normalise(fx)
		if problem != "" {
			return Row{}, reject(ledger.CodeInvalidRequest, FieldFxRate, "fx_rate %s %s", quote(fx), problem)
		}
		a, perr := money.ParseAmount(plain)
		if perr != nil || !a.IsPositive() {
			return Row{}, reject(ledger.CodeInvalidRequest, FieldFxRate, "fx_rate %q is not a positive decimal", fx)
		}
		s := a.String()
		e.FxRate = &s
	}
	if ts := strings.TrimSpace(t.get(rec, FieldTimestampUTC)); ts != "" {
		tm, terr := t.timestamp(ts)
		if terr != nil {
			return Row{}, terr
		}
		row.Time = &tm
		s := tm.Format(time.RFC3339Nano)
		e.TimestampUTC = &s
	}
	meta, err := t.metadata(rec)
	if err != nil {
		return Row{}, err
	}
	ref := t.get(rec, FieldReferenceID)
	if ref == "" || ledger.ValidateReference(FieldReferenceID, ref) != nil {
		if ref != "" {
			if meta == nil {
				meta = map[string]any{}
			}
			if _, taken := meta["source_reference_id"]; taken {
				return Row{}, reject(ledger.CodeInvalidRequest, FieldMetadata,
					"the row's reference %s is not one the ledger accepts, and its metadata already has source_reference_id, where the import keeps the original: one of the two would be lost", quote(ref))
			}
			meta["source_reference_id"] = ref
		}
		ref = t.generatedReference(rec)
	}
	e.ReferenceID = ref
	if len(meta) > 0 {
		b, merr := json.Marshal(meta)
		if merr != nil {
			return Row{}, reject(ledger.CodeInvalidRequest, FieldMetadata, "metadata cannot be encoded: %v", merr)
		}
		// Every part of the metadata was checked above (the cell by metadata, the other columns
		// and the original reference by storable); this backstop, on the encoded object, keeps
		// a part added later from failing the whole batch if it is not.
		if jerr := jsonlimit.CheckEscapes(b); jerr != nil {
			return Row{}, reject(ledger.CodeInvalidRequest, FieldMetadata, "metadata: %v: PostgreSQL cannot store it", jerr)
		}
		e.Metadata = b
	}
	if t.sourceType == "scb" {
		if id, perr := strconv.ParseInt(strings.TrimSpace(rec.Fields["dbis_entry_id"]), 10, 64); perr == nil && id > 0 {
			row.OwnEntryID = id
		}
	}
	// Values the mapping supplies (its accounts and transaction_types maps, a default account or
	// type) are not source cells and did not pass storable.
	for _, f := range []struct{ name, v string }{{FieldDebitAccountID, e.DebitAccountID}, {FieldCreditAccountID, e.CreditAccountID}, {FieldTransactionType, e.TransactionType}} {
		if strings.IndexByte(f.v, 0) >= 0 {
			return Row{}, reject(ledger.CodeInvalidRequest, f.name, "%s %s contains the NUL character (U+0000), which PostgreSQL cannot store in text", f.name, quote(f.v))
		}
	}
	return row, nil
}

// storable refuses a row with a NUL byte in a column the import reads or keeps: PostgreSQL stores
// no NUL in text or jsonb, and the batch's statement would fail for every row in it. A column
// read inside as JSON (a dotted column's head) must not hold a \u0000 or a lone surrogate
// escape either: decoding would turn the surrogate into U+FFFD, so that two different values
// became one (two rows one reference). Columns the mapping ignores or turns off are not looked
// at.
func (t *Transformer) storable(rec source.Record) *ledger.Error {
	for k, v := range rec.Fields {
		if t.off[k] || (t.m.Unmapped == "ignore" && !t.mapped[k]) {
			continue
		}
		if strings.IndexByte(v, 0) >= 0 {
			return reject(ledger.CodeInvalidRequest, k, "column %s contains the NUL character (U+0000), which PostgreSQL cannot store in text", quote(k))
		}
		if t.dotted[k] {
			if err := jsonlimit.CheckEscapes([]byte(v)); err != nil {
				return reject(ledger.CodeInvalidRequest, k, "column %s: %v", quote(k), err)
			}
		}
	}
	return nil
}

func (t *Transformer) account(rec source.Record, field string) (string, *ledger.Error) {
	v := strings.TrimSpace(t.get(rec, field))
	if v == "" && field == FieldDebitAccountID {
		v = t.m.Defaults.DebitAccountID
	}
	if v == "" && field == FieldCreditAccountID {
		v = t.m.Defaults.CreditAccountID
	}
	if v == "" {
		return "", reject(ledger.CodeInvalidRequest, field, "%s is missing", field)
	}
	if mapped, ok := t.m.Accounts[v]; ok {
		return mapped, nil
	}
	if t.m.AccountsStrict {
		return "", reject(ledger.CodeUnknownAccount, field, "%s %q is not in the mapping's accounts (accounts_strict)", field, v)
	}
	return v, nil
}

// normalise makes an amount or rate cell the plain decimal money.ParseAmount reads: surrounding
// whitespace trimmed, thousands separators removed, the decimal separator made a point. A
// separator is removed only where it is one, because removing it anywhere turns a misread
// decimal into another amount ("1,5" would be 15, "1.000,00" under decimal_separator "." would
// be 1): one separator character, used only in the integer part, between groups of exactly
// three digits after a first group of 1 to 3 digits that does not start with 0 (a number below
// 1000 is never grouped, so "0,001" is a misread decimal, not 1). Anything else with a separator
// or a second decimal separator is a problem (a message fragment that follows the quoted
// value), never a guess. sep is the separator removed (0: none). A cell with other characters
// (letters, a '+', an exponent) is handed on with its separators removed: money.ParseAmount
// refuses it whatever they were, with its own, more specific, hint.
func (t *Transformer) normalise(raw string) (plain string, sep rune, problem string) {
	s := strings.TrimSpace(raw)
	dec := t.decimal
	isSep := func(r rune) bool { return strings.ContainsRune(t.thousands, r) }
	sign, body := "", s
	if strings.HasPrefix(body, "-") {
		// The sign is money.ParseAmount's business (and a negative amount the posting rule's).
		sign, body = "-", body[1:]
	}
	for _, r := range body {
		if (r < '0' || r > '9') && r != dec && !isSep(r) {
			if r == '.' && dec == ',' {
				return "", 0, fmt.Sprintf(`has a "." but the decimal separator is "," (amount.decimal_separator) and "." is not one of the thousands separators %s`, sepList(t.thousands))
			}
			return sign + strings.Replace(strings.Map(func(r rune) rune {
				if isSep(r) {
					return -1
				}
				return r
			}, body), string(dec), ".", 1), 0, ""
		}
	}
	intPart, frac, _ := strings.Cut(body, string(dec))
	if strings.ContainsRune(frac, dec) {
		return "", 0, fmt.Sprintf("has more than one decimal separator %s", qr(dec))
	}
	if i := strings.IndexFunc(frac, isSep); i >= 0 {
		r, _ := utf8.DecodeRuneInString(frac[i:])
		return "", 0, fmt.Sprintf("has a %s after the decimal separator %s (thousands separators group the integer part only)%s",
			qr(r), qr(dec), otherDecimalHint(r, dec))
	}
	if i := strings.IndexFunc(intPart, isSep); i >= 0 {
		sep, _ = utf8.DecodeRuneInString(intPart[i:])
		if j := strings.IndexFunc(intPart, func(r rune) bool { return r != sep && isSep(r) }); j >= 0 {
			other, _ := utf8.DecodeRuneInString(intPart[j:])
			return "", 0, fmt.Sprintf("mixes the thousands separators %s and %s: an amount groups its digits with one", qr(sep), qr(other))
		}
		if why := grouping(strings.Split(intPart, string(sep))); why != "" {
			return "", 0, fmt.Sprintf("has a %s that is not a thousands separator (%s; groups of three digits, as in %q)%s",
				qr(sep), why, "1"+string(sep)+"234"+string(sep)+"567"+string(dec)+"89", otherDecimalHint(sep, dec))
		}
		intPart = strings.ReplaceAll(intPart, string(sep), "")
	}
	plain = sign + intPart
	if len(frac) > 0 || strings.ContainsRune(body, dec) {
		plain += "." + frac
	}
	return plain, sep, ""
}

// grouping says what is wrong with the digit groups between thousands separators ("": nothing).
func grouping(groups []string) string {
	last := groups[len(groups)-1]
	switch {
	case groups[0] == "":
		return "it comes before the first digit"
	case last == "":
		return "it comes after the last digit of the integer part"
	case len(groups[0]) > 3:
		return fmt.Sprintf("the first group has %d digits", len(groups[0]))
	case groups[0][0] == '0':
		return "the first group starts with 0, and a number below 1000 is not grouped"
	}
	for _, g := range groups[1:] {
		if len(g) != 3 {
			if len(g) == 1 {
				return "a group of 1 digit"
			}
			return fmt.Sprintf("a group of %d digits", len(g))
		}
	}
	return ""
}

// otherDecimalHint says what to set when the separator found is the other decimal separator:
// the likeliest cause of a misplaced one is a source that writes decimals with it.
func otherDecimalHint(r, dec rune) string {
	if (r == ',' || r == '.') && r != dec {
		return fmt.Sprintf(`: with decimal_separator %s; if the source writes decimals with %s, set amount.decimal_separator: %s in the mapping`, qr(dec), qr(r), qr(r))
	}
	return fmt.Sprintf(": with decimal_separator %s", qr(dec))
}

// sepList is the thousands separators for a message, each quoted (spaces are not visible).
func sepList(seps string) string {
	if seps == "" {
		return "(none)"
	}
	var q []string
	for _, r := range seps {
		q = append(q, qr(r))
	}
	return strings.Join(q, " ")
}

// qr quotes a character for a message as a Go string: invisible ones (no-break spaces) escaped.
func qr(r rune) string { return strconv.Quote(string(r)) }

// amount normalises an amount and checks it for the currency and asset type: zero, negative and
// over-precise amounts are refused, never rounded.
func (t *Transformer) amount(raw, currency, asset string) (string, *ledger.Error) {
	if strings.TrimSpace(raw) == "" {
		return "", reject(ledger.CodeInvalidAmount, FieldAmount, "amount is missing")
	}
	plain, _, problem := t.normalise(raw)
	if problem != "" {
		return "", reject(ledger.CodeInvalidAmount, FieldAmount, "amount %s %s", quote(raw), problem)
	}
	a, err := money.ParseAmount(plain)
	if err == nil {
		err = money.ValidatePosting(a, currency, money.AssetType(asset))
	}
	if err != nil {
		var me *money.Error
		if errors.As(err, &me) {
			field := map[string]string{money.FieldAmount: FieldAmount, money.FieldCurrency: FieldCurrencyCode, money.FieldAssetType: FieldAssetType}[me.Field]
			msg := me.Message
			if me.Field == money.FieldAmount && !strings.Contains(msg, quote(raw)) {
				msg = "amount " + quote(raw) + ": " + msg
			}
			return "", reject(me.Code, field, "%s", msg)
		}
		return "", reject(ledger.CodeInvalidAmount, FieldAmount, "amount %s: %v", quote(raw), err)
	}
	return a.String(), nil
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}

// timestamp reads RFC 3339 (any offset), then the mapping's layouts (in its time zone when the
// layout has none), and returns UTC.
func (t *Transformer) timestamp(s string) (time.Time, *ledger.Error) {
	layouts := append([]string{time.RFC3339Nano, pgTimestamptz, pgTimestamptzMinutes, isoLocal, isoLocalSpace, isoDate}, t.m.Timestamp.Layouts...)
	for _, l := range layouts {
		tm, err := time.ParseInLocation(l, s, t.loc)
		if err != nil {
			continue
		}
		// The ledger keeps microseconds (dl_parse_timestamp takes at most 6 fractional digits), so
		// a finer time would be cut; Go's parser itself silently drops digits after the 9th. A
		// finer fraction that is only zeros (.NET writes 7 digits) loses nothing and is kept.
		if n := excessFraction(s); n > 0 || tm.Nanosecond()%1000 != 0 {
			digits := ""
			if n > 0 {
				digits = fmt.Sprintf(" (%d)", n)
			}
			return time.Time{}, reject(ledger.CodeInvalidRequest, FieldTimestampUTC,
				"timestamp_utc %s has more than 6 fractional digits of a second%s: the ledger keeps microseconds and a time is not rounded",
				quote(s), digits)
		}
		// A zone abbreviation the location does not know ("PST" read in Europe/Berlin) is parsed
		// as a made-up zone at offset 0: the instant would be invented.
		if name, off := tm.Zone(); off == 0 && name != "" && name != "UTC" && name != "GMT" && name != "Z" && tm.Location() != t.loc && tm.Location() != time.UTC {
			return time.Time{}, reject(ledger.CodeInvalidRequest, FieldTimestampUTC,
				"timestamp_utc %s names the zone %q, which is not one of %s's: its offset is unknown; give the time with a numeric offset (-08:00) or set timestamp.timezone to the zone it is in", quote(s), name, t.loc)
		}
		if t.loc != time.UTC {
			if problem := localTimeProblem(l, s, t.loc); problem != "" {
				return time.Time{}, reject(ledger.CodeInvalidRequest, FieldTimestampUTC, "timestamp_utc %s %s", quote(s), problem)
			}
		}
		// The range is the posting function's, in UTC: "1900-01-01T00:30:00+01:00" is in 1899.
		u := tm.UTC()
		if u.Year() < 1900 || u.Year() > 9999 {
			return time.Time{}, reject(ledger.CodeInvalidRequest, FieldTimestampUTC,
				"timestamp_utc %s is %s in UTC, outside the years 1900 to 9999 the ledger stores", quote(s), u.Format(time.RFC3339Nano))
		}
		return u, nil
	}
	return time.Time{}, reject(ledger.CodeInvalidRequest, FieldTimestampUTC,
		"timestamp_utc %s is not an ISO 8601 / RFC 3339 date-time between 1900 and 9999 (such as \"2025-01-20T10:00:00Z\"; without an offset it is read in %s)%s",
		quote(s), t.loc, layoutHint(t.m.Timestamp.Layouts))
}

// localTimeProblem says why s, read by layout l without an offset in loc, names no single
// instant ("" when it names one, or when s carries its own offset): a wall-clock time skipped
// when the clocks go forward, or met twice when they go back. Go's parser picks an instant for
// either without a word; a ledger does not guess which.
func localTimeProblem(l, s string, loc *time.Location) string {
	wall, err := time.ParseInLocation(l, s, time.UTC)
	if err != nil {
		return ""
	}
	// With an offset of its own, s reads as the same instant in any location.
	if probe, err := time.ParseInLocation(l, s, time.FixedZone("probe", 7*3600+13*60)); err != nil || probe.Equal(wall) {
		return ""
	}
	var found []time.Time
	for _, at := range []time.Time{wall.Add(-26 * time.Hour), wall, wall.Add(26 * time.Hour)} {
		_, off := at.In(loc).Zone()
		u := wall.Add(-time.Duration(off) * time.Second)
		w := u.In(loc)
		if w.Year() != wall.Year() || w.YearDay() != wall.YearDay() || w.Hour() != wall.Hour() || w.Minute() != wall.Minute() || w.Second() != wall.Second() {
			continue
		}
		if !slices.ContainsFunc(found, u.Equal) {
			found = append(found, u)
		}
	}
	switch {
	case len(found) == 0:
		return fmt.Sprintf("does not exist in %s (the clocks skip it when they go forward): give the time with its offset", loc)
	case len(found) > 1:
		slices.SortFunc(found, time.Time.Compare)
		return fmt.Sprintf("happens twice in %s (the clocks go back over it): %s or %s; give the time with its offset",
			loc, found[0].In(loc).Format(time.RFC3339), found[1].In(loc).Format(time.RFC3339))
	}
	return ""
}

// fractionRun is a run of digits after a decimal point or comma that follows a digit: the
// fraction of a second in every layout that has one (Go reads either mark).
var fractionRun = regexp.MustCompile(`[0-9][.,]([0-9]{7,})`)

// excessFraction is the number of fractional digits of s when a digit after the 6th is not 0
// (0: none such).
func excessFraction(s string) int {
	for _, m := range fractionRun.FindAllStringSubmatch(s, -1) {
		if strings.TrimRight(m[1][6:], "0") != "" {
			return len(m[1])
		}
	}
	return 0
}

// PostgreSQL's ISO output of timestamptz ("2024-01-01 10:00:00+00", "...:00+05:30"), as the
// database source reads it.
const (
	pgTimestamptz        = "2006-01-02 15:04:05.999999999Z07"
	pgTimestamptzMinutes = "2006-01-02 15:04:05.999999999Z07:00"
)

// ISO 8601 without an offset (read in the mapping's time zone, UTC by default: the seed's column
// is timestampUtc), with a T or a space, and a date alone (midnight).
const (
	isoLocal      = "2006-01-02T15:04:05.999999999"
	isoLocalSpace = "2006-01-02 15:04:05.999999999"
	isoDate       = "2006-01-02"
)

func layoutHint(l []string) string {
	if len(l) == 0 {
		return "; other formats need timestamp.layouts in the mapping"
	}
	return " nor in one of the mapping's layouts " + strings.Join(l, ", ")
}

// metadata is the row's metadata object, with the other columns under "source_columns"; nil
// when there is neither (most rows: no map is made for them).
func (t *Transformer) metadata(rec source.Record) (map[string]any, *ledger.Error) {
	var meta map[string]any
	if raw := strings.TrimSpace(t.get(rec, FieldMetadata)); raw != "" {
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&meta); err != nil && !errors.As(err, new(*json.UnmarshalTypeError)) {
			return nil, reject(ledger.CodeInvalidRequest, FieldMetadata, "metadata %s is not valid JSON: %v", quote(raw), err)
		} else if err != nil || dec.More() || meta == nil {
			return nil, reject(ledger.CodeInvalidRequest, FieldMetadata, "metadata %s is not a JSON object", quote(raw))
		}
		if err := checkJSON([]byte(raw), meta); err != nil {
			return nil, reject(ledger.CodeInvalidRequest, FieldMetadata, "metadata %s: %v", quote(raw), err)
		}
	}
	if t.m.Unmapped != "ignore" {
		// Allocated only when a row has such a column; encoding/json writes the keys sorted.
		var other map[string]string
		for k, v := range rec.Fields {
			if v != "" && !t.mapped[k] {
				if other == nil {
					other = map[string]string{}
				}
				other[k] = v
			}
		}
		if other != nil {
			if meta == nil {
				meta = map[string]any{}
			}
			if _, taken := meta["source_columns"]; taken {
				return nil, reject(ledger.CodeInvalidRequest, FieldMetadata,
					"the metadata already has source_columns, where the import keeps the row's other columns: one of the two would be lost (set unmapped: ignore, or map the columns)")
			}
			meta["source_columns"] = other
		}
	}
	return meta, nil
}

// checkJSON applies the rules of jsonlimit to a metadata cell (raw) and its decoded object:
// what jsonb refuses, or what would come back changed (a lone surrogate read as U+FFFD), fails
// the row alone, as the API refuses it per request.
func checkJSON(raw []byte, v any) error {
	if err := jsonlimit.CheckEscapes(raw); err != nil {
		return err
	}
	if d := jsonlimit.Depth(raw); d > jsonlimit.MaxDepth {
		return fmt.Errorf("nested %d levels deep: at most %d are allowed", d, jsonlimit.MaxDepth)
	}
	if k, dup := jsonlimit.DuplicateKey(raw); dup {
		return fmt.Errorf("duplicate key %q: each key may appear once", k)
	}
	var walk func(v any) error
	walk = func(v any) error {
		switch x := v.(type) {
		case json.Number:
			return jsonlimit.CheckNumber(string(x))
		case map[string]any:
			for _, e := range x {
				if err := walk(e); err != nil {
					return err
				}
			}
		case []any:
			for _, e := range x {
				if err := walk(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(v)
}

// generatedReference is "BACKFILL-" and 32 hex digits of a SHA-256 over the source, the row's
// position and its content: the same row of the same source always gets the same id, and two
// rows never share one (their positions differ).
func (t *Transformer) generatedReference(rec source.Record) string {
	h := sha256.New()
	h.Write([]byte(t.sourceKey))
	h.Write([]byte{0})
	h.Write([]byte(rec.Pos))
	h.Write([]byte{0})
	h.Write(rec.Raw)
	return "BACKFILL-" + hex.EncodeToString(h.Sum(nil)[:16])
}
