#!/usr/bin/env bash
# Runs README's "One minute walk-through" exactly as written, line by line and in order, in
# a fresh clone of this repository's HEAD (commit first), then checks what it printed.
#   scripts/readme-check.sh
# The clone builds from scratch, so this takes as long as a first build (several minutes).
# It needs port 8080 free, as the walk-through does.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
group=""
cleanup() {
  # The walk-through stops its own server; a run that failed halfway leaves it running. The
  # walk-through runs in its own process group, which is ended here by its id either way.
  if [ -n "$group" ]; then kill -TERM -- "-$group" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Another server on 8080 would answer the walk-through's requests in place of its own.
if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then
  echo "error: something already listens on 127.0.0.1:8080; stop it first" >&2
  exit 1
fi

git clone -q "$repo" "$work/herald"
cd "$work/herald"
awk '/^## One minute walk-through/ { section = 1 }
     section && /^```sh/ { block = 1; next }
     block && /^```/ { exit }
     block { print }' README.md > "$work/walkthrough.sh"
[ -s "$work/walkthrough.sh" ] || { echo "error: no sh block under '## One minute walk-through'" >&2; exit 1; }
echo "--- README walk-through, in $work/herald:"
cat "$work/walkthrough.sh"
echo "---"

status=0
# As a user's shell runs them: each command must succeed (-e), and a pipeline's status is
# its last command's (no pipefail: `| head` may end json.tool early with a broken pipe).
setsid timeout 3600 bash -eu "$work/walkthrough.sh" > "$work/output" 2>&1 &
group=$!
wait "$group" || status=$?
cat "$work/output"
[ "$status" -eq 0 ] || { echo "error: the walk-through failed (exit $status)" >&2; exit 1; }

expect() {
  grep -qF -- "$1" "$work/output" || { echo "error: the walk-through did not print: $1" >&2; exit 1; }
}
expect "0.3.0-dev ("
expect "202 Accepted {\"deliveries\":1,\"id\":\"evt_"
expect "\"title\": \"新しい予約: 山田 太郎 様 — "
expect "ゲスト: 山田 太郎 様"
if grep -q '\\u[0-9a-f]\{4\}' "$work/output"; then
  echo "error: the walk-through printed \\u escapes instead of the text" >&2
  exit 1
fi
echo "ok: README's walk-through runs as written"
