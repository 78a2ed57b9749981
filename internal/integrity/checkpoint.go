package integrity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
)

// Signed checkpoints: a ledger's head (seq, head hash, time) signed with an Ed25519 key that is
// kept outside the database, written to a directory where files are only ever added. Whoever
// rewrites the chain whole in the database cannot rewrite what was signed before, so
// VerifyCheckpoints finds the rewrite (docs/hash-chain.md, "Witnesses").

// CheckpointVersion tags the signed encoding.
const CheckpointVersion = "DLC1"

// Checkpoint is one signed head, as stored (JSON, one file each).
type Checkpoint struct {
	Version   string    `json:"version"`
	LedgerID  string    `json:"ledger_id"`
	Seq       int64     `json:"seq"`
	HeadHash  string    `json:"head_hash"` // hex
	At        time.Time `json:"at"`
	PublicKey string    `json:"public_key"` // base64 of the Ed25519 public key that signed it
	Signature string    `json:"signature"`  // base64 of the Ed25519 signature of SignedBytes
}

// SignedBytes is what is signed: the fields joined by 0x1F, the time in UTC with nanoseconds.
func (c Checkpoint) SignedBytes() []byte {
	return []byte(strings.Join([]string{c.Version, c.LedgerID, strconv.FormatInt(c.Seq, 10), c.HeadHash,
		c.At.UTC().Format(time.RFC3339Nano)}, "\x1f"))
}

// GenerateKey writes a new Ed25519 key: the private key to path (PKCS #8 PEM, mode 0600, never
// overwritten) and its public key to path + ".pub" (PKIX PEM).
func GenerateKey(path string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeNew(path+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

// LoadPrivateKey reads a PKCS #8 PEM Ed25519 private key.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := pemBlock(path)
	if err != nil {
		return nil, err
	}
	if b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: a PRIVATE KEY PEM block expected, found %s", path, b.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return priv, nil
}

// LoadPublicKey reads an Ed25519 public key: a PUBLIC KEY PEM, or the public half of a PRIVATE KEY PEM.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := pemBlock(path)
	if err != nil {
		return nil, err
	}
	if b.Type == "PRIVATE KEY" {
		priv, err := LoadPrivateKey(path)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	if b.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: a PUBLIC KEY PEM block expected, found %s", path, b.Type)
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return pub, nil
}

func pemBlock(path string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	return b, nil
}

// WriteCheckpoints signs the head of each ledger (all when ledgerIDs is empty) and writes each
// to dir/<ledger>/<seq>-<time>.json, a new file that is never overwritten (mode 0444, fsynced
// with its directory). Returns what was written.
func WriteCheckpoints(ctx context.Context, db DB, dir string, key ed25519.PrivateKey, ledgerIDs []string) ([]Checkpoint, error) {
	if len(ledgerIDs) == 0 {
		ids, err := listLedgers(ctx, db)
		if err != nil {
			return nil, err
		}
		ledgerIDs = ids
	}
	var out []Checkpoint
	for _, id := range ledgerIDs {
		l, err := readHead(ctx, db, id)
		if err != nil {
			return out, err
		}
		c := Checkpoint{Version: CheckpointVersion, LedgerID: id, Seq: l.HeadSeq, HeadHash: l.HeadHash, At: time.Now().UTC(),
			PublicKey: base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))}
		c.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SignedBytes()))
		body, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return out, err
		}
		sub := filepath.Join(dir, url.PathEscape(id))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return out, err
		}
		name := filepath.Join(sub, fmt.Sprintf("%020d-%s.json", c.Seq, c.At.Format("20060102T150405.000000000Z")))
		if err := writeNew(name, append(body, '\n'), 0o444); err != nil {
			return out, err
		}
		out = append(out, c)
	}
	return out, nil
}

