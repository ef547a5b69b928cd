#!/usr/bin/env bash
# Compression cost, Portico against nginx on the same text file in the same run: proxy CPU per MB of
# uncompressed response, and the compressed size. gzip at level 6 on both (nginx `gzip_comp_level 6`), then
# Portico's brotli and zstd at their default levels (br 4, zstd 3).
#
#   scripts/bench-compression.sh [FILE] [SECONDS]     (needs nginx, wrk, curl; a release build of portico)
#
# An nginx serves FILE as text/plain (the origin); a second nginx (gzip on, one process) and Portico
# (`portico proxy --compress --workers 1`) proxy it. Each proxy is driven by wrk (1 thread, 8 connections) for
# SECONDS per coding; its CPU time is read from /proc before and after. Everything is on 127.0.0.1 and every
# process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=${1:-/usr/lib/python3.11/_pydecimal.py}
SECONDS_PER_RUN=${2:-10}
PORTICO=${PORTICO:-$PWD/.build/release/portico}
[ -x "$PORTICO" ] || { echo "build first: swift build -c release" >&2; exit 1; }
for tool in nginx wrk curl; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }; done

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

mkdir -p "$tmp/www" "$tmp/logs"
cp "$FILE" "$tmp/www/page.txt"
size=$(stat -c %s "$tmp/www/page.txt")
origin_port=$(port); nginx_port=$(port); portico_port=$(port)

cat > "$tmp/origin.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $tmp/origin.pid; error_log $tmp/logs/origin.err;
events { worker_connections 1024; }
http { access_log off; types { text/plain txt; }
  server { listen 127.0.0.1:$origin_port; root $tmp/www; keepalive_requests 1000000; } }
CONF
cat > "$tmp/gzip.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $tmp/gzip.pid; error_log $tmp/logs/gzip.err;
events { worker_connections 1024; }
http { access_log off; gzip on; gzip_comp_level 6; gzip_types text/plain; gzip_min_length 512; gzip_proxied any;
  upstream o { server 127.0.0.1:$origin_port; keepalive 32; }
  server { listen 127.0.0.1:$nginx_port; keepalive_requests 1000000;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on; } } }
CONF
nginx -p "$tmp" -c "$tmp/origin.conf" & pids+=($!)
nginx -p "$tmp" -c "$tmp/gzip.conf" & nginx_pid=$!; pids+=($nginx_pid)
"$PORTICO" proxy --listen 127.0.0.1:$portico_port --to 127.0.0.1:$origin_port --workers 1 --compress & portico_pid=$!; pids+=($portico_pid)
for p in $origin_port $nginx_port $portico_port; do
    for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$p/page.txt" 2>/dev/null && break; sleep 0.1; done
done

printf 'file %s, %d bytes; %ss per run, wrk -t1 -c8\n\n' "$FILE" "$size" "$SECONDS_PER_RUN"
printf '| proxy | coding | compressed bytes | ratio | requests/s | proxy CPU ms per MB |\n|---|---|---:|---:|---:|---:|\n'
measure() {  # name pid port coding
    local name=$1 pid=$2 p=$3 coding=$4
    local bytes; bytes=$(curl -fsS -H "Accept-Encoding: $coding" "http://127.0.0.1:$p/page.txt" | wc -c)
    local got; got=$(curl -fsS -D - -o /dev/null -H "Accept-Encoding: $coding" "http://127.0.0.1:$p/page.txt" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding" { print $2 }')
    [ "$got" = "$coding" ] || { echo "$name did not answer $coding (got '${got}')" >&2; return; }
    local before; before=$(cpu_ticks "$pid")
    local out; out=$(wrk -t1 -c8 -d"${SECONDS_PER_RUN}s" -H "Accept-Encoding: $coding" "http://127.0.0.1:$p/page.txt")
    local after; after=$(cpu_ticks "$pid")
    local requests; requests=$(echo "$out" | awk '/requests in/ { print $1 }')
    python3 - "$name" "$coding" "$bytes" "$size" "$requests" "$before" "$after" "$ticks_per_second" "$SECONDS_PER_RUN" <<'PY'
import sys
name, coding, bytes_, size, requests, before, after, tps, secs = sys.argv[1:]
bytes_, size, requests, before, after, tps, secs = int(bytes_), int(size), int(requests), int(before), int(after), int(tps), float(secs)
cpu = (after - before) / tps
mb = requests * size / 1e6
print(f"| {name} | {coding} | {bytes_} | {bytes_/size:.3f} | {requests/secs:.0f} | {cpu*1000/mb:.2f} |")
PY
}
measure nginx "$nginx_pid" "$nginx_port" gzip
measure portico "$portico_pid" "$portico_port" gzip
measure portico "$portico_pid" "$portico_port" br
measure portico "$portico_pid" "$portico_port" zstd
measure portico "$portico_pid" "$portico_port" deflate
