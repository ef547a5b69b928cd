#!/usr/bin/env bash
# Starts Portico with two demo origins, a cache, a host that is down, and the admin listener; sends it a little
# traffic; opens the dashboard in headless Chromium (Debian's `chromium`) and saves a screenshot.
#
#   scripts/dashboard-screenshot.sh [OUT.png]      (default docs/dashboard.png; builds the debug binary if needed)
#
# Everything is on 127.0.0.1 with free ports; every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/dashboard.png}
command -v chromium >/dev/null || { echo "needs chromium (apt-get install -y chromium)" >&2; exit 1; }
[ -x .build/debug/portico ] || swift build --product portico
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
a=$(port); b=$(port); down=$(port); listen=$(port); admin=$(port)
cat > "$tmp/portico.yaml" <<CONF
demo_origins: [ { name: origin-a, address: "127.0.0.1:$a" }, { name: origin-b, address: "127.0.0.1:$b" } ]
admin: { address: "127.0.0.1:$admin" }
listeners: [ { name: public, address: "127.0.0.1:$listen" } ]
access_log: { destination: "off" }
cache_storage: { max_size: 64MiB }
routes:
  - { name: health, match: { path: /healthz }, respond: { body: "ok" } }
  - { name: assets, match: { path_prefix: /assets/ }, cluster: web, cache: {}, compression: {} }
  - { name: api, match: { path_prefix: /api/ }, cluster: api }
  - { name: web, cluster: web }
clusters:
  - name: web
    balancer: least_request
    hosts: [ { address: "127.0.0.1:$a" }, { address: "127.0.0.1:$b" } ]
  - name: api
    balancer: weighted_round_robin
    hosts: [ { address: "127.0.0.1:$a", weight: 3 }, { address: "127.0.0.1:$b" }, { address: "127.0.0.1:$down" } ]
    health_check: { active: { path: /health, interval: 1s, unhealthy_threshold: 1 } }
CONF
.build/debug/portico run -c "$tmp/portico.yaml" --log-level warning & pids+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$admin/readyz" 2>/dev/null && break; sleep 0.1; done

# A little traffic for 40 s: pages, cached assets, API calls, a few errors.
(
    end=$((SECONDS + 40))
    while [ $SECONDS -lt $end ]; do
        for path in / /page /api/items /api/users /assets/app.css /status/404 /delay/40 /status/503; do
            curl -s -o /dev/null "http://127.0.0.1:$listen$path" &
        done
        wait
        sleep 0.05
    done
) & pids+=($!)
sleep 12
mkdir -p "$(dirname "$OUT")"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1440,1000 \
    --virtual-time-budget=20000 --screenshot="$OUT" "http://127.0.0.1:$admin/" 2>/dev/null
echo "saved $OUT"
