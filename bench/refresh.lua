-- wrk script: each request refreshes one of `nodes` registered addresses, in turn.
-- The cluster token comes in the URL; the address is the raw body, as Swarm sends it.
local nodes = tonumber(os.getenv("MUSTER_BENCH_NODES") or "10000")
local counter = 0

request = function()
  counter = counter + 1
  local n = counter % nodes
  local body = string.format(
    "10.%d.%d.%d:2375", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256
  )
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
