-- wrk script: replay pre-signed, unique Vapi requests from $BENCH_REQUESTS.
-- Record format: signature \n timestamp \n body length \n body \n
-- Thread k of n sends records k, k+n, k+2n, ... so no two threads send the same body.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  thread:set("nthreads", tonumber(os.getenv("BENCH_THREADS")))
  counter = counter + 1
end

function init(args)
  requests = {}
  local f = assert(io.open(os.getenv("BENCH_REQUESTS"), "rb"))
  local index = 0
  while true do
    local sig = f:read("*l")
    if not sig then break end
    local ts = f:read("*l")
    local n = tonumber(f:read("*l"))
    local body = f:read(n)
    f:read("*l")
    if index % nthreads == tid then
      requests[#requests + 1] = wrk.format("POST", "/webhooks/vapi",
        {["Content-Type"] = "application/json", ["x-signature"] = sig, ["x-timestamp"] = ts}, body)
    end
    index = index + 1
  end
  f:close()
  position = 0
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function done(summary, latency, requests)
  io.write(string.format("BENCH %d %d %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max, summary.bytes))
end
