#!/usr/bin/env bash
# Checks packaging/portico.service with `systemd-analyze verify` (Debian's systemd), against a portico binary at
# the path the unit names (a temporary copy of this build's binary, removed afterwards when it was not there).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "needs systemd-analyze (apt-get install -y systemd)" >&2; exit 1; }
bin=.build/debug/portico
[ -x "$bin" ] || swift build --product portico
placed=""
if [ ! -e /usr/local/bin/portico ]; then
    cp "$bin" /usr/local/bin/portico
    placed=yes
fi
trap '[ -n "$placed" ] && rm -f /usr/local/bin/portico' EXIT
out=$(systemd-analyze verify packaging/portico.service 2>&1 || true)
# verify also reports on units the host lacks (it runs outside a booted system here); only the unit's own lines count.
own=$(printf '%s\n' "$out" | grep -E 'portico\.service' || true)
if [ -n "$own" ]; then
    printf '%s\n' "$own"
    echo "systemd-analyze verify: problems in packaging/portico.service" >&2
    exit 1
fi
echo "packaging/portico.service: verified"
