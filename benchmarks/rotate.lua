-- wrk script: sends pre-signed, distinct Jicoo bodies (one per request, never repeated while
-- the list lasts) and counts 2xx answers, so "lost" can be computed afterwards.
--   BENCH_REQUESTS  file from gen_bodies.py (uid, Jicoo signature, X-Signature, body per line)
--   BENCH_THREADS   wrk's -t value (each thread takes every BENCH_THREADS-th line)
--   BENCH_RESULT    where done() writes its JSON summary
-- Every request carries both signature headers, so all receivers get the same bytes.

local path = os.getenv("BENCH_REQUESTS")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  reqs = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local _, jsig, xsig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", nil, {
        ["Host"] = "127.0.0.1",
        ["Content-Type"] = "application/json",
        ["Jicoo-Webhook-Signature"] = jsig,
        ["X-Signature"] = xsig,
      }, body)
    end
    i = i + 1
  end
  nreqs = #reqs
  idx = 0
  ok = 0
  other = 0
  wrapped = 0
end

function request()
  idx = idx + 1
  if idx > #reqs then
    idx = 1
    wrapped = wrapped + 1 -- bodies repeat from here on: Herald would answer 200 duplicate
  end
  return reqs[idx]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local ok_total, other_total, wrapped_total, sent = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    other_total = other_total + t:get("other")
    wrapped_total = wrapped_total + t:get("wrapped")
    sent = sent + t:get("idx") + t:get("wrapped") * t:get("nreqs")
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  local out = string.format(
    '{"tool":"wrk","duration_s":%.3f,"requests":%d,"rps":%.1f,"ok_2xx":%d,"non_2xx":%d,' ..
    '"socket_errors":%d,"wrapped":%d,"sent":%d,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    secs, summary.requests, summary.requests / secs, ok_total, other_total,
    e.connect + e.read + e.write + e.timeout, wrapped_total, sent,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000)
  local f = io.open(os.getenv("BENCH_RESULT") or "/dev/stdout", "w")
  f:write(out)
  f:close()
end
