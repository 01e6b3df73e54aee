-- wrk script of `make bench-serving`: POSTs the JSON bodies of the file BODIES (one a line) in
-- turn, or GETs when BODIES is unset, and writes to WRK_OUT the run's counts and its latency
-- quantiles (microseconds at QUANTILES evenly spaced levels), which the benchmark pools across
-- runs (this wrk's Lua API gives percentiles, not the histogram).
local bodies = {}
local path = os.getenv("BODIES")
if path then
  for line in io.lines(path) do bodies[#bodies + 1] = line end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
local index = 0
local QUANTILES = 2000

request = function()
  if #bodies == 0 then return wrk.format() end
  index = index % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[index])
end

done = function(summary, latency, requests)
  local out = assert(io.open(os.getenv("WRK_OUT"), "w"))
  local errors = summary.errors
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "socket_errors": %d, "non2xx": %d, "max_us": %d, ' ..
    '"p999_us": %d, "p9999_us": %d, "quantiles_us": [',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status,
    latency.max, latency:percentile(99.9), latency:percentile(99.99)))
  for k = 1, QUANTILES do
    local level = (k - 0.5) * 100.0 / QUANTILES
    out:write(string.format('%s%d', k == 1 and "" or ", ", latency:percentile(level)))
  end
  out:write("]}\n")
  out:close()
end
