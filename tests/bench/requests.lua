-- wrk script for every bench scenario: replays requests the bench wrote to files beforehand.
--
-- Usage: wrk -s requests.lua URL -- <prefix> [debug]; thread N reads "<prefix>.N", one a line:
--   METHOD <tab> PATH <tab> BEARER-TOKEN-or-empty <tab> JSON-BODY-or-empty <tab> HEADERS
-- HEADERS: "Name:value" pairs separated by \x1f (ASCII unit separator), or empty.
-- Each thread formats its requests once in init() and hands them out in file order, wrapping
-- around at the end, so request() costs one table lookup. Per-request variation (a different
-- course, a fresh open lesson for complete_lesson) is in the files, chosen by the bench.
-- done() prints one line "BENCH_JSON {...}" with the numbers the bench reads.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local requests = {}
-- wrk calls request() once on thread 0's state right after init() to check that the request
-- parses, and never sends that one: hand it the first request without moving on, or thread 0
-- would silently skip its first request (complete_lesson: a lesson, then 400s for the rest).
local checking = false

-- Globals, so done() can read them through thread:get().
listed = 0
sent = 0

function init(args)
  local path = args[1] .. "." .. tid
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    local method, target, token, body, extra =
      line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    assert(method, "malformed request line in " .. path)
    local headers = {}
    for pair in extra:gmatch("[^\31]+") do
      local name, value = pair:match("^([^:]+):(.*)$")
      assert(name, "malformed header in " .. path)
      headers[name] = value
    end
    if token ~= "" then
      headers["Authorization"] = "Bearer " .. token
    end
    if body == "" then
      body = nil
    else
      headers["Content-Type"] = "application/json"
    end
    listed = listed + 1
    requests[listed] = wrk.format(method, target, headers, body)
  end
  file:close()
  assert(listed > 0, "no requests in " .. path)
  checking = tid == 0
  if args[2] == "debug" then
    -- BENCH_DEBUG=1: show what went wrong (costs the load generator a Lua call per response).
    function response(status, _, body)
      if status > 299 then
        io.stderr:write(string.format("HTTP %d %s\n", status, body))
      end
    end
  end
end

function request()
  if checking then
    checking = false
    return requests[1]
  end
  sent = sent + 1
  return requests[(sent - 1) % listed + 1]
end

function done(summary, latency, _)
  -- Requests sent past the end of a thread's list repeat earlier ones.
  local repeated = 0
  for _, thread in ipairs(threads) do
    local extra = thread:get("sent") - thread:get("listed")
    if extra > 0 then
      repeated = repeated + extra
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "status_errors": %d, ' ..
    '"socket_errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "repeated": %d}\n',
    summary.duration, summary.requests, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, repeated))
end
