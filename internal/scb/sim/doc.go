// Package sim is a simulated SCB (a member bank's ledger API, docs/design.md §5): a real HTTP server
// with durable, idempotent storage and fault injection, run by `dualledger scb-sim` for the demo
// and by tests as a separate process or in-process with httptest.
//
// # API
//
//	POST /v1/entries                  Authorization: Bearer <api key>, Idempotency-Key: <ledger_id>:<reference_id>,
//	                                  body: scb.Entry. 201 {"scb_entry_id","status"} when posted; a replay of the same
//	                                  key and body answers 201 with the same body (current status) and the header
//	                                  Idempotent-Replayed: true; the same key with another body answers 409.
//	                                  401 bad or missing key, 400 no Idempotency-Key or malformed JSON, 415 not JSON,
//	                                  413 body over 1 MiB, 422 invalid entry or a key that is not ledger_id:reference_id.
//	GET  /v1/entries/{reference_id}   [?ledger_id=L] the SCB's view (scb.EntryView); 404 unknown; 409 if the reference
//	                                  exists in several ledgers and ledger_id was not given.
//	GET  /v1/entries?since=&limit=    scb.Page in post order; since is the opaque cursor from next_since ("" = start),
//	                                  limit 1..1000 (default 100).
//	GET  /v1/admin/stats[?per_key=1]  Stats; per_key_posts only when asked.
//	GET  /v1/admin/faults             the fault settings in force.
//	POST /v1/admin/faults             change them (FaultsUpdate: only the fields present change; "reset": true first
//	                                  clears all). Admin calls need the admin key (Config.AdminKey, or the API key).
//	POST /v1/admin/tamper             make the SCB's ledger wrong after the fact (Tamper): {"action": "lose" | "alter" |
//	                                  "invent" | "hold", "ledger_id", "reference_id", ...}; lose forgets an entry (GET 404,
//	                                  the list skips it, a new POST posts it again), alter changes the SCB's copy (amount,
//	                                  block_hash ("" = another hash), accounts, transaction_type), invent adds an entry
//	                                  we never sent ("entry"), hold keeps an entry at "status" ACCEPTED or POSTED (never
//	                                  FINAL). Durable (a line of the log each). 404 unknown entry, 422 invalid.
//	GET  /healthz                     no auth, never faulted: for readiness checks.
//
// Errors are {"error": {"code", "message", "details"}}.
//
// # Storage
//
// Every posted entry is one JSON line in <data dir>/entries.log, written and fsynced before the
// answer (concurrent posts share one fsync: group commit). At start the log is read back, so a
// restarted simulator remembers every entry and answers replays as before; a torn last line (a
// crash mid-write, never acknowledged) is cut off. posts and per_key_posts are counted from the
// log, so they survive restarts: a key with more than one line would be a double post and shows
// in duplicate_posts. The other counters (requests, replays, conflicts, faults) are since start.
// <data dir>/scb.json records which SCB id owns the directory, and a lock file keeps a second
// simulator off it.
//
// # Status progression
//
// An entry starts in Config.InitialStatus, is POSTED from FinalAfter/2 after it was posted and
// FINAL from FinalAfter (by the time since posting, persisted, so restarts do not reset it).
// FinalAfter 0 makes entries FINAL at once.
//
// # Faults
//
// Faults apply to /v1/entries requests only (never to admin or /healthz), before
// authentication, each drawn independently per request from one RNG (seedable for
// reproducible runs), in this order: outage (503 + Retry-After until the outage ends), error
// (500 or 503), rate limit (429 + Retry-After), timeout (the request is held for TimeoutHold or
// until the client gives up, then the connection is closed without an answer), latency (+ up to
// jitter); then the request is served, and for a POST that was served (posted or replayed),
// drop-after-commit closes the connection instead of answering: the entry is durably posted but
// the client sees no answer, the case a naive retry turns into a double post.
package sim
