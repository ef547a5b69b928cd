#!/usr/bin/env bash
# Slow-client attacks against Portico (issue 10): slowhttptest opens 1,000 attack connections from 127.0.0.1
# (slowloris: a head that never ends; slow body: a POST body trickled in; slow read: a large response read a few
# bytes at a time), while a normal client on 127.0.0.2 makes requests the whole time. Each attack runs against
# Portico without per-address caps, then with `max_connections_per_ip: 50`. Reported: the attack connections
# still open at the end, and the share of the normal client's requests served (with their median time).
#
#   scripts/slow-clients.sh [SECONDS]      (needs slowhttptest, nginx; a release build of portico)
#
# Everything is on 127.0.0.0/8 and every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-20}
PORTICO=${PORTICO:-$PWD/.build/release/portico}
[ -x "$PORTICO" ] || { echo "build first: swift build -c release" >&2; exit 1; }
for tool in slowhttptest nginx; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }; done
ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
origin_port=$(port)
mkdir -p "$tmp/www" "$tmp/logs"
head -c 1048576 /dev/urandom | base64 > "$tmp/www/big.txt"
echo "a normal page" > "$tmp/www/index"
cat > "$tmp/origin.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $tmp/origin.pid; error_log $tmp/logs/origin.err;
events { worker_connections 4096; }
# /post reads the whole body first (nginx buffers a request body before proxying it, here to itself), so a slow
# body holds its connection for as long as the client trickles.
http { access_log off; client_max_body_size 100m;
  server { listen 127.0.0.1:$origin_port; root $tmp/www; location = /post { proxy_pass http://127.0.0.1:$origin_port/index; } location / { } } }
CONF
nginx -c "$tmp/origin.conf" -p "$tmp" & pids+=($!)

normal_client() {  # port, seconds -> "served total median_ms"
    python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + seconds; ok = total = 0; times = []
while time.time() < end:
    total += 1; t0 = time.time()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
        s.sendall(b"GET /index HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk: break
            data += chunk
        s.close()
        if data.startswith(b"HTTP/1.1 "): ok += 1; times.append((time.time() - t0) * 1000)
    except OSError:
        pass
    time.sleep(0.05)
times.sort()
print(ok, total, f"{times[len(times)//2]:.1f}" if times else "-")
PY
}

run() {  # caps (yes/no), attack name, slowhttptest flags...
    local caps=$1 name=$2; shift 2
    local p; p=$(port)
    local limits=""
    [ "$caps" = yes ] && limits='limits: { max_connections_per_ip: 50 }'
    cat > "$tmp/portico.yaml" <<CONF
workers: 1
listeners: [ { name: main, address: "127.0.0.1:$p", $limits } ]
access_log: { destination: "off" }
routes: [ { cluster: origin } ]
clusters: [ { name: origin, hosts: [ { address: "127.0.0.1:$origin_port" } ] } ]
CONF
    "$PORTICO" run --config "$tmp/portico.yaml" --log-level error & local portico=$!; pids+=($portico)
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/index" && break; sleep 0.1; done
    slowhttptest "$@" -c 1000 -r 500 -l "$SECONDS_PER_RUN" -u "http://127.0.0.1:$p/$( [ "$name" = "slow read" ] && echo big.txt || echo post )" \
        > "$tmp/attack.log" 2>&1 &
    local attack=$!; pids+=($attack)
    sleep 3  # the attack connections are open
    read -r ok total median < <(normal_client "$p" "$((SECONDS_PER_RUN - 5))")
    wait "$attack" || true
    sed -i 's/\x1b\[[0-9;]*m//g' "$tmp/attack.log"  # slowhttptest colours its report
    local connected; connected=$(grep -o 'connected: *[0-9]*' "$tmp/attack.log" | tail -1 | grep -o '[0-9]*$' || echo "?")
    local peak; peak=$(grep -o 'connected: *[0-9]*' "$tmp/attack.log" | grep -o '[0-9]*$' | sort -n | tail -1 || echo "?")
    printf '%-12s caps=%-3s  attack connections: peak %5s, at the end %5s   normal client: %4s of %4s served, median %s ms\n' \
        "$name" "$caps" "$peak" "$connected" "$ok" "$total" "$median"
    kill "$portico"; wait "$portico" 2>/dev/null || true
}
echo "1,000 attack connections (500/s), ${SECONDS_PER_RUN}s each; normal client from 127.0.0.2"
for caps in no yes; do
    run $caps slowloris -H -i 10
    run $caps "slow body" -B -i 10 -s 100000
    run $caps "slow read" -X -k 1 -n 10 -w 1 -y 1 -z 1
done
