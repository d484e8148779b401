#!/usr/bin/env bash
# Heartbeats a second on one `muster serve`, loaded by wrk (C, not Python) so the
# load generator takes less of the two cores than the service does.
#
#   bench/heartbeats_wrk.sh [SECONDS] [CONNECTIONS]
#
# Registers 10,000 nodes first, then refreshes them round-robin for SECONDS
# (default 10) over CONNECTIONS (default 64) loopback connections.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-64}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
scripts/setup >/dev/null 2>&1

data=$(mktemp -d)
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/muster serve -H "tcp://127.0.0.1:$port" --data-dir "$data" \
  --max-nodes 1000000 --log-level warning 2>"$data/serve.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.1
done

token=$(curl -sf -X POST "http://127.0.0.1:$port/v1/clusters")
url="http://127.0.0.1:$port/v1/clusters/$token?ttl=600"
echo "machine: $(uname -m), $(nproc) cores, $(.venv/bin/python -V), $(uname -sr)"
echo "command: bench/heartbeats_wrk.sh $seconds $connections"
echo "== joins (10,000 new nodes), then refreshes for ${seconds}s"
MUSTER_BENCH_NODES=10000 wrk -t1 -c"$connections" -d2s -s bench/refresh.lua "$url" | grep -E "Requests/sec|Non-2xx"
MUSTER_BENCH_NODES=10000 wrk -t1 -c"$connections" -d"${seconds}s" -s bench/refresh.lua "$url" \
  | grep -E "Latency|Requests/sec|requests in|Non-2xx"
curl -sf "http://127.0.0.1:$port/health"; echo
