-- wrk script for bench/run.sh: POST /v1/messages with a JSON body whose
-- recipient changes on every request, authenticated with $BENCH_API_KEY.
-- The sender ($BENCH_SENDER) tags the phase, so the loss check can count
-- what each phase stored. done() prints one machine-readable WRK line.
--
--   BENCH_API_KEY=sms_... BENCH_SENDER=+14155550101 \
--     wrk -t2 -c128 -d30s -s bench/post.lua http://127.0.0.1:18080/v1/messages

local key = os.getenv("BENCH_API_KEY") or ""
local sender = os.getenv("BENCH_SENDER") or "+14155550101"
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
  wrk.headers["Authorization"] = "Bearer " .. key
end

function request()
  counter = counter + 1
  -- UK mobile range +44 7911 xxxxxx; threads start far apart in it.
  local r = (id * 499979 + counter) % 1000000
  local body = string.format(
    '{"sender":"%s","recipient":"+447911%06d","text":"smsctl bench: your code is 424242 #%d"}',
    sender, r, counter)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
