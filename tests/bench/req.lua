-- req.lua — wrk script for p11vault: the bearer token, a JSON body, and
-- optionally a spread of requests over many keys; prints one JSON line
-- "BENCHJSON {...}" with the rate and latency percentiles.
-- Environment: BENCH_TOKEN, BENCH_METHOD (POST), BENCH_PATH, BENCH_BODY,
-- BENCH_DELAY_MS (pace each connection: ms between response and next
-- request), BENCH_REQFILE (lines "PATH<TAB>BODY"; requests cycle over them
-- from a random start per thread).
local token = os.getenv("BENCH_TOKEN") or ""
local method = os.getenv("BENCH_METHOD") or "POST"
local path = os.getenv("BENCH_PATH") or "/"
local body = os.getenv("BENCH_BODY")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local reqfile = os.getenv("BENCH_REQFILE")
local reqs = nil
local n = 0
local i = 0

local headers = {
  ["Authorization"] = "Bearer " .. token,
  ["Content-Type"] = "application/json",
}

function init(args)
  if reqfile ~= nil and reqfile ~= "" then
    reqs = {}
    for line in io.lines(reqfile) do
      local p, b = line:match("^([^\t]+)\t(.*)$")
      if p then
        n = n + 1
        reqs[n] = wrk.format(method, p, headers, b)
      end
    end
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
    i = math.random(n)
  else
    wrk.method = method
    wrk.path = path
    wrk.body = body
    for k, v in pairs(headers) do wrk.headers[k] = v end
  end
end

-- only a spread needs a request() of its own: without it wrk sends the
-- request built in init() from a buffer, at no Lua cost per request (the
-- load generator shares the cores with the server it measures)
if reqfile ~= nil and reqfile ~= "" then
  function request()
    i = i % n + 1
    return reqs[i]
  end
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local s = summary.duration / 1e6
  io.write(string.format(
    'BENCHJSON {"requests":%d,"seconds":%.3f,"rps":%.1f,' ..
    '"non2xx":%d,"errors":%d,"p50_ms":%.3f,"p99_ms":%.3f,' ..
    '"p999_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f}\n',
    summary.requests, s, summary.requests / s, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000,
    latency.mean / 1000))
end
