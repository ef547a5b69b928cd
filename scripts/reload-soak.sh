#!/usr/bin/env bash
# Holds 1,000 WebSockets and 1,000 idle keep-alive clients open through 60 reloads (one a second, alternating
# a header rule and a cluster's hosts), then checks every one of them still works and reports memory.
#
#   scripts/reload-soak.sh [RELOADS] [CONNECTIONS]     (defaults 60 and 1000; builds the release binary if needed)
#
# Everything is on 127.0.0.1 with free ports; every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
RELOADS=${1:-60}
N=${2:-1000}
BIN=${PORTICO:-$PWD/.build/release/portico}
[ -x "$BIN" ] || swift build -c release --product portico
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
a=$(port); b=$(port); listen=$(port)
write_config() {  # generation
    local hosts="[ { address: \"127.0.0.1:$a\" }, { address: \"127.0.0.1:$b\" } ]"
    [ $(( $1 % 2 )) = 1 ] && hosts="[ { address: \"127.0.0.1:$a\" } ]"
    cat > "$tmp/portico.yaml.new" <<CONF
workers: 2
demo_origins: [ { name: origin-a, address: "127.0.0.1:$a" }, { name: origin-b, address: "127.0.0.1:$b" } ]
listeners: [ { name: public, address: "127.0.0.1:$listen", timeouts: { idle: 10m } } ]
access_log: { destination: "off" }
routes: [ { cluster: c, response_headers: { set: { X-Generation: "$1" } } } ]
clusters: [ { name: c, hosts: $hosts, timeouts: { read: 10m } } ]
CONF
    mv "$tmp/portico.yaml.new" "$tmp/portico.yaml"
}
write_config 0
"$BIN" run -c "$tmp/portico.yaml" --log-level warning & pid=$!; pids+=($pid)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$listen/" 2>/dev/null && break; sleep 0.1; done

python3 - "$listen" "$N" "$RELOADS" "$pid" "$tmp/portico.yaml" "$a" "$b" <<'PY'
import asyncio, os, signal, sys
port, n, reloads, pid, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
a, b = sys.argv[6], sys.argv[7]

def write_config(generation):
    """The same shape as the shell's first config: a header rule and a cluster's hosts change each time."""
    hosts = f'[ {{ address: "127.0.0.1:{a}" }} ]' if generation % 2 else f'[ {{ address: "127.0.0.1:{a}" }}, {{ address: "127.0.0.1:{b}" }} ]'
    text = open(path).read().split("routes:")[0]
    text += f'routes: [ {{ cluster: c, response_headers: {{ set: {{ X-Generation: "{generation}" }} }} }} ]\n'
    text += f'clusters: [ {{ name: c, hosts: {hosts}, timeouts: {{ read: 10m }} }} ]\n'
    with open(path + ".new", "w") as f:
        f.write(text)
    os.replace(path + ".new", path)

def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def frame(payload: bytes) -> bytes:
    mask = b"\x12\x34\x56\x78"
    head = bytes([0x81, 0x80 | len(payload)])
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return int(head.split(b" ")[1])

async def open_ws():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return r, w

async def open_idle():
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /idle HTTP/1.1\r\nHost: t\r\n\r\n")
    assert await read_response(r) == 200
    return r, w

async def check_ws(c):
    r, w = c
    try:
        w.write(frame(b"ping"))
        data = await asyncio.wait_for(r.readexactly(6), 10)
        return data == b"\x81\x04ping"
    except Exception:
        return False

async def check_idle(c):
    r, w = c
    try:
        w.write(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        return await asyncio.wait_for(read_response(r), 10) == 200
    except Exception:
        return False

async def main():
    sem = asyncio.Semaphore(200)
    async def guarded(f):
        async with sem:
            return await f()
    ws = await asyncio.gather(*[guarded(open_ws) for _ in range(n)])
    idle = await asyncio.gather(*[guarded(open_idle) for _ in range(n)])
    samples = [rss_kib()]
    print(f"opened {len(ws)} WebSockets and {len(idle)} idle keep-alive connections; RSS {samples[0]} KiB", flush=True)
    for g in range(1, reloads + 1):
        write_config(g)
        os.kill(pid, signal.SIGHUP)
        await asyncio.sleep(1)
        samples.append(rss_kib())
    # The last config is in force: a new request carries its header.
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head = await r.readuntil(b"\r\n\r\n")
    print("last generation served:", f"x-generation: {reloads}".encode() in head.lower())
    ws_ok = sum(await asyncio.gather(*[check_ws(c) for c in ws]))
    idle_ok = sum(await asyncio.gather(*[check_idle(c) for c in idle]))
    print(f"after {reloads} reloads: WebSockets {ws_ok}/{n} working ({n - ws_ok} dropped), "
          f"idle keep-alive {idle_ok}/{n} working ({n - idle_ok} dropped)")
    print(f"RSS KiB: after opening {samples[0]}, after reload 1 {samples[1]}, after the last {samples[-1]}, max {max(samples)}")
    sys.exit(0 if ws_ok == n and idle_ok == n else 1)

asyncio.run(main())
PY
