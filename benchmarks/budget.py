#!/usr/bin/env python3
"""Where a receiver's CPU goes, by stage, from `perf script` output (issue 13's budget).

    perf record -F 499 --call-graph=dwarf,16384 -p PID -o perf.data   # while wrk runs
    perf script -i perf.data -F comm,ip,sym,dso | benchmarks/budget.py > budget.json

Each sample (user or kernel) is charged to the stage whose code is nearest the sampled
instruction on its user-space call stack: a `write(2)` made by the file notifier is delivery,
the same call made by SwiftNIO is HTTP; `malloc` called from the JSON reader is decoding.
Helpers shared by several stages (JSONValue, ISO 8601, TimeText, strings, Foundation, the
allocator, reference counting) match no rule and so are charged to the stage that called them. What has
no stage on its stack at all (the Swift runtime switching tasks, dispatch waking threads,
futex waits) is `runtime`. run.sh multiplies each share by the CPU per request measured
without the profiler in the same run, so the stages add up to that figure.

DWARF unwinding is needed: glibc, libsqlite3 and OpenSSL are built without frame pointers, so
a frame-pointer stack from inside them loses every caller.

Output: {"samples": N, "stages": {stage: share}, "top": {stage: [[function, share], ...]}}.
"""
import collections
import json
import re
import sys

# (stage, pattern on a function's symbol, mangled as perf prints it). Checked frame by frame
# from the sampled instruction outwards; the first frame that matches any pattern decides.
STAGES = [
    ("render", r"HeraldCore8Renderer|Mustache"),
    ("delivery", r"HeraldCore10Dispatcher|FileNotifier|DeliverySlots|DeliveryQueue|AttemptDeadlines"
                 r"|HeraldPlugin0A12Notification"),
    ("journal", r"sqlite3|GRDB|SQLiteJournal|GroupCommit|SQLiteStatements|MemoryJournal"),
    ("verify", r"Signature|HeraldCore4HMAC|12herald_floor.*verify|12herald_floor.*unhex"
               r"|SHA256|sha256|EVP_|HMAC_|CRYPTO_|ossl_"),
    ("decode", r"JicooBody|JSONParser|decodeJicoo|EndpointV6decode|EventSourceO6decode|HeraldPlugin7BookingV"
               r"|EventV6makeID"),
    # Herald's channel handler reads requests and writes answers for SwiftNIO, as the
    # router's streams do: HTTP, like them (checked before the rest of HeraldApp).
    ("http", r"HeraldApp14WebhookChannel|HeraldApp10DateHeader"),
    # Herald's own work around a request: routing, the dedupe key, the booking snapshot, the
    # reminder plan, the bus, metrics, logs, its handler's answer.
    ("request", r"HeraldCore|HeraldApp|Logging|Metrics|Prometheus"),
    ("http", r"NIO|Hummingbird|HTTPTypes|12herald_floor"),
]
RULES = [(name, re.compile(pattern)) for name, pattern in STAGES]
# Herald's helpers that several stages call: never the deciding frame, so that their time goes
# to the caller (the times of a render, the dates of a decode, the JSON of a file line).
SHARED = re.compile(r"HeraldCore8TimeText|HeraldPlugin7ISO8601|HeraldPlugin9JSONValue|HeraldPlugin8JSONKeys")


def samples(lines):
    """(thread name, [(symbol, is_kernel)]) per sample of `perf script -F comm,ip,sym,dso`."""
    comm, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line[0].isspace():
            comm, frames = line.split()[0] if line.split() else "", []
        else:
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                frames.append((re.sub(r"\s*\([^)]*\)$", "", parts[1]), "[kernel.kallsyms]" in parts[1]))
    if comm is not None:
        yield comm, frames


def stage_of(frames):
    """The stage and the frame that decided it, or ("runtime", leaf)."""
    for symbol, kernel in frames:
        if kernel or SHARED.search(symbol):
            continue
        for name, rule in RULES:
            if rule.search(symbol):
                return name, symbol
    leaf = next((s for s, k in frames if not k), frames[0][0] if frames else "?")
    return "runtime", leaf


def main() -> None:
    counts = collections.Counter()
    tops = collections.defaultdict(collections.Counter)
    total = 0
    for _, frames in samples(sys.stdin):
        if not frames:
            continue
        total += 1
        stage, symbol = stage_of(frames)
        counts[stage] += 1
        # The sampled function itself, to say what a stage's time is spent on.
        leaf = frames[0][0] + (" (kernel)" if frames[0][1] else "")
        tops[stage][leaf[:100]] += 1
    if total == 0:
        sys.exit("budget.py: no samples in the input (was perf script given a perf.data with call graphs?)")
    json.dump({"samples": total,
               "stages": {k: round(v / total, 4) for k, v in counts.most_common()},
               "top": {k: [[s, round(v / total, 4)] for s, v in tops[k].most_common(5)] for k in counts}},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
