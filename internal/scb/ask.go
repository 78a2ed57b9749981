package scb

import (
	"context"
	"errors"
	"time"
)

// Questions to an SCB that fail retryably (429, 5xx, a timeout, a dropped connection, an answer
// that could not be read: IsRetryable) are asked again, up to AskTries times in all, after the
// SCB's Retry-After (at most maxAskWait) or a backoff that doubles from firstAskWait. A reader
// that asks a thousand questions one by one (reconciliation, verify-chain --against-scbs) must
// not fail whole on one busy moment of the SCB (the reviews of 2026-12-02: at a 2 % rate of
// 429s, five reconciliation runs in a row failed; one 503 left an SCB unread by verify-chain).
// The caller gives a budget (AskBudget is the usual one) of time it may spend on failed questions
// and the waits after them: an SCB that stays unwell fails the reader in minutes, not hours.
const (
	AskTries     = 4
	AskBudget    = 2 * time.Minute
	firstAskWait = 500 * time.Millisecond
	maxAskWait   = 30 * time.Second
)

// Ask asks the SCB with ask, again after a retryable failure as above; budget is what is left of
// the caller's time for retries, and each failed question and the wait after it are taken from it.
func Ask[T any](ctx context.Context, budget *time.Duration, ask func() (T, error)) (T, error) {
	wait := firstAskWait
	for try := 1; ; try++ {
		start := time.Now()
		v, err := ask()
		if err == nil || try == AskTries || !IsRetryable(err) {
			return v, err
		}
		d := wait
		var de *DeliveryError
		if errors.As(err, &de) && de.RetryAfter > 0 {
			d = min(de.RetryAfter, maxAskWait)
		}
		// The failed question's own time counts too (a timeout takes the SCB's whole timeout).
		spent := time.Since(start) + d
		if spent > *budget {
			return v, err
		}
		*budget -= spent
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		wait *= 2
	}
}
