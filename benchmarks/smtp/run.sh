#!/usr/bin/env bash
# Herald's SMTP throughput next to Python smtplib's, against the same local aiosmtpd server.
#
#   benchmarks/smtp/run.sh [N]      (default N=2000; needs python3-aiosmtpd)
#
# Starts Tests/Support/smtp_server.py (plain, messages discarded), runs `herald-bench smtp`
# (release build: Herald's SMTP client over one connection, then four pooled ones), then
# Python's smtplib over one session, and prints messages/s for each.
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
if [ ! -x .build/release/herald-bench ]; then
    swift build -c release --product herald-bench >"$work/swift.log" 2>&1 || { tail -30 "$work/swift.log"; exit 1; }
fi
.build/release/herald-bench smtp "$port" "$N"
"$PY" benchmarks/smtp/smtplib_bench.py "$port" "$N"
