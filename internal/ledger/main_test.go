package ledger_test

import (
	"testing"

	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
