#!/usr/bin/env bash
# Fuzzes Portico's HTTP/1.1 request and response parsers with libFuzzer (Sources/PorticoFuzzHTTP1).
#
#   scripts/fuzz-http1-parser.sh [SECONDS] [extra libFuzzer flags...]    (default 60 s)
#
# Builds the fuzz target in its own scratch folder (.build-fuzz, kept out of git) with -sanitize=fuzzer,address,
# starts from the seed corpus in Fuzz/http1-request-corpus (every malformed class of the parser tests and a few
# valid requests), keeps what it learns in .build-fuzz/corpus, and writes crashing inputs to .build-fuzz/crashes.
# A crash is a failed property (see the target's comment): turn its input into a test in HTTP1RequestParserTests.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
export PORTICO_FUZZ=1
swift build --scratch-path .build-fuzz -c release --product PorticoFuzzHTTP1 \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
bin="$(swift build --scratch-path .build-fuzz -c release --show-bin-path)/PorticoFuzzHTTP1"
mkdir -p .build-fuzz/corpus .build-fuzz/crashes
"$bin" .build-fuzz/corpus Fuzz/http1-request-corpus Fuzz/http1-response-corpus \
    -max_total_time="$seconds" -max_len=4096 -timeout=5 -print_final_stats=1 \
    -artifact_prefix=.build-fuzz/crashes/ "$@"
