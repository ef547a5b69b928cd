#!/usr/bin/env bash
# The cost of edge protection per request (issue 10): one Portico process, one worker pinned to CPU 0, two routes
# to the same origin, driven in turn by wrk (pinned to CPU 1 with the origin):
#   /plain/    no filters
#   /guarded/  an IP rule (allow 127.0.0.0/8), a JWT check (ES256) and a rate limit (local, far above the load)
# The guarded route runs twice: every request with the same token (the usual client: Portico remembers a
# verified token, so this is a lookup) and every request with a different token (each one a full ES256 check).
# Reported: Portico's CPU-seconds per 100k requests, read from /proc before and after each run.
#
#   scripts/bench-edge-filters.sh [SECONDS]     (needs nginx, wrk, python3 with `cryptography`; a release build)
#
# Everything is on 127.0.0.1 and every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
PORTICO=${PORTICO:-$PWD/.build/release/portico}
[ -x "$PORTICO" ] || { echo "build first: swift build -c release" >&2; exit 1; }
for tool in nginx wrk taskset; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }; done
python3 -c 'import cryptography' 2>/dev/null || { echo "needs python3 -m pip install cryptography" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)
origin_port=$(port); portico_port=$(port)

mkdir -p "$tmp/logs"
cat > "$tmp/origin.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $tmp/origin.pid; error_log $tmp/logs/origin.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$origin_port; keepalive_requests 1000000; location / { return 200 "ok\n"; } } }
CONF

# An ES256 key, its public half for Portico, one token, and 200k distinct tokens for wrk to rotate through.
python3 - "$tmp" <<'PY'
import base64, json, sys, time
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
d = sys.argv[1]
key = ec.generate_private_key(ec.SECP256R1())
open(f"{d}/es256.pem", "wb").write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
def token(sub):
    payload = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}).encode())
    r, s = decode_dss_signature(key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{header}.{payload}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
open(f"{d}/token", "w").write(token("bench"))
with open(f"{d}/tokens.lua", "w") as f:
    f.write("tokens = {\n" + ",\n".join(f'"{token(f"user-{i}")}"' for i in range(200000)) + "}\n")
    f.write('i = 0\nrequest = function()\n  i = i % #tokens + 1\n  return wrk.format("GET", "/guarded/x", { ["Authorization"] = "Bearer " .. tokens[i] })\nend\n')
PY

cat > "$tmp/portico.yaml" <<CONF
workers: 1
listeners: [ { name: main, address: "127.0.0.1:$portico_port" } ]
access_log: { destination: "off" }
forwarding: { request_id: false }
routes:
  - { match: { path_prefix: /plain/ }, cluster: origin }
  - match: { path_prefix: /guarded/ }
    cluster: origin
    ip_rules: { allow: [ 127.0.0.0/8 ] }
    auth: { jwt: { keys: [ { algorithm: ES256, file: "$tmp/es256.pem" } ], forward_claims: { sub: X-User } } }
    rate_limits: [ { key: client_ip, rate: 10000000, per: 1s } ]
clusters: [ { name: origin, hosts: [ { address: "127.0.0.1:$origin_port" } ] } ]
CONF

taskset -c 1 nginx -c "$tmp/origin.conf" -p "$tmp" & pids+=($!)
taskset -c 0 "$PORTICO" run --config "$tmp/portico.yaml" --log-level warning & portico=$!; pids+=($portico)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$portico_port/plain/" && break; sleep 0.1; done

token=$(cat "$tmp/token")
run() {  # name, wrk args...
    local name=$1; shift
    taskset -c 1 wrk -t1 -c16 -d2s "$@" >/dev/null  # warm-up
    local before; before=$(cpu_ticks "$portico")
    local out; out=$(taskset -c 1 wrk -t1 -c16 -d"${SECONDS_PER_RUN}s" "$@")
    local after; after=$(cpu_ticks "$portico")
    local requests; requests=$(echo "$out" | awk '/requests in/ { print $1 }')
    local errors; errors=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
    python3 -c "import sys; t=($after-$before)/$ticks_per_second; n=$requests; print(f'{sys.argv[1]:<34} {n/$SECONDS_PER_RUN:>9.0f} req/s  {t/n*1e5:6.2f} CPU-s/100k  non-2xx: ${errors:-0}')" "$name"
}
echo "Portico, one worker on CPU 0; wrk -t1 -c16 and the origin on CPU 1; ${SECONDS_PER_RUN}s per run"
run "plain (no filters)" "http://127.0.0.1:$portico_port/plain/x"
run "guarded, one token (remembered)" -H "Authorization: Bearer $token" "http://127.0.0.1:$portico_port/guarded/x"
run "guarded, a new token each request" -s "$tmp/tokens.lua" "http://127.0.0.1:$portico_port/guarded/x"
run "plain again" "http://127.0.0.1:$portico_port/plain/x"
