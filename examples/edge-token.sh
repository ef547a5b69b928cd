#!/bin/sh
# Prints a JWT for examples/edge.yaml's /jwt/ route: HS256 with the key in examples/edge-jwt.secret,
# sub = $1 (default "demo"), valid for an hour. Needs only openssl and base64.
set -eu
here=$(dirname "$0")
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
payload=$(printf '{"sub":"%s","exp":%d}' "${1:-demo}" $(( $(date +%s) + 3600 )) | b64url)
sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -mac HMAC -macopt "key:$(cat "$here/edge-jwt.secret")" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$sig"