func readHead(ctx context.Context, db DB, id string) (ledger.Ledger, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return ledger.Ledger{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	return ledger.GetLedger(ctx, tx, id)
}

// writeNew creates path (failing if it exists), writes data, and fsyncs the file and its directory.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// CheckpointProblem is a checkpoint the chain no longer holds, or one that is not what it claims.
type CheckpointProblem struct {
	File     string `json:"file"`
	LedgerID string `json:"ledger_id,omitempty"`
	Seq      int64  `json:"seq,omitempty"`
	Kind     string `json:"kind"` // unreadable, bad_signature, other_key, missing_entry, hash_mismatch
	Signed   string `json:"signed,omitempty"`
	Chain    string `json:"chain,omitempty"`
	Message  string `json:"message"`
}

// CheckpointReport is what VerifyCheckpoints found.
type CheckpointReport struct {
	Checked int `json:"checked"`
	// Holds is, per ledger, the highest signed seq the chain still holds.
	Holds    map[string]int64    `json:"holds"`
	Problems []CheckpointProblem `json:"problems"`
	// First is, per ledger, the lowest signed seq the chain contradicts.
	First map[string]CheckpointProblem `json:"first"`
}

// VerifyCheckpoints reads every *.json under dir, checks its signature against pub (a checkpoint
// signed by another key is a problem), and checks that the chain still holds the signed hash at
// the signed seq.
func VerifyCheckpoints(ctx context.Context, db Querier, dir string, pub ed25519.PublicKey) (CheckpointReport, error) {
	rep := CheckpointReport{Holds: map[string]int64{}, First: map[string]CheckpointProblem{}}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".json") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	for _, f := range files {
		c, prob := readCheckpoint(f, pub)
		if prob != nil {
			rep.Problems = append(rep.Problems, *prob)
			continue
		}
		rep.Checked++
		var hash string
		rows, err := db.Query(ctx, `SELECT encode(block_hash, 'hex') FROM ledger_entries WHERE ledger_id = $1 AND seq = $2`, c.LedgerID, c.Seq)
		if err != nil {
			return rep, ledger.FromDB(err)
		}
		found := rows.Next()
		if found {
			err = rows.Scan(&hash)
		}
		rows.Close()
		if err != nil {
			return rep, ledger.FromDB(err)
		}
		p := CheckpointProblem{File: f, LedgerID: c.LedgerID, Seq: c.Seq, Signed: c.HeadHash, Chain: hash}
		switch {
		case c.Seq == 0:
			continue // an empty ledger's head: nothing to hold
		case !found:
			p.Kind, p.Message = "missing_entry", fmt.Sprintf("seq %d: the chain no longer has the entry signed at %s", c.Seq, c.At.Format(time.RFC3339))
		case hash != c.HeadHash:
			p.Kind, p.Message = "hash_mismatch", fmt.Sprintf("seq %d: the chain holds another block_hash than the one signed at %s", c.Seq, c.At.Format(time.RFC3339))
		default:
			rep.Holds[c.LedgerID] = max(rep.Holds[c.LedgerID], c.Seq)
			continue
		}
		rep.Problems = append(rep.Problems, p)
		if first, ok := rep.First[c.LedgerID]; !ok || c.Seq < first.Seq {
			rep.First[c.LedgerID] = p
		}
	}
	return rep, nil
}

func readCheckpoint(path string, pub ed25519.PublicKey) (Checkpoint, *CheckpointProblem) {
	var c Checkpoint
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, &c)
	}
	if err == nil && (c.Version != CheckpointVersion || c.LedgerID == "" || c.Seq < 0) {
		err = errors.New("not a " + CheckpointVersion + " checkpoint")
	}
	if err == nil {
		if _, herr := hex.DecodeString(c.HeadHash); herr != nil || len(c.HeadHash) != 64 {
			err = errors.New("head_hash is not 64 hex digits")
		}
	}
	if err != nil {
		return c, &CheckpointProblem{File: path, Kind: "unreadable", Message: err.Error()}
	}
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || !ed25519.Verify(pub, c.SignedBytes(), sig) {
		kind, msg := "bad_signature", "the signature does not verify with the given public key"
		if k, kerr := base64.StdEncoding.DecodeString(c.PublicKey); kerr == nil && !ed25519.PublicKey(k).Equal(pub) {
			kind, msg = "other_key", "signed by another key than the given public key"
		}
		return c, &CheckpointProblem{File: path, LedgerID: c.LedgerID, Seq: c.Seq, Kind: kind, Message: msg}
	}
	return c, nil
}
