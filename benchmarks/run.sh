#!/usr/bin/env bash
# Herald's benchmark suite (issues 6, 13): Herald (durable and in-memory journal) vs its floor
# (a bare Hummingbird receiver doing only the verification, benchmarks/Floor), a minimal aiohttp
# receiver and, on request, adnanh/webhook, side by side on 127.0.0.1, plus microbenchmarks.
# Run on demand, never as a test:
#
#   benchmarks/run.sh                 # install what is missing, build, run everything (~6 min)
#   benchmarks/run.sh --no-build      # reuse .build/release/{herald,herald-bench}, .build-floor
#   RECEIVERS="herald aiohttp" benchmarks/run.sh
#
# Writes docs/benchmarks/results.md, docs/benchmarks/throughput.png and the run's raw JSON in
# docs/benchmarks/raw/. BENCH_KEEP=1 keeps the work dir (configs, logs, output files).
# Knobs (environment): DURATION (wrk seconds, 10), THREADS (2), CONNS (50), RATE (1000 req/s),
# PACED_SECONDS (10), PACED_CONNS (50), WRK_BODIES (250000; WRK_BODIES_FLOOR 1300000 for the
# floor, which answers far more), HERALD_LOG (info),
# RECEIVERS (floor floor-append floor-nio aiohttp herald-memory herald; also webhook-sync webhook-async),
# HERALD_GROUP_COMMIT (true; false = one transaction and fsync per request),
# MICRO (1: run herald-bench and openssl speed), HERALD_CONCURRENCY (the file notifier's
# `concurrency:`; unset = Herald's default), BENCH_NOTE (a sentence printed in results.md),
# PROFILE ("floor herald": receivers profiled with perf in a third phase, for the per-stage
# CPU budget, benchmarks/budget.py; empty = none), PROFILE_SECONDS (5).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
DOCS="$ROOT/docs/benchmarks"
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
RATE=${RATE:-1000}
PACED_SECONDS=${PACED_SECONDS:-10}
PACED_CONNS=${PACED_CONNS:-50}
WRK_BODIES=${WRK_BODIES:-250000}
WRK_BODIES_FLOOR=${WRK_BODIES_FLOOR:-1300000}  # the floors answer 50-100,000 req/s, unevenly per wrk thread
RECEIVERS=${RECEIVERS:-"floor floor-append floor-nio aiohttp herald-memory herald"}
HERALD_LOG=${HERALD_LOG:-info}
MICRO=${MICRO:-1}
HERALD_CONCURRENCY=${HERALD_CONCURRENCY:-}
PROFILE=${PROFILE-"floor herald"}
PROFILE_SECONDS=${PROFILE_SECONDS:-5}
SECRET="bench-secret-$(date +%s)-$RANDOM"
BUILD=1
INSTALL=1
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        --no-install) INSTALL=0 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown option $arg" >&2; exit 2 ;;
    esac
done

