#!/usr/bin/env bash
# Herald's SMTP throughput next to Python smtplib's, against the same local aiosmtpd server.
#
#   benchmarks/smtp/run.sh [N]      (default N=2000; needs python3-aiosmtpd)
#
# Starts Tests/Support/smtp_server.py (plain, messages discarded), runs the HERALD_BENCH
# Swift test, then smtplib over one session, and prints messages/s for each.
#
# HERALD_BENCH_CONFIG=release builds the test in release mode. The default is debug because
# Swift 6.3.1's Swift Testing macros do not compile with -O ("global variable must be a
# compile-time constant to use @section attribute"), so debug numbers are a lower bound.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-2000}"
PY=/usr/bin/python3
work="$(mktemp -d)"
trap 'exec 3>&- 2>/dev/null || true; kill "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# The server exits when its stdin closes; keep a pipe to it open on fd 3.
mkfifo "$work/stdin"
"$PY" Tests/Support/smtp_server.py <"$work/stdin" >"$work/port" 2>"$work/server.log" &
server_pid=$!
exec 3>"$work/stdin"
for _ in $(seq 100); do grep -q '^PORT ' "$work/port" 2>/dev/null && break; sleep 0.1; done
port="$(awk '/^PORT /{print $2}' "$work/port")"
[ -n "$port" ] || { echo "smtp_server.py did not start:"; cat "$work/server.log"; exit 1; }

echo "aiosmtpd on 127.0.0.1:$port, N=$N"
HERALD_BENCH=1 HERALD_BENCH_PORT="$port" HERALD_BENCH_N="$N" HERALD_BENCH_OUT="$work/herald" \
    swift test -c "${HERALD_BENCH_CONFIG:-debug}" --filter SMTPBenchmark >"$work/swift.log" 2>&1 \
    || { tail -30 "$work/swift.log"; exit 1; }
cat "$work/herald"
"$PY" benchmarks/smtp/smtplib_bench.py "$port" "$N"
