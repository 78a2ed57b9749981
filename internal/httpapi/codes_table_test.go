package httpapi

import (
	"testing"

	"dualledger/internal/ledger"
	"dualledger/internal/settlement"
)

// TestStatusesFromCodeTable: the API answers each code with its row's status in ledger.Codes (the
// one table docs/error-codes.md is generated from), and the codes this package and the
// settlement service declare are rows of it.
func TestStatusesFromCodeTable(t *testing.T) {
	for _, c := range ledger.Codes() {
		if got := statusOf(c.Code); got != c.HTTPStatus {
			t.Errorf("statusOf(%s) = %d, ledger.Codes says %d", c.Code, got, c.HTTPStatus)
		}
	}
	for _, code := range []string{
		CodeMethodNotAllowed, CodeUnsupportedMediaType, CodeBodyTooLarge, CodeBatchRejected,
		CodeUnauthenticated, CodeForbidden, CodeRateLimited, CodeOverloaded,
		settlement.CodeUnknownBank, settlement.CodeSettlementAccountNotFound, settlement.CodeAmbiguousSettlementAccount,
	} {
		if _, ok := ledger.CodeByName(code); !ok {
			t.Errorf("code %s has no row in ledger.Codes (internal/ledger/codes.go)", code)
		}
	}
	for _, code := range resultCodes {
		if c, ok := ledger.CodeByName(code); !ok || !c.Result {
			t.Errorf("OpenAPI result code %s is not a posting result of ledger.Codes", code)
		}
	}
}
