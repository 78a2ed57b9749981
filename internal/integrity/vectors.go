package integrity

import (
	"time"

	"dualledger/internal/ledger"
)

// HashVector is one test vector of the canonical entry encoding (docs/hash-chain.md). The same
// table is checked against the Go encoding (internal/ledger/hash_test.go) and against the SQL
// reference ledger_entry_canonical (this package's tests), so the two cannot drift apart.
type HashVector struct {
	Name string
	// Fields are the entry as the chain sees it: the text PostgreSQL prints for each column.
	Fields ledger.CanonicalFields
	// The same values as a client writes them; PostgreSQL normalises them to Fields (amounts to
	// 18 decimals, metadata to jsonb's rendering, the timestamp to UTC).
	AmountInput    string
	FxRateInput    string // "" for none
	MetadataInput  string
	TimestampInput string
	// PreviousHash, Canonical and BlockHash are lower-case hex.
	PreviousHash string
	Canonical    string
	BlockHash    string
}

const zeroHashHex = "0000000000000000000000000000000000000000000000000000000000000000"

// HashVectors returns the specification's test vectors, in chain order: vectors 1-3 are seq 1-3
// of ledger MASTER (each one's PreviousHash is the BlockHash of the one before), vector 4 is seq 1
// of ledger SOVEREIGN. A function rather than a package variable so that no caller can change
// the specification for the others.
func HashVectors() []HashVector {
	return []HashVector{
		{
			Name: "1 MASTER seq 1: plain funding, no fx_rate, empty metadata",
			Fields: ledger.CanonicalFields{
				ID: 1, LedgerID: "MASTER", Seq: 1,
				DebitAccountID: "issuance", CreditAccountID: "SCB-1-settlement",
				Amount: "1000.000000000000000000", CurrencyCode: "USD", AssetType: "fiat",
				TransactionType: "funding", ReferenceID: "fund-1",
				FxRate: "", Metadata: `{}`,
				TimestampUTC: time.Date(2025, 1, 20, 10, 0, 0, 0, time.UTC),
			},
			AmountInput:    "1000.00",
			MetadataInput:  `{}`,
			TimestampInput: "2025-01-20T10:00:00Z",
			PreviousHash:   zeroHashHex,
			Canonical: "444c45311f311f4d41535445521f311f69737375616e63651f5343422d312d736574746c656d656e741f" +
				"313030302e3030303030303030303030303030303030301f5553441f666961741f66756e64696e671f" +
				"66756e642d311f1f7b7d1f323032352d30312d32305431303a30303a30302e3030303030305a1f",
			BlockHash: "5b2d1a1ca06c3eee5d79aaec39fd2a9aabecb05042564bea5ca3f73b9854fe90",
		},
		{
			Name: "2 MASTER seq 2: fx_rate, non-ASCII metadata in another key order, timestamp with offset and microseconds",
			Fields: ledger.CanonicalFields{
				ID: 2, LedgerID: "MASTER", Seq: 2,
				DebitAccountID: "SCB-1-settlement", CreditAccountID: "SCB-2-settlement",
				Amount: "250.500000000000000000", CurrencyCode: "USD", AssetType: "fiat",
				TransactionType: "transfer", ReferenceID: "tx-2025-0001",
				FxRate:       "0.921500000000000000",
				Metadata:     `{"n": 1, "memo": "Zahlung für Müller – 東京", "purpose": "trade"}`,
				TimestampUTC: time.Date(2025, 1, 20, 10, 30, 45, 123456000, time.UTC),
			},
			AmountInput:    "250.50",
			FxRateInput:    "0.9215",
			MetadataInput:  `{"purpose": "trade", "memo": "Zahlung für Müller – 東京", "n": 1}`,
			TimestampInput: "2025-01-20T12:30:45.123456+02:00",
			PreviousHash:   "5b2d1a1ca06c3eee5d79aaec39fd2a9aabecb05042564bea5ca3f73b9854fe90",
			Canonical: "444c45311f321f4d41535445521f321f5343422d312d736574746c656d656e741f5343422d322d73657474" +
				"6c656d656e741f3235302e3530303030303030303030303030303030301f5553441f666961741f7472616e" +
				"736665721f74782d323032352d303030311f302e3932313530303030303030303030303030301f7b226e22" +
				"3a20312c20226d656d6f223a20225a61686c756e672066c3bc72204dc3bc6c6c657220e2809320e69db1e4" +
				"baac222c2022707572706f7365223a20227472616465227d1f323032352d30312d32305431303a33303a34" +
				"352e3132333435365a1f",
			BlockHash: "99f6fb356aaa3cacf1660b00293d774c3e04c1417ef36e739d80322400c1c264",
		},
		{
			Name: "3 MASTER seq 3: reversal of entry 2 (reverses_entry_id), escapes in metadata",
			Fields: ledger.CanonicalFields{
				ID: 3, LedgerID: "MASTER", Seq: 3,
				DebitAccountID: "SCB-2-settlement", CreditAccountID: "SCB-1-settlement",
				Amount: "250.500000000000000000", CurrencyCode: "USD", AssetType: "fiat",
				TransactionType: "reversal", ReferenceID: "tx-2025-0001-rev",
				FxRate:          "",
				Metadata:        `{"reason": "duplicate \"payment\"\nline 2\ttab"}`,
				TimestampUTC:    time.Date(2025, 1, 21, 0, 0, 0, 1000, time.UTC),
				ReversesEntryID: 2,
			},
			AmountInput:    "250.50",
			MetadataInput:  `{"reason": "duplicate \"payment\"\nline 2\ttab"}`,
			TimestampInput: "2025-01-21T00:00:00.000001Z",
			PreviousHash:   "99f6fb356aaa3cacf1660b00293d774c3e04c1417ef36e739d80322400c1c264",
			Canonical: "444c45311f331f4d41535445521f331f5343422d322d736574746c656d656e741f5343422d312d73657474" +
				"6c656d656e741f3235302e3530303030303030303030303030303030301f5553441f666961741f72657665" +
				"7273616c1f74782d323032352d303030312d7265761f1f7b22726561736f6e223a20226475706c69636174" +
				"65205c227061796d656e745c225c6e6c696e6520325c74746162227d1f323032352d30312d32315430303a" +
				"30303a30302e3030303030315a1f32",
			BlockHash: "e57edd907bbc47861170bfdabd4b176e8bc18ea0ad3826cecd1a0e24bfa227d5",
		},
		{
			Name: "4 SOVEREIGN seq 1: commodity with 18 decimals, 38-digit fx_rate, nested metadata, control character",
			Fields: ledger.CanonicalFields{
				ID: 1000000000042, LedgerID: "SOVEREIGN", Seq: 1,
				DebitAccountID: "vault:gold", CreditAccountID: "SCB-2/gold@reserve",
				Amount: "0.000000000000000001", CurrencyCode: "XAU", AssetType: "commodity",
				TransactionType: "allocation", ReferenceID: "ref with spaces & ünïcode ✓",
				FxRate:       "12345678901234567890.123456789012345678",
				Metadata:     `{"a": "\u0001", "b": [1, 2.50, {"a": true, "z": null}]}`,
				TimestampUTC: time.Date(2000, 1, 1, 4, 59, 59, 999999000, time.UTC),
			},
			AmountInput:    "0.000000000000000001",
			FxRateInput:    "12345678901234567890.123456789012345678",
			MetadataInput:  `{"b": [1, 2.50, {"z": null, "a": true}], "a": "\u0001"}`,
			TimestampInput: "1999-12-31T23:59:59.999999-05:00",
			PreviousHash:   zeroHashHex,
			Canonical: "444c45311f313030303030303030303034321f534f5645524549474e1f311f7661756c743a676f6c641f53" +
				"43422d322f676f6c6440726573657276651f302e3030303030303030303030303030303030311f5841551f" +
				"636f6d6d6f646974791f616c6c6f636174696f6e1f726566207769746820737061636573202620c3bc6ec3" +
				"af636f646520e29c931f31323334353637383930313233343536373839302e313233343536373839303132" +
				"3334353637381f7b2261223a20225c7530303031222c202262223a205b312c20322e35302c207b2261223a" +
				"20747275652c20227a223a206e756c6c7d5d7d1f323030302d30312d30315430343a35393a35392e393939" +
				"3939395a1f",
			BlockHash: "651ea8a6431d5ca6fbaf786163789ecfcb97ff446ade3371abf57a191dbdc5f6",
		},
	}
}

