#!/usr/bin/env python3
"""Where the two cores' time goes while the journal's writer works, waits or syncs.

    perf record -a -e sched:sched_switch -o sched.data -- sleep 2      # while wrk runs
    perf script -i sched.data -F cpu,time,event,trace | benchmarks/sched_phases.py

Replays the scheduler's switches to know, at every instant, what runs on each CPU (Herald's
event loops, its journal writer, Swift's pool, wrk, nothing) and what the writer is doing:
running, waiting for the disk (`D`, its `fdatasync`), or sleeping (gathering a batch, or no
work). Prints each phase's share of the CPUs' time and what ran in it. Under wrk this shows
the time a core sits idle while every connection waits for one commit (the writer running
alone, or syncing), which CPU per request alone does not.

The writer is GRDB's dispatch queue, run by dispatch's overcommit threads (`-qos.overcommit`,
which also run the checkpoint copy); the event loops are `NIO-SGLTN-…`; Swift's pool is
`…default-qos`.
"""
import collections
import re
import sys

SWITCH = re.compile(r"\[(\d+)\]\s+([\d.]+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) prev_prio=\d+ "
                    r"prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")


def role(comm):
    if "NIO" in comm:
        return "loops"
    if "overcommit" in comm:
        return "writer"
    if "default-qos" in comm:
        return "pool"
    if comm.startswith("wrk"):
        return "wrk"
    if comm.startswith("swapper"):
        return "idle"
    return "other"


def main():
    events = []
    for line in sys.stdin:
        m = SWITCH.match(line.strip())
        if m:
            events.append((float(m.group(2)), int(m.group(1)), m.group(3), int(m.group(4)), m.group(5),
                           m.group(6), int(m.group(7))))
    events.sort()
    if not events:
        sys.exit("no sched:sched_switch events on stdin")
    cpus = sorted({e[1] for e in events})
    writer = {}   # writer thread -> R (running or runnable), D (disk), S (sleeping)
    running = {}  # cpu -> role of what runs there
    share = collections.Counter()
    last = None
    for t, cpu, prev_comm, prev_pid, prev_state, next_comm, next_pid in events:
        if last is not None and len(running) == len(cpus):
            if any(s == "D" for s in writer.values()):
                phase = "writer syncing (D)"
            elif any(r == "writer" for r in running.values()):
                phase = "writer running"
            else:
                phase = "writer sleeping"
            for r in running.values():
                share[(phase, r)] += t - last
        last = t
        if role(prev_comm) == "writer":
            writer[prev_pid] = "D" if prev_state.startswith("D") else ("S" if prev_state.startswith(("S", "I")) else "R")
        if role(next_comm) == "writer":
            writer[next_pid] = "R"
        running[cpu] = role(next_comm)
    total = sum(share.values())
    phases = collections.Counter()
    for (phase, _), v in share.items():
        phases[phase] += v
    roles = ["loops", "writer", "pool", "wrk", "other", "idle"]
    print(f"{(events[-1][0] - events[0][0]):.2f} s on {len(cpus)} CPUs; % of all CPU time")
    print(f"{'phase':<20} {'share':>6}  " + " ".join(f"{r:>6}" for r in roles))
    for phase in ["writer sleeping", "writer running", "writer syncing (D)"]:
        print(f"{phase:<20} {100 * phases[phase] / total:5.1f}%  "
              + " ".join(f"{100 * share[(phase, r)] / total:6.1f}" for r in roles))
    print(f"{'all':<20} {100.0:5.1f}%  "
          + " ".join(f"{100 * sum(share[(p, r)] for p in phases) / total:6.1f}" for r in roles))


if __name__ == "__main__":
    main()
