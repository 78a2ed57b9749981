-- wrk script for the single-entry path: POST /v1/ledgers/<ledger>/entries, each request a new
-- reference, from an issuance account (no overdraft limit) to one of <accounts> accounts, or
-- between two accounts ("hot"). Setup and the commands: docs/benchmarks.md ("wrk").
--
--   LEDGER=BENCH ACCOUNTS=1000 DISTRIBUTION=spread TOKEN=... \
--     wrk -t2 -c32 -d10s --latency -s scripts/bench-wrk.lua http://127.0.0.1:18080
local ledger = os.getenv("LEDGER") or "BENCH"
local accounts = tonumber(os.getenv("ACCOUNTS") or "1000")
local hot = (os.getenv("DISTRIBUTION") or "spread") == "hot"
local token = os.getenv("TOKEN") or error("TOKEN (an API key with scope post) is required")
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
  prefix = string.format("wrk-%d-%d-%d", os.time(), tid or 0, math.random(1, 1e9))
end

function request()
  counter = counter + 1
  local credit
  if hot then credit = "acct-2" else credit = "acct-" .. math.random(1, accounts) end
  local body = string.format(
    '{"debit_account_id":"issuance","credit_account_id":"%s","amount":"1.00","currency_code":"USD",' ..
    '"asset_type":"fiat","transaction_type":"transfer","reference_id":"%s-%d"}', credit, prefix, counter)
  return wrk.format("POST", "/v1/ledgers/" .. ledger .. "/entries",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
-- No response() callback: it would cost the generator CPU per request; wrk counts the answers
-- that are not 2xx itself ("Non-2xx or 3xx responses"). Every request is a new reference, so a
-- 200 (a replay) would mean a broken script, not a slow server.
