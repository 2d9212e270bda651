#!/usr/bin/env bash
# Builds herald-fuzz with libFuzzer and AddressSanitizer and runs every target (or the ones
# named) from its seed corpus: fuzz/seeds/<target>, plus the team's shared vectors and the
# example configurations.
#   fuzz/run.sh [--smoke | --runs N | --seconds S] [--release] [TARGET…]
#     --smoke       10,000 runs per target (what .ci/run does; about two minutes in all)
#     --runs N      N runs per target (default 1,000,000)
#     --seconds S   S seconds per target instead of a number of runs
#     --release     build optimised (slower to build, several times more runs per second)
#     --max-len N   longest input libFuzzer makes (default 8192)
# Prints, per target, the runs made, the time, and the corpus size; exits non-zero on the first
# crash, leaving the input that caused it in fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=1000000; seconds=""; config=debug; max_len=8192; targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) runs=10000 ;;
    --runs) runs=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --release) config=release ;;
    --max-len) max_len=$2; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || targets=(json signatures jicoo config retry-after smtp-reply mime)

# HERALD_FUZZ_BUILD=1 makes Package.swift give Herald's own targets libFuzzer's coverage and
# AddressSanitizer (one swiftc flag: swiftc keeps only the last -sanitize=). Dependencies keep
# their usual flags, so this build reuses the ones in .build and recompiles only Herald's
# modules. Those are then instrumented until the next plain `swift build` recompiles them.
HERALD_FUZZ_BUILD=1 swift build -c "$config" --product herald-fuzz 2>&1 \
  | grep -E "error|warning: .*fuzz/|Compiling herald|Build complete" || true
binary=".build/$config/herald-fuzz"
[ -x "$binary" ] || { echo "error: $binary was not built" >&2; exit 1; }

work=$(mktemp -d /tmp/herald-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p fuzz/crashes
shared=../shared/vectors
for t in "${targets[@]}"; do
  corpus="$work/$t"
  mkdir -p "$corpus"
  cp fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  case "$t" in
    json|jicoo|retry-after) [ -d "$shared/jicoo-events" ] && cp "$shared"/jicoo-events/*.json "$corpus"/ ;;
    config) cp examples/*.yaml "$corpus"/ ;;
    signatures)
      if [ -f "$shared/jicoo-signatures.jsonl" ]; then
        python3 - "$shared/jicoo-signatures.jsonl" "$corpus" <<'PY'
import base64, json, sys
for i, line in enumerate(open(sys.argv[1])):
    v = json.loads(line)
    open(f"{sys.argv[2]}/vector-{i}", "wb").write(v["header"].encode() + b"\n\n" + base64.b64decode(v["body_base64"]))
PY
      fi ;;
  esac
  limit=(-runs="$runs"); [ -n "$seconds" ] && limit=(-max_total_time="$seconds")
  log="$work/$t.log"
  if ! HERALD_FUZZ_TARGET=$t ASAN_OPTIONS=detect_leaks=0 "$binary" "${limit[@]}" -max_len="$max_len" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="fuzz/crashes/$t-" "$corpus" >"$log" 2>&1; then
    echo "FAIL $t: a crash; the input is in fuzz/crashes/ ($(ls fuzz/crashes | grep "^$t-" | tail -1))"
    grep -E "ERROR|Fatal error|precondition|SUMMARY" "$log" | head -5
    exit 1
  fi
  if grep -q "Is the code instrumented for coverage" "$log"; then
    echo "FAIL $t: libFuzzer sees no coverage; the build did not instrument Herald's code" >&2
    exit 1
  fi
  done_line=$(grep -E "^Done [0-9]+ runs" "$log" | tail -1)
  if [ -z "$done_line" ]; then
    echo "FAIL $t: libFuzzer did not report its runs; its output:" >&2
    tail -5 "$log" >&2
    exit 1
  fi
  execs=$(grep -E "stat::number_of_executed_units" "$log" | awk '{print $2}')
  corpus_size=$(ls "$corpus" | wc -l)
  echo "ok   $t: ${execs:-?} runs, no crash (${done_line:-}), corpus $corpus_size inputs"
done
