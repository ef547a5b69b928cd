#!/usr/bin/env bash
# How exact the rate limits are (issue 10 §1): requests admitted in a bounded window against the expected
# burst + rate × time, for a local limit (one Portico, two workers) and for a limit shared through Redis by two
# Portico processes loaded at once. Load: wrk, 2 connections per process, far above the limit.
#
#   scripts/measure-rate-limits.sh [SECONDS] [RATE]     (needs redis-server, wrk; a release build of portico)
#
# Everything is on 127.0.0.1 and every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
RATE=${2:-200}
PORTICO=${PORTICO:-$PWD/.build/release/portico}
[ -x "$PORTICO" ] || { echo "build first: swift build -c release" >&2; exit 1; }
for tool in redis-server wrk; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }; done

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port=$(port); a_port=$(port); b_port=$(port)

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
config() {  # listen port
    cat <<CONF
workers: 2
listeners: [ { name: main, address: "127.0.0.1:$1" } ]
access_log: { destination: "off" }
routes:
  - match: { path_prefix: /local/ }
    respond: { body: "ok" }
    rate_limits: [ { name: local, key: route, rate: $RATE, per: 1s, burst: $RATE } ]
  - match: { path_prefix: /shared/ }
    respond: { body: "ok" }
    rate_limits: [ { name: shared, key: route, rate: $RATE, per: 1s, burst: $RATE, store: redis,
                     redis: { address: "127.0.0.1:$redis_port", timeout: 1s } } ]
CONF
}
config "$a_port" > "$tmp/a.yaml"; config "$b_port" > "$tmp/b.yaml"
"$PORTICO" run --config "$tmp/a.yaml" --log-level warning & pids+=($!)
"$PORTICO" run --config "$tmp/b.yaml" --log-level warning & pids+=($!)
for p in $a_port $b_port; do
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done

admitted() {  # wrk output -> admitted, seconds
    awk '/requests in/ { n=$1; sub(/s,/, "", $4); t=$4 } /Non-2xx/ { e=$5 } END { print n - e, t }'
}
report() {  # name, admitted, seconds
    python3 -c "
import sys
name, n, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
expected = $RATE + $RATE * t
print(f'{name:<40} admitted {n:>6}  expected {expected:>8.0f}  ({(n - expected) / expected * 100:+.1f} %)')" "$@"
}
echo "limit: $RATE per second, bursts of $RATE; ${SECONDS_PER_RUN}s of load far above it"
read -r n t < <(wrk -t1 -c2 -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$a_port/local/" | admitted)
report "local, one process (2 workers)" "$n" "$t"
wrk -t1 -c2 -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$a_port/shared/" > "$tmp/wa" &
wa=$!
wrk -t1 -c2 -d"${SECONDS_PER_RUN}s" "http://127.0.0.1:$b_port/shared/" > "$tmp/wb"
wait $wa
read -r na ta < <(admitted < "$tmp/wa")
read -r nb tb < <(admitted < "$tmp/wb")
report "redis, two processes at once" "$((na + nb))" "$(python3 -c "print(max($ta, $tb))")"
echo "  (process A admitted $na, process B $nb)"
