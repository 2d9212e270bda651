#!/usr/bin/env bash
# Instruction counts of herald-bench under callgrind, for before/after comparisons of one change
# on a machine too noisy for times (benchmarks/README.md, "Profiling"). On demand, never a test.
#
#   benchmarks/callgrind.sh pipeline BIN [BIN2]   # user-space instructions per request of the
#                                                 # whole path, (3,000 - 1,000 requests) / 2,000;
#                                                 # with BIN2, the functions that differ most
#   benchmarks/callgrind.sh micro CASE BIN [BIN2] # one micro case (--quick), total instructions
#
# BIN is a release herald-bench, e.g. a copy of .build/release/herald-bench per commit; its debug
# information is stripped into a temporary copy (valgrind 3.19 cannot read Swift's DWARF 5).
# CONCURRENCY (10; 1 for the low-load path) and TOP (25) are read from the environment. The
# pipeline count moves by a few percent between runs of the same binary (which outcomes share
# an append's transaction depends on timing): alternate the binaries and compare several runs.
# Not 50 in flight: under valgrind, which runs one thread at a time, the dispatcher then falls
# behind and about 3 deliveries in 10 overflow into the journal, to be leased and decoded
# again, a path the server under wrk does not take (herald_queue_overflows_total stays 0).
set -euo pipefail

mode=${1:-}
case "$mode" in
    pipeline) [ $# -ge 2 ] || { sed -n '4,8p' "$0"; exit 2; }; shift; bins=("$@") ;;
    micro) [ $# -ge 3 ] || { sed -n '4,8p' "$0"; exit 2; }; case_name=$2; shift 2; bins=("$@") ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d /tmp/herald-callgrind.XXXXXX)
trap 'rm -rf "$work"' EXIT
concurrency=${CONCURRENCY:-10}

# run TAG BIN ARGS...: callgrind output in $work/TAG.out, prints the instructions collected.
run() {
    local tag=$1 bin=$2
    shift 2
    valgrind --tool=callgrind --callgrind-out-file="$work/$tag.out" "$bin" "$@" >/dev/null 2>"$work/$tag.log"
    grep -o "Collected : [0-9]*" "$work/$tag.log" | awk '{print $3}'
}

i=0
for bin in "${bins[@]}"; do
    [ -x "$bin" ] || { echo "error: $bin is not an executable" >&2; exit 1; }
    cp "$bin" "$work/bin$i"
    objcopy --strip-debug "$work/bin$i"
    if [ "$mode" = pipeline ]; then
        a=$(run "b$i.1000" "$work/bin$i" pipeline 1000 "$concurrency" 3000)
        b=$(run "b$i.3000" "$work/bin$i" pipeline 3000 "$concurrency" 3000)
        echo "$bin: $(( (b - a) / 2000 )) instructions per request, $concurrency in flight"
    else
        echo "$bin: $(run "b$i" "$work/bin$i" "$case_name" --quick) instructions, $case_name --quick"
    fi
    i=$((i + 1))
done

[ ${#bins[@]} -eq 2 ] || exit 0
# The functions whose own instructions differ most between the two binaries (per request for
# the pipeline), by name as callgrind_annotate prints it.
python3 - "$mode" "$work" "${TOP:-25}" <<'PY'
import collections, re, subprocess, sys
mode, work, top = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(path):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True, text=True).stdout
    costs, started = collections.Counter(), False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)$", line) if started else None
        if m:
            costs[re.sub(r"\s*\[[^\]]*\]\s*$", "", m.group(2)).replace("???:", "")] += int(m.group(1).replace(",", ""))
    return costs
def per_request(i):
    if mode == "micro":
        return load(f"{work}/b{i}.out")
    small, large = load(f"{work}/b{i}.1000.out"), load(f"{work}/b{i}.3000.out")
    return collections.Counter({k: (large[k] - small.get(k, 0)) / 2000 for k in large})
first, second = per_request(0), per_request(1)
diff = collections.Counter({k: second.get(k, 0) - first.get(k, 0) for k in set(first) | set(second)})
unit = "per request" if mode == "pipeline" else "in all"
print(f"\nsecond minus first, {unit}: {sum(diff.values()):+,.0f}")
ranked = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]
for name, delta in ranked:
    print(f"{delta:+12,.0f}  {name[:140]}")
PY
