// Package scb is the client of a member bank's own ledger API (an SCB, docs/design.md §5): the outbox
// worker posts each committed entry with POST /v1/entries under the Idempotency-Key
// "<ledger_id>:<reference_id>", polls GET /v1/entries/{reference_id} until the SCB reports FINAL,
// and reconciliation pages through GET /v1/entries?since=&limit=.
//
// Every failure is a *DeliveryError that says whether a retry can help (Retryable) and how long
// the SCB asked us to wait (RetryAfter). Because the SCB deduplicates by the idempotency key, a
// retry of a request whose answer was lost (timeout, connection dropped after the SCB committed)
// is always safe: it is answered with the stored result and posts nothing twice.
//
// API keys never appear in errors, in String/GoString/LogValue/JSON output of a Config, or in
// logs: they travel only in the Authorization header, and text an SCB sends back is never kept
// verbatim. An error keeps the HTTP status, our own classification (DeliveryError.Class) and an
// Excerpt of the SCB's message: one short printable line from which every form of the key
// (plain, URL-, HTML-, JSON-escaped, hex, base64 at any alignment, any letter case) is removed.
// The outbox stores DeliveryError.Reason (scb.Reason) as last_error.
//
// An SCB's API URL must be https://, except to a loopback host (127.0.0.0/8, ::1, localhost),
// and a config or key file must be owned by the user the process runs as and writable by no
// one else (see LoadConfigFile); both are refused at load with the fix in the message.
//
// The simulator that serves this API for tests and the demo is the sub-package sim.
package scb
