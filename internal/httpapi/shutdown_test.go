package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// On shutdown the server stops accepting, lets an in-flight posting finish and commit, stops
// its background tasks, and Serve returns nil.
func TestGracefulShutdown(t *testing.T) {
	d := pgtest.NewWithConfig(t, appRole)
	// A long group-commit delay keeps the posting in flight while shutdown starts.
	srv, err := New(d.Pool, Config{GroupCommitDelay: 400 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	taskStopped := make(chan struct{})
	srv.Go("probe", func(ctx context.Context) error {
		<-ctx.Done()
		close(taskStopped)
		return ctx.Err()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	base := "http://" + ln.Addr().String()
	client := keyedClient(t, d, 10*time.Second)
	for _, step := range []struct {
		path string
		body any
	}{
		{"/v1/ledgers", map[string]any{"id": "L"}},
		{"/v1/ledgers/L/accounts", map[string]any{"id": "issuance", "currency_code": "USD", "asset_type": "fiat", "overdraft_limit": "unlimited"}},
		{"/v1/ledgers/L/accounts", map[string]any{"id": "alice", "currency_code": "USD", "asset_type": "fiat"}},
	} {
		if st, body, err := postJSON(client, base+step.path, step.body); err != nil || st != 201 {
			t.Fatalf("%s: %d %v %v", step.path, st, body, err)
		}
	}

	type answer struct {
		status int
		body   map[string]any
		err    error
	}
	inflight := make(chan answer, 1)
	start := time.Now()
	go func() {
		st, body, err := postJSON(client, base+"/v1/ledgers/L/entries", entry("during-shutdown", "issuance", "alice", "7"))
		inflight <- answer{st, body, err}
	}()
	time.Sleep(100 * time.Millisecond) // the posting waits in the group-commit queue
	cancel()

	a := <-inflight
	if a.err != nil || a.status != 201 {
		t.Fatalf("in-flight posting: %d %v %v", a.status, a.body, a.err)
	}
	if took := time.Since(start); took < 350*time.Millisecond {
		t.Errorf("posting answered after %v: it did not wait for the group commit", took)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return")
	}
	select {
	case <-taskStopped:
	default:
		t.Error("Serve returned before its background task stopped")
	}
	if _, err := client.Get(base + "/healthz"); err == nil {
		t.Error("the server still accepts connections")
	}
	var n int
	if err := d.Pool.QueryRow(t.Context(), "SELECT count(*) FROM ledger_entries WHERE reference_id = 'during-shutdown'").Scan(&n); err != nil || n != 1 {
		t.Errorf("the in-flight posting was not committed: %d %v", n, err)
	}
	// The Poster is closed: a late posting is refused as unavailable, not hung or panicking.
	_, err = srv.poster.Post(context.Background(), "L", ledger.EntryInput{})
	if !errors.Is(err, ledger.ErrPosterClosed) || ledger.CodeOf(clientError(err)) != ledger.CodeUnavailable {
		t.Errorf("posting after shutdown: %v", err)
	}
}

func TestServeStopsWhenATaskFails(t *testing.T) {
	d := pgtest.NewWithConfig(t, appRole)
	srv, err := New(d.Pool, Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Go("worker", func(ctx context.Context) error { return errors.New("lost the outbox") })
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background(), "127.0.0.1:0") }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "worker: lost the outbox") {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its task failed")
	}
}
