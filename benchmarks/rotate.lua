-- wrk script: sends pre-signed, distinct Jicoo bodies (one per request, never repeated while
-- the list lasts) and counts 2xx answers, so "lost" can be computed afterwards.
--   BENCH_REQUESTS  the --out that gen_bodies.py was given with --wrk-threads and --url-path:
--                   thread k sends the requests of BENCH_REQUESTS.<k>.http, in order
--   BENCH_RESULT    where done() writes its JSON summary
-- Every request carries both signature headers, so all receivers get the same bytes.
--
-- init maps its thread's file and only finds where each request ends; request() copies one
-- out. wrk runs each thread's init on its main thread after starting the threads before it,
-- and starts its clock only after the last init: when init parsed and formatted every line
-- (2.6 s per thread for 125,000 bodies), the first thread's connections sent for seconds
-- before the clock started, on the one core the init left free, and wrk counted their
-- answers as if they had come within its duration.

local ffi = require("ffi")
ffi.cdef [[
int open(const char *path, int flags);
int close(int fd);
void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset);
void *memchr(const void *s, int c, size_t n);
]]
local PROT_READ, MAP_PRIVATE, MAP_POPULATE = 1, 2, 0x8000

local path = os.getenv("BENCH_REQUESTS")
local threads = {}
local next_id = 0
local data, starts, lengths -- this thread's mapped file, and where each request is in it

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local file = path .. "." .. tid .. ".http"
  local f = assert(io.open(file, "rb"))
  local size = f:seek("end")
  f:close()
  assert(size > 0, file .. " is empty")
  local fd = ffi.C.open(file, 0)
  assert(fd >= 0, "cannot open " .. file)
  local base = ffi.C.mmap(nil, size, PROT_READ, MAP_PRIVATE + MAP_POPULATE, fd, 0)
  ffi.C.close(fd)
  assert(ffi.cast("intptr_t", base) ~= -1, "cannot map " .. file)
  data = ffi.cast("const char *", base)
  starts, lengths = {}, {}
  local at, n = 0, 0
  while at < size do
    local nul = ffi.C.memchr(data + at, 0, size - at)
    assert(nul ~= nil, file .. " does not end with a NUL byte")
    local ends = tonumber(ffi.cast("const char *", nul) - data)
    n = n + 1
    starts[n], lengths[n] = at, ends - at
    at = ends + 1
  end
  nreqs = n
  idx = 0
  ok = 0
  other = 0
  wrapped = 0
end

function request()
  idx = idx + 1
  if idx > nreqs then
    idx = 1
    wrapped = wrapped + 1 -- bodies repeat from here on: Herald would answer 200 duplicate
  end
  return ffi.string(data + starts[idx], lengths[idx])
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
