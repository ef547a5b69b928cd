#!/usr/bin/env bash
# A real browser opens a WebSocket over HTTP/2 (RFC 8441) through Portico.
#
# Starts `portico run` (release build) with a TLS listener, a built-in demo origin (its /ws echoes) and a page
# served by a route; headless Chromium loads the page over h2, the page opens wss://…/ws on the same connection,
# sends a message and shows the echo. Passes when the echo arrives and the access log shows /ws over HTTP/2.
# Needs: chromium, openssl, python3 (apt-get install -y chromium openssl python3). Everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release/portico
[ -x "$bin" ] || swift build -c release
dir=$(mktemp -d)
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$dir"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen=$(free_port)
origin=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key.pem" -out "$dir/cert.pem" \
    -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
cat > "$dir/portico.yaml" <<YAML
workers: 1
demo_origins: [ { name: origin, address: "127.0.0.1:$origin" } ]
listeners:
  - name: tls
    address: "127.0.0.1:$listen"
    tls: { certificates: [ { cert_file: "$dir/cert.pem", key_file: "$dir/key.pem" } ] }
routes:
  - match: { path: /page }
    respond:
      status: 200
      content_type: "text/html; charset=utf-8"
      body: |
        <!doctype html><html><body><div id="out">waiting</div><script>
        fetch("/delay/2000");  // keeps the page busy, so headless Chromium waits for the WebSocket's echo
        const ws = new WebSocket("wss://" + location.host + "/ws");
        ws.onopen = () => ws.send("hello from chromium");
        ws.onmessage = (e) => { document.getElementById("out").textContent = "ECHO:" + e.data; ws.close(); };
        ws.onerror = () => { document.getElementById("out").textContent = "ERROR"; };
        </script></body></html>
  - cluster: web
clusters: [ { name: web, hosts: [ { address: "127.0.0.1:$origin" } ] } ]
access_log: { format: combined, destination: stdout }
YAML
"$bin" run --config "$dir/portico.yaml" > "$dir/portico.log" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q "listener" "$dir/portico.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
dom=$(timeout 60 chromium --headless=new --no-sandbox --disable-gpu --ignore-certificate-errors \
    --host-resolver-rules="MAP localhost 127.0.0.1" --user-data-dir="$dir/chromium" --virtual-time-budget=5000 \
    --dump-dom "https://localhost:$listen/page" 2>/dev/null || true)
sleep 0.3
echo "page: $(grep -o '<div id="out">[^<]*' <<<"$dom" | sed 's/<div id="out">//')"
grep -E '"CONNECT /ws ' "$dir/portico.log" || true
if grep -q 'ECHO:hello from chromium' <<<"$dom" && grep -q '"CONNECT /ws HTTP/2.0" 200' "$dir/portico.log"; then
    echo "PASS: WebSocket over HTTP/2 through Portico"
else
    echo "FAIL"; cat "$dir/portico.log"; exit 1
fi