// HoldEventVector is one test vector of the hold-event encoding (docs/hash-chain.md, "Hold
// events"), checked against the Go encoding (ledger.HoldEventCanonical) and the SQL reference
// (ledger_hold_event_canonical).
type HoldEventVector struct {
	Name         string
	Fields       ledger.HoldEventFields
	PreviousHash string // hex
	Canonical    string // hex
	Hash         string // hex
}

// HoldEventVectors returns the hold-event vectors in chain order: a hold's created event (seq 1)
// and its partial capture (seq 2, entry 4).
func HoldEventVectors() []HoldEventVector {
	expires := time.Date(2025, 1, 20, 18, 0, 0, 0, time.UTC)
	created := ledger.HoldEventFields{
		LedgerID: "MASTER", Seq: 1, HoldID: 7, ReferenceID: "fx-usd-leg", Event: "created",
		DebitAccountID: "SCB-1-settlement", CreditAccountID: "fx-liquidity-usd", HoldAmount: "1000.000000000000000000",
		CurrencyCode: "USD", AssetType: "fiat", TransactionType: "fx_transfer", FxRate: "0.921500000000000000",
		Metadata: `{"memo": "FX to SCB-2"}`, TimestampUTC: time.Date(2025, 1, 20, 10, 0, 0, 0, time.UTC),
		ExpiresAt: &expires, Amount: "1000.000000000000000000", EntrySeq: 3,
	}
	captured := created
	captured.Seq, captured.Event, captured.Amount, captured.EntryID, captured.EntrySeq = 2, "captured", "999.990000000000000000", 4, 4
	return []HoldEventVector{
		{
			Name: "hold event 1: created, with fx_rate and expires_at", Fields: created, PreviousHash: zeroHashHex,
			Canonical: "444c48311f4d41535445521f311f371f66782d7573642d6c65671f637265617465641f5343422d312d7365" +
				"74746c656d656e741f66782d6c69717569646974792d7573641f313030302e303030303030303030303030" +
				"3030303030301f5553441f666961741f66785f7472616e736665721f302e39323135303030303030303030" +
				"30303030301f7b226d656d6f223a2022465820746f205343422d32227d1f323032352d30312d3230543130" +
				"3a30303a30302e3030303030305a1f323032352d30312d32305431383a30303a30302e3030303030305a1f" +
				"313030302e3030303030303030303030303030303030301f1f33",
			Hash: "1216e47fadfe83840725c1e30b3dc0fd135737568ed2302378773e0e87ece5d9",
		},
		{
			Name: "hold event 2: captured 999.99 as entry 4", Fields: captured,
			PreviousHash: "1216e47fadfe83840725c1e30b3dc0fd135737568ed2302378773e0e87ece5d9",
			Canonical: "444c48311f4d41535445521f321f371f66782d7573642d6c65671f63617074757265641f5343422d312d73" +
				"6574746c656d656e741f66782d6c69717569646974792d7573641f313030302e3030303030303030303030" +
				"303030303030301f5553441f666961741f66785f7472616e736665721f302e393231353030303030303030" +
				"3030303030301f7b226d656d6f223a2022465820746f205343422d32227d1f323032352d30312d32305431" +
				"303a30303a30302e3030303030305a1f323032352d30312d32305431383a30303a30302e3030303030305a" +
				"1f3939392e3939303030303030303030303030303030301f341f34",
			Hash: "da9e0ca099d317068e4aa81972763ec91e5520d4a7319322dcf87cf476586f4e",
		},
	}
}