log() { printf '\n== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# A work directory on a real disk (fsync on tmpfs would prove nothing).
WORK=$(mktemp -d /var/tmp/herald-bench.XXXXXX)
RESULTS="$WORK/results"
mkdir -p "$RESULTS" "$DOCS"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT INT TERM

# ---------------------------------------------------------------------------------------------
if [[ $INSTALL == 1 ]]; then
    need=()
    command -v wrk >/dev/null || need+=(wrk)
    [[ " $RECEIVERS " != *" webhook-"* ]] || command -v webhook >/dev/null || need+=(webhook)
    command -v cc >/dev/null || need+=(gcc)
    command -v curl >/dev/null || need+=(curl)
    [[ -z $PROFILE ]] || command -v perf >/dev/null || need+=(linux-perf)
    if ((${#need[@]})); then
        log "apt-get install ${need[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    if ! python3 -c 'import aiohttp, matplotlib' 2>/dev/null; then
        log "pip install aiohttp matplotlib"
        python3 -m pip install -q aiohttp matplotlib
    fi
fi
[[ " $RECEIVERS " != *" webhook-"* ]] || command -v webhook >/dev/null || { echo "missing webhook (run without --no-install)" >&2; exit 1; }
[[ -z $PROFILE ]] || command -v perf >/dev/null || { echo "missing perf (run without --no-install, or PROFILE=)" >&2; exit 1; }
for tool in wrk cc python3 openssl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (run without --no-install)" >&2; exit 1; }
done

cd "$ROOT"
if [[ $BUILD == 1 ]]; then
    log "swift build -c release (herald, herald-bench)"
    swift build -c release --product herald
    swift build -c release --product herald-bench
    if [[ " $RECEIVERS " == *" floor"* ]]; then
        log "swift build -c release (benchmarks/Floor, scratch path .build-floor)"
        swift build -c release --package-path benchmarks/Floor --scratch-path .build-floor
    fi
fi
BIN=${HERALD_BIN_DIR:-$ROOT/.build/release}
FLOOR_BIN=${FLOOR_BIN:-$ROOT/.build-floor/release/herald-floor}
if [[ " $RECEIVERS " == *" floor"* && ! -x $FLOOR_BIN ]]; then
    echo "no floor build at $FLOOR_BIN (run without --no-build)" >&2; exit 1
fi
if [[ " $RECEIVERS " == *" herald"* && ! -x $BIN/herald ]] || [[ $MICRO == 1 && ! -x $BIN/herald-bench ]]; then
    echo "no release build in $BIN (run without --no-build)" >&2; exit 1
fi
cc -O2 -Wall -o "$WORK/paced" "$HERE/paced.c"

JOURNAL="SQLite (durable)"  # storage.path in the config written below
python3 - "$RESULTS/meta.json" <<EOF
import json, os, platform, subprocess, sys, datetime
mem = int(open("/proc/meminfo").read().split()[1]) / 1048576
commit = subprocess.run(["git", "-C", "$ROOT", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
json.dump({"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(terse=True),
           "cores": os.cpu_count(), "mem_gib": round(mem), "loadavg": open("/proc/loadavg").read().split()[0],
           "herald_commit": commit, "journal": "$JOURNAL", "threads": $THREADS, "conns": $CONNS,
           "duration": $DURATION, "rate": $RATE, "paced_seconds": $PACED_SECONDS, "paced_conns": $PACED_CONNS,
           "note": os.environ.get("BENCH_NOTE", "")},
          open(sys.argv[1], "w"))
EOF

# ---------------------------------------------------------------------------------------------
if [[ $MICRO == 1 ]]; then
    log "microbenchmarks"
    "$BIN/herald-bench" | tee "$RESULTS/micro.jsonl" >&2
    # openssl speed counts CPU time; +F is bytes per second.
    OSSL_CMD="openssl speed -seconds 3 -bytes 1024 -hmac sha256"
    $OSSL_CMD -mr 2>/dev/null | awk -F: -v cmd="$OSSL_CMD" '/^\+F:/ { printf "{\"command\":\"%s\",\"bytes_per_s\":%s,\"ns_per_op\":%.1f}\n", cmd, $4, 1e9 * 1024 / $4 }' \
        | tee "$RESULTS/openssl.json" >&2
fi

# ---------------------------------------------------------------------------------------------
# Receivers. Each writes one line per accepted event to $WORK/<name>/out.jsonl.
start_herald() { # dir port storage(durable|memory)
    mkdir -p "$1"
    local storage="  path: ./herald-data"
    [[ $3 == memory ]] && storage="  memory: true"
    cat > "$1/herald.yaml" <<EOF
server:
  listen: "127.0.0.1:$2"
  maxBodyBytes: 1048576
storage:
$storage
  dedupeTTL: 7d
  groupCommit: ${HERALD_GROUP_COMMIT:-true}
log:
  level: $HERALD_LOG
  format: text
locale: ja
endpoints:
  - path: /hooks/jicoo
    source: jicoo
    secrets: ["$SECRET"]
    tolerance: 300s
notifiers:
  audit:
    kind: file
    path: ./out.jsonl
    fsync: false
${HERALD_CONCURRENCY:+    concurrency: $HERALD_CONCURRENCY}
routes:
  - events: ["*"]
    notify: [audit]
EOF
    "$BIN/herald" serve --config "$1/herald.yaml" --listen "127.0.0.1:$2" >"$1/herald.log" 2>&1 &
    PID=$!
}
start_floor() { # dir port append(true|false) [--nio]
    mkdir -p "$1"
    local out=()
    [[ $3 == true ]] && out=("$1/out.jsonl")
    "$FLOOR_BIN" ${4:+"$4"} "$2" "$SECRET" "${out[@]}" >"$1/floor.log" 2>&1 &
    PID=$!
}
start_aiohttp() {
    mkdir -p "$1"
    python3 "$HERE/aiohttp_receiver.py" --port "$2" --secret "$SECRET" --out "$1/out.jsonl" >"$1/aiohttp.log" 2>&1 &
    PID=$!
}
start_webhook() { # dir port sync(true|false)
    mkdir -p "$1"
    printf '#!/bin/sh\n# $1: output file, $2: the payload as JSON (one line)\nprintf "%%s\\n" "$2" >> "$1"\n' > "$1/append-line.sh"
    chmod +x "$1/append-line.sh"
    cat > "$1/hooks.json" <<EOF
[
  {
    "id": "jicoo",
    "execute-command": "$1/append-line.sh",
    "command-working-directory": "$1",
    "include-command-output-in-response": $3,
    "success-http-response-code": 202,
    "http-methods": ["POST"],
    "pass-arguments-to-command": [
      {"source": "string", "name": "$1/out.jsonl"},
      {"source": "entire-payload"}
    ],
    "trigger-rule": {
      "match": {
        "type": "payload-hmac-sha256",
        "secret": "$SECRET",
        "parameter": {"source": "header", "name": "X-Signature"}
      }
    }
  }
]
EOF
    webhook -hooks "$1/hooks.json" -ip 127.0.0.1 -port "$2" >"$1/webhook.log" 2>&1 &
    PID=$!
}

declare -A LABEL DESC URLPATH
LABEL[herald]="Herald, durable (release)"
DESC[herald]="\`herald serve\`, release build; journal: $JOURNAL (storage.path, group commit); file notifier (one JSON line per event, fsync off: the journal is the durable copy); log level $HERALD_LOG to a file; 202 after the journal append. Verifies Jicoo's t=/v1= signature (300 s tolerance) and decodes the event before answering."
LABEL[herald-memory]="Herald, memory journal (release)"
DESC[herald-memory]="The same with \`storage: { memory: true }\`: no SQLite, no fsync; everything else (verify, decode, route, render, file line) as the durable run, except that the router serves its webhooks (the memory journal cannot answer by callback, so the event loop does not): the difference to the durable row is the journal's cost less what the event loop saves."
LABEL[floor]="floor: Hummingbird, verify only"
DESC[floor]="\`benchmarks/Floor\` (\`herald-floor\`), release build: Hummingbird 2 on SwiftNIO as Herald uses it, reads the body, verifies the Jicoo signature (OpenSSL HMAC-SHA256, constant-time compare, 300 s tolerance), answers 202. What the HTTP stack and the verification cost on this machine: Herald cannot go below it."
LABEL[floor-append]="floor: verify + append"
DESC[floor-append]="The floor that also appends the body as one line (one write(2), O_APPEND, no fsync), as aiohttp does."
LABEL[floor-nio]="floor: SwiftNIO handler, verify + append"
DESC[floor-nio]="\`herald-floor --nio\`: the same work as the floor with append, served by one plain SwiftNIO channel handler on the event loop that read the request (no Hummingbird router, no async body or response stream, no hop to Swift's thread pool). What that work costs below Hummingbird's layers."
LABEL[aiohttp]="aiohttp (Python)"
DESC[aiohttp]="\`benchmarks/aiohttp_receiver.py\`, one process, asyncio: verifies the Jicoo signature with Herald's rules (hmac + compare_digest, 300 s tolerance), checks the body is a JSON object, appends it as one line (one write(2), no fsync), then 202."
LABEL[webhook-sync]="adnanh/webhook (sync)"
# webhook is installed only when asked for: without it the version is left out.
WEBHOOK_VERSION=$(command -v webhook >/dev/null && webhook -version 2>/dev/null | awk '{print $3}' || true)
DESC[webhook-sync]="Debian's \`webhook\` $WEBHOOK_VERSION, \`include-command-output-in-response: true\`: the command (a /bin/sh script appending the payload as one line) runs before the answer. Verifies \`payload-hmac-sha256\`: \`X-Signature: sha256=<hex HMAC-SHA256 of the body>\`, pre-computed by the load generator; it cannot read Jicoo's \`t=…,v1=…\` header, so it checks **no timestamp** and a MAC over the body only. Rule mismatch answers 200 with a message, not 401."
LABEL[webhook-async]="adnanh/webhook (default, async)"
DESC[webhook-async]="Same hook with webhook's default \`include-command-output-in-response: false\`: it answers 202 as soon as the rule matches and runs the command in a goroutine afterwards, so an acknowledged request may not have been written yet (or ever)."
URLPATH[herald]=/hooks/jicoo
URLPATH[herald-memory]=/hooks/jicoo
URLPATH[floor]=/hooks/jicoo
URLPATH[floor-append]=/hooks/jicoo
URLPATH[floor-nio]=/hooks/jicoo
URLPATH[aiohttp]=/hooks/jicoo
URLPATH[webhook-sync]=/hooks/jicoo
URLPATH[webhook-async]=/hooks/jicoo

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# The context switches of all of a process's threads, those that end meanwhile included, from
# switches_start PID FILE until switches_stop (perf stat; without perf, none are counted).
SWITCHES_PID=
switches_start() {
    SWITCHES_PID=
    command -v perf >/dev/null || return 0
    perf stat -x, -e context-switches -p "$1" -o "$2" >/dev/null 2>&1 &
    SWITCHES_PID=$!
    sleep 0.3  # perf attaches to each thread before counting
}
switches_stop() {
    [[ -n $SWITCHES_PID ]] || return 0
    kill -INT "$SWITCHES_PID" 2>/dev/null || true
    wait "$SWITCHES_PID" 2>/dev/null || true
}
# The whole machine's busy CPU (user, nice, system, irq, softirq, steal) in clock ticks, and the
# time: with the receiver's own ticks, what everything else ran meanwhile (noise, the client).
machine_mark() { echo "$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat):$(date +%s.%N)"; }

run_receiver() { # name
    local name=$1 dir="$WORK/$1" port short
    port=$(python3 "$HERE/bench.py" port)
    short=$(echo "$name" | tr -dc 'a-z' | cut -c1-3)
    log "$name on 127.0.0.1:$port"
    case $name in
        herald) start_herald "$dir" "$port" durable ;;
        herald-memory) start_herald "$dir" "$port" memory ;;
        floor) start_floor "$dir" "$port" false ;;
        floor-append) start_floor "$dir" "$port" true ;;
        floor-nio) start_floor "$dir" "$port" true --nio ;;
        aiohttp) start_aiohttp "$dir" "$port" ;;
        webhook-sync) start_webhook "$dir" "$port" true ;;
        webhook-async) start_webhook "$dir" "$port" false ;;
    esac
    local pid=$PID
    PIDS+=("$pid")
    python3 "$HERE/bench.py" wait-port "$port" 60
    sleep 1
    local url="http://127.0.0.1:$port${URLPATH[$name]}"

    # Smoke test: one signed request must be acknowledged, or the numbers mean nothing.
    python3 "$HERE/gen_bodies.py" --count 1 --tag "bk_${short}s_" --secret "$SECRET" --out "$dir/smoke.tsv"
    IFS=$'\t' read -r _ jsig xsig body < "$dir/smoke.tsv"
    code=$(curl -s -o "$dir/smoke.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -H "Jicoo-Webhook-Signature: $jsig" -H "X-Signature: $xsig" --data-binary "$body" "$url")
    [[ $code == 2* ]] || { echo "$name: smoke request answered $code: $(cat "$dir/smoke.out")" >&2; exit 1; }
    # Receivers that write lines: the file must exist before paced follows it.
    # (settle: wait until the lines stop growing; the floor without append writes none.)
    local lines=()
    settle() { if [[ $name == floor ]]; then echo '{}'; else python3 "$HERE/bench.py" settle "$dir/out.jsonl" "$@"; fi; }
    if [[ $name != floor ]]; then lines=("$dir/out.jsonl"); settle "bk_${short}s_" > /dev/null; fi

    # 1. Throughput: wrk with rotating distinct bodies, signed just now.
    local bodies=$WRK_BODIES
    [[ $name == floor* ]] && bodies=$WRK_BODIES_FLOOR
    python3 "$HERE/gen_bodies.py" --count "$bodies" --tag "bk_${short}w_" --secret "$SECRET" --out "$dir/wrk.tsv" \
        --wrk-threads "$THREADS" --url-path "${URLPATH[$name]}"
    log "$name: wrk -t$THREADS -c$CONNS -d${DURATION}s"
    local cpu0 cpu1 cpu2 cpuw
    switches_start "$pid" "$dir/wrk-switches.csv"
    cpu0=$(cpu_ticks "$pid")
    local mark0 mark1 mark2 markw
    mark0=$(machine_mark)
    BENCH_REQUESTS="$dir/wrk.tsv" BENCH_RESULT="$dir/wrk.json" \
        wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$HERE/rotate.lua" "$url" > "$dir/wrk.txt"
    markw=$(machine_mark)
    cpuw=$(cpu_ticks "$pid")
    cat "$dir/wrk.json" >&2
    local ok
    ok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok_2xx"])' "$dir/wrk.json")
    settle "bk_${short}w_" --ok "$ok" > "$dir/wrk-settle.json"
    cat "$dir/wrk-settle.json" >&2
    cpu1=$(cpu_ticks "$pid")
    mark1=$(machine_mark)
    switches_stop
    rm -f "$dir"/wrk.tsv*

    # 2. Latency at a fixed rate, measured from the scheduled send time.
    python3 "$HERE/gen_bodies.py" --count $((RATE * PACED_SECONDS)) --tag "bk_${short}p_" --secret "$SECRET" --out "$dir/paced.tsv"
    # What is still to be written (these bodies, the output of this receiver and of those
    # before it) goes to disk now, not in the kernel's write-back 30 s after it was written:
    # such a burst (250 MB in 0.2 s, measured) queues in front of a receiver's fsyncs and
    # stalled Herald's answers for 271-338 ms. Not the wrk bodies: removed above before the
    # kernel wrote them, they cost no write at all, where syncing them first would write
    # 300 MB that is then freed.
    sync
    switches_start "$pid" "$dir/paced-switches.csv"
    log "$name: paced $RATE req/s for ${PACED_SECONDS}s"
    "$WORK/paced" 127.0.0.1 "$port" "${URLPATH[$name]}" "$RATE" "$PACED_SECONDS" "$PACED_CONNS" "$dir/paced.tsv" "$dir/paced-acked.txt" "${lines[@]}" > "$dir/paced.json"
    cat "$dir/paced.json" >&2
    settle "bk_${short}p_" --acked "$dir/paced-acked.txt" > "$dir/paced-settle.json"
    cat "$dir/paced-settle.json" >&2
    cpu2=$(cpu_ticks "$pid")
    mark2=$(machine_mark)
    switches_stop
    python3 "$HERE/bench.py" cpu "$cpu0" "$cpu1" "$cpu2" "$dir/wrk.json" "$dir/paced.json" "$mark0" "$mark1" "$mark2" \
        --wrk-end "$markw" --wrk-end-ticks "$cpuw" --switches "$dir/wrk-switches.csv" "$dir/paced-switches.csv" > "$dir/cpu.json"
    cat "$dir/cpu.json" >&2
    rm -f "$dir/paced.tsv"

    python3 "$HERE/bench.py" proc "$pid" > "$dir/proc.json"
    cat "$dir/proc.json" >&2

    # 3. Where the CPU goes: wrk again under perf, samples charged to stages by their call
    # stacks (benchmarks/budget.py). Apart from the phases above, which it would slow.
    echo '{}' > "$dir/budget.json"
    if [[ " $PROFILE " == *" $name "* ]]; then
        # Tried twice: now and then perf records no samples at all (seen at ecb688b, cause not found).
        # The second try sends bodies of its own (the first's would be duplicates).
        local try
        for try in f g; do
            python3 "$HERE/gen_bodies.py" --count $((bodies / 2)) --tag "bk_${short}${try}_" --secret "$SECRET" --out "$dir/wrk.tsv" \
                --wrk-threads "$THREADS" --url-path "${URLPATH[$name]}"
            log "$name: wrk -d${PROFILE_SECONDS}s under perf record"
            perf record -q -F 499 --call-graph=dwarf,16384 -p "$pid" -o "$dir/perf.data" >"$dir/perf-record.log" 2>&1 &
            local perf_pid=$!
            sleep 1
            BENCH_REQUESTS="$dir/wrk.tsv" BENCH_RESULT="$dir/wrk-profile.json" \
                wrk -t"$THREADS" -c"$CONNS" -d"${PROFILE_SECONDS}s" --timeout 10s -s "$HERE/rotate.lua" "$url" > /dev/null
            settle "bk_${short}${try}_" > /dev/null
            kill -INT "$perf_pid" 2>/dev/null || true
            wait "$perf_pid" || true
            if perf script -i "$dir/perf.data" -F comm,ip,sym,dso 2>/dev/null | python3 "$HERE/budget.py" > "$dir/budget.tmp"; then
                break
            fi
            log "$name: no profile (perf record failed; perf_event_paranoid, or a container without perf events?)"
            tail -n 5 "$dir/perf-record.log" >&2 || true
            echo '{}' > "$dir/budget.tmp"
        done
        mv "$dir/budget.tmp" "$dir/budget.json"
        rm -f "$dir"/wrk.tsv* "$dir/perf.data" "$dir/perf-record.log"
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true

    python3 - "$RESULTS/$name.json" "$dir" "$name" "${LABEL[$name]}" "${DESC[$name]}" <<'EOF'
import json, sys
out, d, name, label, desc = sys.argv[1:]
j = lambda f: json.load(open(f"{d}/{f}"))
r = {"name": name, "label": label, "description": desc, "wrk": j("wrk.json"), "wrk_settle": j("wrk-settle.json"),
     "paced": j("paced.json"), "paced_settle": j("paced-settle.json"), "cpu": j("cpu.json"), "budget": j("budget.json")}
r.update(j("proc.json"))
json.dump(r, open(out, "w"), indent=1)
EOF
}

for r in $RECEIVERS; do run_receiver "$r"; done

log "report"
python3 "$HERE/bench.py" report "$RESULTS" "$DOCS"
rm -rf "$DOCS/raw" && mkdir -p "$DOCS/raw" && cp "$RESULTS"/*.json* "$DOCS/raw/"
log "done: $DOCS/results.md, $DOCS/throughput.png, raw JSON in $DOCS/raw"
if [[ -n ${BENCH_KEEP:-} ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
