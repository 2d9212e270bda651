#!/usr/bin/env bash
# The PostgreSQL journal's benchmarks (issue 15), on demand, never as a test:
#
#   benchmarks/postgres/run.sh        # HERALD=path/to/herald to pick the binary (default: debug build)
#
# Runs inside scripts/test-postgres.sh with fsync on (a throwaway server on a real disk).
# 1. Ingest: wrk -t2 -c50 -d10s with distinct pre-signed Jicoo bodies against one herald serve on
#    SQLite, then on PostgreSQL, in the same run (file notifier).
# 2. Scale-out: N pending deliveries (default 2000) put straight into the database, then drained
#    by 1, 2 and 3 instances into a local HTTP target that takes 20 ms per request (webhook
#    notifier, concurrency 4 per instance); the time from starting the instances to the last
#    request at the target.
# Knobs: HERALD, DURATION (10), N (2000).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ -z "${HERALD_TEST_POSTGRES_URL:-}" ]; then
  HERALD_TEST_POSTGRES_FSYNC=on exec bash "$ROOT/scripts/test-postgres.sh" bash "$0" "$@"
fi
HERALD=${HERALD:-$ROOT/.build/debug/herald}
DURATION=${DURATION:-10}
N=${N:-2000}
SECRET="bench-$RANDOM$RANDOM"
PSQL="$HERALD_TEST_POSTGRES_BIN/psql -X -q -v ON_ERROR_STOP=1"
WORK=$(mktemp -d /var/tmp/herald-pgbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
log() { printf '== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

new_database() {   # prints the URL of a new database
  local name="bench_$RANDOM$RANDOM"
  $PSQL -d "$HERALD_TEST_POSTGRES_URL" -c "CREATE DATABASE $name"
  echo "${HERALD_TEST_POSTGRES_URL%/*}/$name"
}

wait_for_port() {   # log file; prints the port herald listens on
  for _ in $(seq 400); do
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$1" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && { echo "$port"; return; }
    sleep 0.05
  done
  echo "herald did not start: $(cat "$1")" >&2; exit 1
}

# --- 1. Ingest -------------------------------------------------------------------------------
ingest() {   # name, storage line
  local dir="$WORK/ingest-$1"; mkdir -p "$dir"
  cat > "$dir/herald.yaml" <<EOF
storage: $2
log: { level: notice }
endpoints: [{ path: /hooks/jicoo, secrets: ["$SECRET"] }]
notifiers:
  audit: { kind: file, path: ./out.jsonl }
routes:
  - { events: ["*"], notify: [audit] }
EOF
  DATABASE_URL="${3:-}" "$HERALD" serve --config "$dir/herald.yaml" --listen 127.0.0.1:0 > "$dir/herald.log" 2>&1 &
  PIDS+=($!)
  local port; port=$(wait_for_port "$dir/herald.log")
  python3 "$ROOT/benchmarks/gen_bodies.py" --count 200000 --tag "bk_$1_" --secret "$SECRET" --out "$dir/wrk.tsv" \
    --wrk-threads 2 --url-path /hooks/jicoo
  BENCH_REQUESTS="$dir/wrk.tsv" BENCH_RESULT="$dir/wrk.json" \
    wrk -t2 -c50 -d"${DURATION}s" --timeout 10s -s "$ROOT/benchmarks/rotate.lua" "http://127.0.0.1:$port/hooks/jicoo" > "$dir/wrk.txt"
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  printf '%s\t%s req/s\t(%s)\n' "$1" "$(awk '/Requests\/sec/ {print $2}' "$dir/wrk.txt")" \
    "$(grep -o '"non2xx":[0-9]*' "$dir/wrk.json" || echo "non2xx unknown")"
}

log "ingest: SQLite, then PostgreSQL (wrk -t2 -c50 -d${DURATION}s)"
ingest sqlite "{ path: ./journal }"
pg=$(new_database)
ingest postgres '{ postgres: { url: "${DATABASE_URL}", poolSize: 8 } }' "$pg"

# --- 2. Scale-out ----------------------------------------------------------------------------
python3 "$HERE/slow_target.py" "$WORK/target.port" & PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/target.port" ] && break; sleep 0.05; done
target_port=$(cat "$WORK/target.port")
body=$(cat "$ROOT/../shared/vectors/jicoo-events/guest_booked.json")

scale() {   # instances
  local k=$1 dir="$WORK/scale-$1"; mkdir -p "$dir"
  local url; url=$(new_database)
  cat > "$dir/herald.yaml" <<EOF
storage: { postgres: { url: "\${DATABASE_URL}", poolSize: 8 } }
log: { level: notice }
endpoints: [{ path: /hooks/jicoo, secrets: ["$SECRET"] }]
notifiers:
  target: { kind: webhook, url: "http://127.0.0.1:$target_port/in", concurrency: 4 }
routes:
  - { events: ["*"], notify: [target] }
EOF
  DATABASE_URL=$url "$HERALD" journal migrate --config "$dir/herald.yaml" > /dev/null
  $PSQL -d "$url" -v body="$body" -v n="$N" <<'SQL'
INSERT INTO herald_events (id, endpoint, name, received_at, body)
  SELECT 'evt_bench_' || g, '/hooks/jicoo', 'guest_booked', now(), convert_to(:'body', 'UTF8') FROM generate_series(1, :n) g;
INSERT INTO herald_deliveries (event_id, notifier, state, attempts, due_at, updated_at)
  SELECT 'evt_bench_' || g, 'target', 'pending', 0, now(), now() FROM generate_series(1, :n) g;
SQL
  local before; before=$(curl -s "http://127.0.0.1:$target_port/count")
  local start; start=$(date +%s.%N)
  local first=${#PIDS[@]}
  for i in $(seq "$k"); do
    DATABASE_URL=$url "$HERALD" serve --config "$dir/herald.yaml" --listen 127.0.0.1:0 > "$dir/herald-$i.log" 2>&1 &
    PIDS+=($!)
  done
  while [ $(( $(curl -s "http://127.0.0.1:$target_port/count") - before )) -lt "$N" ]; do sleep 0.05; done
  local end; end=$(date +%s.%N)
  for p in "${PIDS[@]:$first}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  local seconds; seconds=$(echo "$end - $start" | bc -l)
  printf '%d instance(s)\t%.2f s\t%.0f deliveries/s\n' "$k" "$seconds" "$(echo "$N / $seconds" | bc -l)"
}

log "scale-out: $N deliveries, 20 ms each, concurrency 4 per instance"
for k in 1 2 3; do scale "$k"; done
