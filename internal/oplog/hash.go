package oplog

import (
	"crypto/sha256"
	"strconv"
	"strings"
	"time"
)

// Canonical is the encoding that an operator log row's hash covers (docs/hash-chain.md,
// "Operator log"), the Go twin of the SQL function operator_action_canonical: "DLO1", seq, at
// (UTC, microseconds), actor, db_login, db_role, action, target, before, after, reason, joined
// by the ASCII unit separator 0x1F, NULL as "". before and after are PostgreSQL's text rendering
// of the jsonb values (what List returns), not a re-encoding.
func Canonical(a Action) []byte {
	reason := ""
	if a.Reason != nil {
		reason = *a.Reason
	}
	fields := []string{"DLO1", strconv.FormatInt(a.Seq, 10), a.At.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z"),
		a.Actor, a.DBLogin, a.DBRole, a.Action, a.Target, jsonText(a.Before), jsonText(a.After), reason}
	return []byte(strings.Join(fields, "\x1f"))
}

func jsonText(b []byte) string {
	if string(b) == "null" {
		return ""
	}
	return string(b)
}

// Hash is sha256(previous || Canonical(a)).
func Hash(previous []byte, a Action) []byte {
	h := sha256.New()
	h.Write(previous)
	h.Write(Canonical(a))
	return h.Sum(nil)
}
