-- wrk script: replay a pre-generated pool of signed webhooks (bench/gen.py), one per request.
--
--   wrk -t1 -c64 -d10s -s bench/wrk/webhooks.lua URL -- pool=FILE [offsets=0] [rate=0] \
--       [threads=1] [path=/payments/api/webhooks/stripe/] [mode=stream|preload] [preload=20000]
--
-- pool     file written by bench/gen.py: one request per line; TAB-separated fields: an optional
--          "#2xx"/"#4xx" marker (what the gateway should answer; not sent), "Name: value"
--          headers, an empty field, then the body.
-- offsets  byte offsets where each thread starts, comma-separated ("0" or "123,456"). With one
--          value, thread i starts at OFFSET + i*SIZE/THREADS (aligned to the next line), so
--          threads never send the same ids. done() prints each thread's end offset: the harness
--          passes them to the next wrk run against the same server process (warm-up, then
--          measurement, then latency windows) so no event id is sent twice to one process.
-- mode     stream (default): read the next line from the file for every request (nothing is
--          loaded up front; a few us of Lua per request on the load generator's core).
--          preload: format up to `preload` lines once and cycle through them (cheapest per
--          request; for targets without dedup, where repeating an id changes nothing).
-- rate     0 (default): closed loop, as fast as the server answers (throughput).
--          > 0: fixed rate in requests/s over all threads (latency). Each thread keeps an
--          absolute schedule (one slot every THREADS/RATE s, CLOCK_MONOTONIC via the LuaJIT FFI)
--          and delay() holds each connection until the next free slot. wrk's delay() has 1 ms
--          resolution, so sends are paced to the nearest millisecond. Latency is measured by wrk
--          from the actual send, so it is not corrected for coordinated omission: "late" counts
--          sends that left more than 2 ms after their slot (all connections were busy); while
--          late stays near 0 the schedule was kept and the percentiles are honest.
--
-- done() prints one line "BENCHJSON {...}": wrk's summary and errors, latency percentiles (us),
-- requests sent, how many of them expected 2xx / 4xx, "late", whether the pool wrapped around,
-- and each thread's end offset.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
int clock_gettime(int clk_id, bench_timespec_t *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec_t")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

-- per-thread state (each wrk thread has its own Lua state)
local path = "/payments/api/webhooks/stripe/"
local file = nil
local size = 0
local reqs, expect, n, idx = {}, {}, 0, 0
local interval = 0
local next_slot = nil
local streaming = true

local function parse(line)
  local headers = {}
  local ok2xx = true
  local at = 1
  while true do
    local tab = line:find("\t", at, true)
    if tab == nil then
      error("pool line without the empty field before the body")
    end
    if tab == at then
      at = tab + 1
      break
    end
    if line:byte(at) == 35 then -- "#": the expected-outcome marker, not a header
      ok2xx = line:sub(at, tab - 1) == "#2xx"
    else
      local colon = line:find(": ", at, true)
      headers[line:sub(at, colon - 1)] = line:sub(colon + 2, tab - 1)
    end
    at = tab + 1
  end
  return wrk.format("POST", path, headers, line:sub(at)), ok2xx
end

local function next_line()
  local line = file:read("*l")
  if line == nil or #line == 0 then
    file:seek("set", 0)
    wraps = wraps + 1
    pos = 0
    line = file:read("*l")
  end
  pos = pos + #line + 1
  consumed = consumed + #line + 1
  return line
end

local function paced_delay()
  local now = now_ms()
  if next_slot == nil then
    next_slot = now
  end
  local slot = next_slot
  next_slot = next_slot + interval
  local wait = slot - now
  if wait < -2 then
    late = late + 1
  end
  if wait <= 0 then
    return 0
  end
  return math.floor(wait + 0.5)
end

function init(args)
  local opts = { offsets = "0", rate = "0", threads = "1", mode = "stream", preload = "20000" }
  for _, a in ipairs(args) do
    local k, v = a:match("^([%w_]+)=(.*)$")
    if k == nil then
      error("arguments are key=value, got " .. a)
    end
    opts[k] = v
  end
  if opts.pool == nil then
    error("pool=FILE is required")
  end
  path = opts.path or path
  local nthreads = tonumber(opts.threads)
  local rate = tonumber(opts.rate)
  file = assert(io.open(opts.pool, "rb"))
  file:setvbuf("full", 1048576)
  size = file:seek("end")
  pool_size_bytes = size
  local offs = {}
  for o in opts.offsets:gmatch("[^,]+") do
    table.insert(offs, tonumber(o))
  end
  local start
  if #offs > id then
    start = offs[id + 1] % size
  else
    start = (offs[1] + math.floor(id * size / nthreads)) % size
  end
  file:seek("set", start)
  if start > 0 then -- align to the start of a line unless the offset already is one
    file:seek("set", start - 1)
    if file:read(1) ~= "\n" then
      file:read("*l")
    end
  end
  first = file:seek("cur")
  if first >= size then
    file:seek("set", 0)
    first = 0
  end
  pos = first
  consumed = 0
  sent, sent2xx, sent4xx, wraps, late = 0, 0, 0, 0, 0
  streaming = opts.mode ~= "preload"
  if not streaming then
    local limit = tonumber(opts.preload)
    while n < limit do
      n = n + 1
      reqs[n], expect[n] = parse(next_line())
      if wraps > 0 and pos > first then
        break -- the pool is smaller than `preload`: one full pass is enough
      end
    end
    wraps = 0
    pos = first
    consumed = 0
  end
  if rate > 0 then
    interval = 1000.0 * nthreads / rate
    delay = paced_delay
  end
end

function request()
  sent = sent + 1
  local req, ok2xx
  if streaming then
    req, ok2xx = parse(next_line())
  else
    idx = idx + 1
    if idx > n then
      idx = 1
      wraps = wraps + 1
    end
    req, ok2xx = reqs[idx], expect[idx]
  end
  if ok2xx then
    sent2xx = sent2xx + 1
  else
    sent4xx = sent4xx + 1
  end
  return req
end

function done(summary, latency, requests)
  local s_sent, s_2xx, s_4xx, s_late, s_consumed, wrapped = 0, 0, 0, 0, 0, false
  local per_thread, ends = {}, {}
  for _, t in ipairs(threads) do
    local tid = t:get("id")
    s_sent = s_sent + (t:get("sent") or 0)
    s_2xx = s_2xx + (t:get("sent2xx") or 0)
    s_4xx = s_4xx + (t:get("sent4xx") or 0)
    s_late = s_late + (t:get("late") or 0)
    s_consumed = s_consumed + (t:get("consumed") or 0)
    if (t:get("wraps") or 0) > 0 then
      wrapped = true
    end
    table.insert(per_thread, string.format('{"id":%d,"first":%d,"end":%d,"sent":%d}', tid, t:get("first") or 0, t:get("pos") or 0, t:get("sent") or 0))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"sent":%d,"sent_expect_2xx":%d,"sent_expect_4xx":%d,"late":%d,"wrapped":%s,"consumed_bytes":%d,"pool_bytes":%d,"threads":[%s]}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    s_sent, s_2xx, s_4xx, s_late, tostring(wrapped), s_consumed, threads[1] and (threads[1]:get("pool_size_bytes") or 0) or 0, table.concat(per_thread, ",")))
end
