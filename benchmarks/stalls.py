#!/usr/bin/env python3
"""Where a paced run's slow answers came from: its stalls, and the slow system calls beside them.

    PACED_TIMELINE=/tmp/tl.txt paced 127.0.0.1 PORT PATH 1000 20 50 REQUESTS.tsv ACKED.txt [LINES]
    strace -f -ttt -T -e trace=fsync,fdatasync,pwrite64 -p SERVER_PID -o /tmp/st.txt   # meanwhile
    benchmarks/stalls.py /tmp/tl.txt [/tmp/st.txt] [--over MS] [--show MS]

A stall is a run of requests answered slower than --over ms (5) whose waits overlap or follow
each other within 2 ms. Each stall of more than --show ms (15) is listed with its start (s
after the first scheduled send), how many requests it held, its slowest answer, and, given an
strace of the server with wall-clock times (-ttt) and durations (-T), the calls longer than
2 ms that overlap it, with their file descriptors (match them with ls -l /proc/PID/fd).
"""
import argparse
import re


def read_timeline(path):
    with open(path) as f:
        first = f.readline().split()
        if first[:2] != ["#", "start_unix_ns"]:
            raise SystemExit(f"{path}: not a paced timeline (no '# start_unix_ns' line)")
        start = int(first[2]) / 1e9
        rows = []
        for line in f:
            index, at, answer, _line, _status = line.split()
            rows.append((float(at) / 1e3, float(answer) / 1e3))
    return start, rows


def stalls(rows, over):
    found = []
    for at, answer in rows:
        if answer < 0 or answer * 1e3 <= over:
            continue
        begin, end = at, at + answer
        if found and begin <= found[-1]["end"] + 0.002:
            s = found[-1]
            s["end"] = max(s["end"], end)
            s["requests"] += 1
            s["slowest"] = max(s["slowest"], answer)
        else:
            found.append({"begin": begin, "end": end, "requests": 1, "slowest": answer})
    return found


CALL = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((\d+)?.*<(\d+\.\d+)>\s*$")
RESUMED = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+<\.\.\. (\w+) resumed>.*<(\d+\.\d+)>\s*$")


def read_strace(path, start):
    """Calls as (begin, seconds, name, fd, thread), times relative to the timeline's start."""
    calls, unfinished = [], {}
    with open(path) as f:
        for line in f:
            if line.rstrip().endswith("<unfinished ...>"):
                m = re.match(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((\d+)?", line)
                if m:
                    unfinished[(m.group(1), m.group(3))] = (float(m.group(2)), m.group(4) or "?")
                continue
            m = CALL.match(line)
            if m:
                calls.append((float(m.group(2)) - start, float(m.group(5)), m.group(3), m.group(4) or "?", m.group(1)))
                continue
            m = RESUMED.match(line)
            if m:
                begun, fd = unfinished.pop((m.group(1), m.group(3)), (float(m.group(2)) - float(m.group(4)), "?"))
                calls.append((begun - start, float(m.group(4)), m.group(3), fd, m.group(1)))
    return calls


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("timeline")
    p.add_argument("strace", nargs="?")
    p.add_argument("--over", type=float, default=5.0, help="a slow answer, in ms (5)")
    p.add_argument("--show", type=float, default=15.0, help="list stalls whose slowest answer passed this, in ms (15)")
    args = p.parse_args()
    start, rows = read_timeline(args.timeline)
    found = stalls(rows, args.over)
    slow = sum(s["requests"] for s in found)
    print(f"{len(rows)} requests, {slow} slower than {args.over:g} ms, in {len(found)} stalls")
    calls = read_strace(args.strace, start) if args.strace else []
    for s in found:
        if s["slowest"] * 1e3 <= args.show:
            continue
        beside = [c for c in calls if c[1] > 0.002 and c[0] < s["end"] and c[0] + c[1] > s["begin"] - 0.001]
        text = "; ".join(f"{name}({fd}) {seconds * 1e3:.1f} ms [thread {thread}]"
                         for _, seconds, name, fd, thread in beside[:6])
        print(f"{s['begin']:8.3f} s  {s['requests']:5d} requests  slowest {s['slowest'] * 1e3:7.1f} ms  {text}")


if __name__ == "__main__":
    main()
