-- wrk script of the overload scenarios (tests/bench/overload.py): replays the request files as
-- requests.lua does and counts answers by kind: success (2xx), refused (503, the fast
-- rejection), timed out (504) and anything else. done() prints one "BENCH_JSON {...}" line.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local requests = {}
-- Globals, so done() can read them through thread:get().
listed = 0
sent = 0
ok = 0
refused = 0
timed_out = 0
other = 0

function init(args)
  local path = args[1] .. "." .. tid
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    local method, target, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    assert(method, "malformed request line in " .. path)
    local headers = {}
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
end

function request()
  sent = sent + 1
  return requests[(sent - 1) % listed + 1]
end

function response(status, _, _)
  if status < 300 then
    ok = ok + 1
  elseif status == 503 then
    refused = refused + 1
  elseif status == 504 then
    timed_out = timed_out + 1
  else
    other = other + 1
  end
end

function done(summary, latency, _)
  local totals = {ok = 0, refused = 0, timed_out = 0, other = 0}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(totals) do
      totals[key] = totals[key] + thread:get(key)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "ok": %d, "refused": %d, ' ..
    '"timed_out": %d, "other": %d, "socket_errors": %d, "p99_us": %d}\n',
    summary.duration, summary.requests, totals.ok, totals.refused, totals.timed_out,
    totals.other, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(99)))
end
