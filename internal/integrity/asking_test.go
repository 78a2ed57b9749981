package integrity_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"dualledger/internal/integrity"
	"dualledger/internal/scb"
)

// flaky fails its first calls with err, then answers an empty last page.
type flaky struct {
	fails int
	err   error
	calls int
}

func (f *flaky) List(context.Context, string, int) (scb.Page, error) {
	f.calls++
	if f.calls <= f.fails {
		return scb.Page{}, f.err
	}
	return scb.Page{}, nil
}

// TestAskingAgain: a busy SCB (a 503, Retry-After) is asked again and read; a refusal that a
// retry cannot change (401) is returned at once.
func TestAskingAgain(t *testing.T) {
	busy := &flaky{fails: 2, err: &scb.DeliveryError{SCB: "SCB-1", Op: "LIST", Retryable: true, StatusCode: 503, RetryAfter: time.Millisecond}}
	if _, err := integrity.AskingAgain(busy).List(context.Background(), "", 10); err != nil || busy.calls != 3 {
		t.Errorf("a busy SCB: %v after %d calls, want read on the third", err, busy.calls)
	}
	refused := &flaky{fails: 5, err: &scb.DeliveryError{SCB: "SCB-1", Op: "LIST", StatusCode: 401}}
	var de *scb.DeliveryError
	if _, err := integrity.AskingAgain(refused).List(context.Background(), "", 10); !errors.As(err, &de) || refused.calls != 1 {
		t.Errorf("a refusal: %v after %d calls, want it at once", err, refused.calls)
	}
}
