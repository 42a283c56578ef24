-- wrk script for bench/run.sh: POST /v1/internal/inbound, the processor's
-- hand-over of an inbound message, authenticated with the internal token
-- ($BENCH_INTERNAL_TOKEN), to a number of the benchmark's account
-- ($BENCH_INBOUND_TO). Each request has its own carrier_message_id (the
-- route is idempotent on it) and sender. done() prints one WRK line.
--
--   BENCH_INTERNAL_TOKEN=... BENCH_INBOUND_TO=+14155550190 BENCH_RUN=x \
--     wrk -t2 -c32 -d10s -s bench/post-inbound.lua http://127.0.0.1:18080/v1/internal/inbound

local token = os.getenv("BENCH_INTERNAL_TOKEN") or ""
local to = os.getenv("BENCH_INBOUND_TO") or "+14155550190"
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local threads = {}
local counter = 0
-- id is a global set per thread by setup(); don't make it local.
id = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
  counter = counter + 1
  local r = (id * 499979 + counter) % 1000000
  local body = string.format(
    '{"from":"+447911%06d","to":"%s","text":"smsctl bench: inbound #%d","received_at":"%s","carrier_message_id":"bench-%s-%d-%d"}',
    r, to, counter, os.date("!%Y-%m-%dT%H:%M:%SZ"), run, id, counter)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
