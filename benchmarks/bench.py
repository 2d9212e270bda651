#!/usr/bin/env python3
"""Helpers for run.sh: free ports, readiness, counting written lines, peak RSS, the report.

  bench.py port                                   a free TCP port on 127.0.0.1
  bench.py wait-port PORT [SECONDS]               until something accepts on 127.0.0.1:PORT
  bench.py settle FILE TAG [--acked F] [--ok N]   wait until the lines for TAG stop growing,
                                                  then print {"lines", "lost", "extra", ...}
  bench.py proc PID                               {"vmhwm_kb", "vmrss_kb", "cpu_s"} of a process
  bench.py cpu T0 T1 T2 WRK.json PACED.json       CPU µs per request of each phase from clock ticks
  bench.py report RESULTS_DIR OUT_DIR             results.md + throughput.png
"""
import json
import os
import re
import socket
import sys
import time


def free_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait_port(port: int, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def uids_in(path: str, tag: str) -> list[str]:
    """Every uid of this phase found in the output file, one per line that has one."""
    pattern = re.compile(re.escape(tag).encode() + rb"\d{8}")
    out = []
    try:
        with open(path, "rb") as f:
            for line in f:
                m = pattern.search(line)
                if m:
                    out.append(m.group().decode())
    except FileNotFoundError:
        pass
    return out


def settle(path: str, tag: str, acked_file: str | None, ok: int | None, quiet: float = 2.0, limit: float = 150) -> None:
    """Waits until the number of lines for `tag` has not changed for `quiet` seconds (at most
    `limit`), then compares them with what was acknowledged.

    lost  = acknowledged (2xx) requests without a line. With an acked-uid file (paced runs)
            this is exact; with only a count (wrk) it is max(0, ok - lines).
    extra = lines for requests the client never saw a 2xx for (e.g. in flight when wrk stopped).
    """
    start = time.time()
    last, since = -1, time.time()
    while True:
        n = len(uids_in(path, tag))
        if n != last:
            last, since = n, time.time()
        elif time.time() - since >= quiet or time.time() - start >= limit:
            break
        time.sleep(0.25)
    written = uids_in(path, tag)
    result = {"lines": len(written), "unique_lines": len(set(written)), "settle_s": round(time.time() - start, 1)}
    if acked_file:
        with open(acked_file) as f:
            acked = {l.strip() for l in f if l.strip()}
        have = set(written)
        result["acked"] = len(acked)
        result["lost"] = len(acked - have)
        result["extra"] = len(have - acked)
        result["lost_exact"] = True
    elif ok is not None:
        result["acked"] = ok
        result["lost"] = max(0, ok - len(set(written)))
        result["extra"] = max(0, len(set(written)) - ok)
        result["lost_exact"] = False
    print(json.dumps(result))


def proc(pid: int) -> None:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k.lower() + "_kb"] = int(v.split()[0])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    out["cpu_s"] = round((int(fields[11]) + int(fields[12])) / tick, 2)  # utime + stime
    print(json.dumps(out))


def perf_count(path: str, event: str) -> int | None:
    """The count of `event` in `perf stat -x,` output; None without one (no perf, not counted)."""
    if not path or not os.path.exists(path):
        return None
    for line in open(path):
        fields = line.strip().split(",")
        if len(fields) > 2 and fields[2] == event and fields[0].isdigit():
            return int(fields[0])
    return None


def machine_mark(mark: str) -> tuple[int, float]:
    """A mark from run.sh's `machine_mark`, `busy:seconds`: the machine's busy ticks and the time."""
    busy, seconds = mark.split(":")
    return int(busy), float(seconds)


def cpu(t0: int, t1: int, t2: int, wrk_json: str, paced_json: str, marks: list[str], switches: list[str],
        wrk_end: str | None = None, wrk_end_ticks: int | None = None) -> None:
    """Server CPU per request: the receiver's utime+stime over a phase, from just before the load
    until its lines stopped growing (so a delivery backlog is charged to the requests that made
    it), divided by the requests answered in that phase. With the machine's busy ticks and the
    time at the same points (`busy:seconds`), also the cores everything else used meanwhile:
    the load generator, and whatever else ran on the machine (a noisy run shows here). With the
    machine's mark when wrk ended (`wrk_end`), the share of the CPUs' time nothing ran while wrk
    did: a receiver that keeps its clients waiting on something other than the CPU (a commit's
    fsync) leaves cores idle, and its throughput is below what its CPU per request allows. With
    the receiver's ticks at that mark too (`wrk_end_ticks`), what everything but the receiver (the
    load generator, mostly) spent per request while wrk ran, for the ceiling in results.md."""
    tick = os.sysconf("SC_CLK_TCK")
    w, p = json.load(open(wrk_json)), json.load(open(paced_json))
    wrk_n = max(1, w.get("requests", 0))
    paced_n = max(1, p.get("answered", 0))
    out = {"wrk_cpu_s": round((t1 - t0) / tick, 2), "wrk_us_per_req": round((t1 - t0) / tick * 1e6 / wrk_n, 1),
           "paced_cpu_s": round((t2 - t1) / tick, 2), "paced_us_per_req": round((t2 - t1) / tick * 1e6 / paced_n, 1)}
    # Context switches of the receiver's threads over each phase (perf stat, run.sh), per request:
    # what a request costs in thread wake-ups, which a virtual machine makes dear.
    for phase, path, n in zip(("wrk", "paced"), switches, (wrk_n, paced_n)):
        switches = perf_count(path, "context-switches")
        if switches is not None:
            out[f"{phase}_switches_per_req"] = round(switches / n, 2)
    if len(marks) == 3:
        (b0, s0), (b1, s1), (b2, s2) = [machine_mark(m) for m in marks]
        out["wrk_other_cores"] = round(((b1 - b0) - (t1 - t0)) / tick / max(s1 - s0, 1e-9), 2)
        out["paced_other_cores"] = round(((b2 - b1) - (t2 - t1)) / tick / max(s2 - s1, 1e-9), 2)
        if wrk_end:
            bw, sw = machine_mark(wrk_end)
            capacity = (os.cpu_count() or 1) * max(sw - s0, 1e-9)
            out["wrk_idle_share"] = round(max(0.0, 1 - (bw - b0) / tick / capacity), 3)
            if wrk_end_ticks is not None:
                # Within wrk's run only: not the settling wait after it, nor the receiver's backlog.
                out["wrk_other_us_per_req"] = round(((bw - b0) - (wrk_end_ticks - t0)) / tick * 1e6 / wrk_n, 1)
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------------
def dups(r) -> int:
    return sum(r.get(k, {}).get("lines", 0) - r.get(k, {}).get("unique_lines", 0) for k in ("wrk_settle", "paced_settle"))


def fmt(x, digits=1):
    return "–" if x is None else f"{x:,.{digits}f}"


STAGE_LABELS = {
    "http": "HTTP: SwiftNIO and Hummingbird (sockets, parsing, the answer)",
    "verify": "verification: the signature header, HMAC-SHA256, the compare",
    "decode": "decoding: the JSON reader, the booking",
    "request": "Herald's request work: routing, dedupe key, booking snapshot, reminder plan, bus, metrics, logs",
    "journal": "journal: SQLite statements, commits, WAL writes, fsync (GRDB's writer)",
    "render": "rendering the notification",
    "delivery": "delivery: dispatcher, the file line, handing the outcome over",
    "runtime": "no stage on the stack: Swift task switches, thread wake-ups, futex",
}


# Receivers that run on one core whatever the machine has.
ONE_CORE = {"aiohttp"}


def ceiling_section(L: list, rows: list, by: dict, meta: dict) -> None:
    """The most requests a second the machine's cores allow each receiver with every core busy:
    cores ÷ (the receiver's CPU per request in the wrk phase, its backlog included, + what the
    rest of the machine, the load generator mostly, ran per request while wrk did). A receiver
    below its ceiling leaves cores idle (the idle column); one at it is bound by CPU, and only
    a lower CPU per request, its own or wrk's, raises its throughput."""
    cores = meta.get("cores")
    known = [r for r in rows if r.get("cpu", {}).get("wrk_us_per_req") and r["cpu"].get("wrk_other_us_per_req") is not None]
    if not cores or not known:
        return
    L.append("## What the CPU allows (same run)\n")
    L.append("| receiver | CPU µs/req | load generator and others while wrk ran, µs/req | at most req/s, every core busy | measured req/s | share of it |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for r in known:
        own, other = r["cpu"]["wrk_us_per_req"], max(0.0, r["cpu"]["wrk_other_us_per_req"])
        ceiling = cores * 1e6 / (own + other)
        if r["name"] in ONE_CORE:
            ceiling = min(ceiling, 1e6 / own)
        L.append(f"| {r['label']} | {own:,.1f} | {other:,.1f} | {ceiling:,.0f} | {r['wrk']['rps']:,.0f} | {r['wrk']['rps'] / ceiling * 100:.0f} % |")
    L.append("")
    L.append(f"At most req/s = the {cores} cores' time divided by the CPU one request costs the receiver (its CPU µs/req "
             "above, backlog included) and everything else together (wrk, and anything else that ran, from the machine's "
             "busy time while wrk ran less the receiver's); for a receiver that runs on one core (aiohttp: one process, "
             "one event loop), at most 1,000,000 ÷ its µs per request if that is lower. Below 100 %, cores sat idle while "
             "the receiver's clients waited (the idle column); near it, only less CPU per request, the receiver's or "
             "wrk's, raises the rate; above it, the receiver left work for after wrk (a backlog: *lines done after wrk*).")
    L.append("")
    h, a = by.get("herald"), by.get("aiohttp")
    if h in known and a:
        target = 2 * a["wrk"]["rps"]
        other = max(0.0, h["cpu"]["wrk_other_us_per_req"])
        needed = cores * 1e6 / target - other
        L.append(f"Twice aiohttp's rate ({target:,.0f} req/s) leaves, with every core busy and wrk at "
                 f"{other:,.1f} µs per request, {needed:,.1f} µs of CPU per request for Herald; it used "
                 f"{h['cpu']['wrk_us_per_req']:,.1f}.")
    L.append("")


def budget_section(L: list, rows: list) -> None:
    """Per-stage CPU per request (benchmarks/budget.py): each stage's share of the samples of
    the profiled phase times the CPU per request measured without the profiler (wrk phase)."""
    profiled = [r for r in rows if r.get("budget", {}).get("stages")]
    if not profiled:
        return
    L.append("## Where the CPU goes, by stage (perf, same run)\n")
    L.append("| stage | " + " | ".join(f"{r['label']}: µs/req (share)" for r in profiled) + " | most sampled functions (" + profiled[-1]["label"] + ") |")
    L.append("|---|" + "---:|" * len(profiled) + "---|")
    stages = [s for s in STAGE_LABELS if any(s in r["budget"]["stages"] for r in profiled)]
    for stage in stages:
        cells = []
        for r in profiled:
            share = r["budget"]["stages"].get(stage)
            us = r.get("cpu", {}).get("wrk_us_per_req")
            cells.append("–" if share is None or us is None else f"{share * us:,.1f} ({100 * share:.0f} %)")
        top = profiled[-1]["budget"].get("top", {}).get(stage, [])[:3]
        names = ", ".join(f"`{name[:60]}` {100 * share:.1f} %" for name, share in top)
        L.append(f"| {STAGE_LABELS[stage]} | " + " | ".join(cells) + f" | {names} |")
    totals = " | ".join(fmt(r.get("cpu", {}).get("wrk_us_per_req")) for r in profiled)
    L.append(f"| **all (CPU µs/req, wrk)** | {totals} | |")
    samples = ", ".join(f"{r['label']} {r['budget']['samples']:,}" for r in profiled)
    L.append("")
    L.append("A third phase per profiled receiver: wrk as above under `perf record -F 499 --call-graph=dwarf` "
             f"(samples: {samples}). Each sample, in user space or the kernel, is charged to the stage nearest the "
             "sampled instruction on its call stack (`benchmarks/budget.py`): the allocator, reference counting and "
             "system calls count for the stage that called them. Shares times the CPU per request of the wrk phase, "
             "measured without the profiler. Percentages of the most sampled functions are of all samples.\n")


def report(results_dir: str, out_dir: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = json.load(open(os.path.join(results_dir, "meta.json")))
    order = ["floor", "floor-append", "floor-nio", "aiohttp", "herald-memory", "herald", "webhook-sync", "webhook-async"]
    rows = []
    for name in order:
        p = os.path.join(results_dir, f"{name}.json")
        if os.path.exists(p):
            rows.append(json.load(open(p)))
    by = {r["name"]: r for r in rows}
    micro = {}
    mp = os.path.join(results_dir, "micro.jsonl")
    if os.path.exists(mp):
        for line in open(mp):
            line = line.strip()
            if line.startswith("{"):
                d = json.loads(line)
                micro[d["name"]] = d
    openssl = json.load(open(os.path.join(results_dir, "openssl.json"))) if os.path.exists(os.path.join(results_dir, "openssl.json")) else {}

    L = []
    L.append("# Herald benchmark results\n")
    L.append(f"Run {meta['date']} on {meta['machine']} ({meta['cores']} cores, {meta['mem_gib']} GiB), "
             f"load average before the run {meta['loadavg']}. Herald {meta['herald_commit']}, "
             f"journal: **{meta['journal']}**. Produced by `benchmarks/run.sh`; see `benchmarks/README.md` "
             "for what each number means.\n")
    if meta.get("note"):
        L.append(f"**Note:** {meta['note']}\n")
    L.append(f"Throughput: `wrk -t{meta['threads']} -c{meta['conns']} -d{meta['duration']}s`, distinct pre-signed ~1 KB "
             f"bodies. Latency: `paced` at a fixed {meta['rate']} req/s for {meta['paced_seconds']} s over "
             f"{meta['paced_conns']} connections, measured from each request's scheduled send time "
             "(no coordinated omission).\n")
    L.append("| receiver | wrk req/s | wrk p50 / p99 ms | CPU µs/req (wrk) | × floor CPU | paced achieved req/s "
             "| paced p50 / p90 / p99 ms | paced max ms | paced send → line p99 ms | CPU µs/req (paced) "
             "| peak RSS MB | lost (wrk / paced) | duplicate lines | lines done after wrk, s | non-2xx + errors "
             "| other processes, cores (wrk / paced) | CPUs idle during wrk | context switches per request (wrk / paced) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    floor_us = by.get("floor", {}).get("cpu", {}).get("wrk_us_per_req")
    for r in rows:
        w, p, c = r.get("wrk", {}), r.get("paced", {}), r.get("cpu", {})
        bad = w.get("non_2xx", 0) + w.get("socket_errors", 0) + p.get("non_2xx", 0) + p.get("errors", 0) + p.get("timeouts", 0)
        us = c.get("wrk_us_per_req")
        times_floor = f"{us / floor_us:.2f}×" if us and floor_us else "–"
        e2e = fmt(p.get("e2e_p99_ms"), 2) + (f" ({p['e2e_missing']} missing)" if p.get("e2e_missing") else "")
        settle_s = r.get("wrk_settle", {}).get("settle_s")
        # wrk ran out of distinct bodies and sent some again: lines repeat, so the wrk run's
        # lost and duplicate counts mean nothing (the paced run's still do).
        repeated = w.get("wrapped", 0) > 0 and r.get("wrk_settle", {}).get("lines") is not None
        wrk_lost = "repeated bodies" if repeated else r.get('wrk_settle', {}).get('lost', '–')
        idle = f"{c['wrk_idle_share'] * 100:.0f} %" if c.get("wrk_idle_share") is not None else "–"
        dup = dups(r) if not repeated else r.get("paced_settle", {}).get("lines", 0) - r.get("paced_settle", {}).get("unique_lines", 0)
        L.append(f"| {r['label']} | {fmt(w.get('rps'), 0)} | {fmt(w.get('p50_ms'), 2)} / {fmt(w.get('p99_ms'), 2)} "
                 f"| {fmt(us)} | {times_floor} "
                 f"| {fmt(p.get('achieved_rps'), 0)} | {fmt(p.get('p50_ms'), 2)} / {fmt(p.get('p90_ms'), 2)} / {fmt(p.get('p99_ms'), 2)} "
                 f"| {fmt(p.get('max_ms'), 1)} | {e2e} | {fmt(c.get('paced_us_per_req'))} | {fmt(r.get('vmhwm_kb', 0) / 1024, 1)} "
                 f"| {wrk_lost} / {r.get('paced_settle', {}).get('lost', '–')} "
                 f"| {dup} | {fmt(None if settle_s is None else max(0.0, settle_s - 2), 0)} "
                 f"| {bad} | {fmt(c.get('wrk_other_cores'), 2)} / {fmt(c.get('paced_other_cores'), 2)} "
                 f"| {idle} "
                 f"| {fmt(c.get('wrk_switches_per_req'), 2)} / {fmt(c.get('paced_switches_per_req'), 2)} |")
    L.append("")
    L.append("CPU µs/req = user+system CPU of the receiver's process over a phase, from just before the load until its "
             "output file stopped growing (a delivery backlog is charged to the requests that caused it), divided by the "
             "requests answered (webhook: its own process only, not the shells it forks). × floor CPU = the same over the "
             "floor's figure in this run. Paced send → line = from a request's scheduled send time until `paced` saw its "
             "line in the receiver's output file (inotify), over the acknowledged requests. "
             "Lost = requests answered 2xx for which no line was written after a settling wait (wrk: 2xx count minus "
             "lines; paced: exact, by uid). Duplicate lines = lines for a uid already written (the same event delivered "
             "twice). Lines done after wrk = how long after wrk stopped the output file stopped growing (the delivery "
             "backlog). Peak RSS = VmHWM of the receiver's process at the end of both runs. Other processes = the "
             "machine's busy CPU over the phase minus the receiver's, in cores: the load generator (at Herald's rates "
             "about 0.3 for wrk and 0.1-0.25 for `paced`, settling included, on a quiet machine) and anything else that "
             "ran inside this machine (a virtual machine's host is not seen); the receiver's ticks and the machine's are "
             "counted apart, so a few tenths either way are noise. CPUs idle during wrk = the share of all the machine's CPU "
             "time in which nothing ran, from just before wrk started until it ended: cores left idle while every "
             "connection waits on something else (for Herald, a commit's fsync), so throughput is below what the CPU "
             "per request would allow. Context switches per request = "
             "the switches of all the receiver's threads over the same phase (`perf stat -e context-switches`), "
             "divided by the requests answered: each is a thread that went to sleep or was preempted, and each "
             "wake-up costs CPU, more so in a virtual machine.\n")

    # Goals
    L.append("## Goals (same run)\n")
    L.append("| goal | measured | met? |")
    L.append("|---|---|---|")
    h = by.get("herald")

    def ok(b):
        return "yes" if b else "**no**"
    if h:
        hw = h["wrk"]["rps"]
        hus = h.get("cpu", {}).get("wrk_us_per_req")
        if "aiohttp" in by:
            ratio = hw / by["aiohttp"]["wrk"]["rps"]
            L.append(f"| Herald ≥ 2× aiohttp req/s | {ratio:.2f}× ({hw:,.0f} vs {by['aiohttp']['wrk']['rps']:,.0f}) | {ok(ratio >= 2)} |")
            aus = by["aiohttp"].get("cpu", {}).get("wrk_us_per_req")
            if hus and aus:
                L.append(f"| Herald CPU per webhook ≤ aiohttp's | {hus:,.1f} vs {aus:,.1f} µs ({hus / aus:.2f}×) | {ok(hus <= aus)} |")
        if hus and floor_us:
            L.append(f"| Herald CPU per webhook ≤ 2× the floor's | {hus:,.1f} vs {floor_us:,.1f} µs ({hus / floor_us:.2f}×) | {ok(hus <= 2 * floor_us)} |")
        for wname in ("webhook-sync", "webhook-async"):
            if wname in by:
                ratio = hw / by[wname]["wrk"]["rps"]
                L.append(f"| Herald ≥ 10× adnanh/webhook ({wname}) req/s | {ratio:.1f}× ({hw:,.0f} vs {by[wname]['wrk']['rps']:,.0f}) | {ok(ratio >= 10)} |")
        p99 = h["paced"]["p99_ms"]
        L.append(f"| p99 of the 202 ≤ 5 ms at {meta['rate']} req/s | {p99:.2f} ms | {ok(p99 <= 5 and h['paced'].get('timeouts', 0) == 0)} |")
        if "e2e_p99_ms" in h["paced"]:
            e = h["paced"]["e2e_p99_ms"]
            L.append(f"| p99 send → line in the file ≤ 10 ms at {meta['rate']} req/s | {e:.2f} ms | {ok(e <= 10 and not h['paced'].get('e2e_missing'))} |")
        lost = h.get("wrk_settle", {}).get("lost", 0) + h.get("paced_settle", {}).get("lost", 0)
        L.append(f"| 0 lost | {lost} | {ok(lost == 0)} |")
        L.append(f"| 0 duplicate lines | {dups(h)} | {ok(dups(h) == 0)} |")
        rss = h.get("vmhwm_kb", 0) / 1024
        L.append(f"| RSS ≤ 64 MB under load | {rss:.1f} MB | {ok(rss <= 64)} |")
    if openssl.get("ns_per_op"):
        for key, what in (("hmac_sha256_1k", "HMAC-SHA256 of 1 KB (`HMAC.Key.mac`)"),
                          ("jicoo_verify_1k", "whole `JicooSignature.verify` of 1 KB")):
            if key in micro:
                v = micro[key]["ns_per_op"]
                ratio = v / openssl["ns_per_op"]
                L.append(f"| {what} within 1.3× of `openssl speed` | {ratio:.2f}× ({v:,.0f} ns vs {openssl['ns_per_op']:,.0f} ns) | {ok(ratio <= 1.3)} |")
    L.append("")

    ceiling_section(L, rows, by, meta)
    budget_section(L, rows)

    if micro:
        L.append("## Microbenchmarks (`herald-bench`, CPU time per operation, median of 7 rounds)\n")
        L.append("| benchmark | ns/op | ops/s |")
        L.append("|---|---:|---:|")
        names = {
            "jicoo_verify_1k": "`JicooSignature.verify`, 1 KB body (header parse + HMAC + compare)",
            "hmac_sha256_1k": "`HMAC.Key.mac` alone, 1 KB (context dup + update + final)",
            "jicoo_decode_1k": "`EventSource.jicoo.decode`, 1 KB body",
            "json_parse_1k": "`JSONValue.parse`, the same body as a whole tree (a payload on first use, generic webhooks)",
            "render_ja": "`Renderer().render(event, locale: .ja)`",
            "render_ja_text": "the same without the HTML body (file and chat notifiers)",
            "json_line_1k": "the file line's JSON: the rendered text and the 1 KB body as `raw`",
            "dedupe_key": "`EventSource.jicoo.dedupeKey(for:)`",
        }
        for k, label in names.items():
            if k in micro:
                ns = micro[k]["ns_per_op"]
                L.append(f"| {label} | {ns:,.0f} | {1e9 / ns:,.0f} |")
        if openssl.get("ns_per_op"):
            L.append(f"| `{openssl['command']}` | {openssl['ns_per_op']:,.0f} | {1e9 / openssl['ns_per_op']:,.0f} |")
        L.append("")

    L.append("## Receivers\n")
    for r in rows:
        L.append(f"- **{r['label']}**: {r['description']}")
    L.append("")
    L.append("![throughput and latency](throughput.png)\n")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(L))

    # Chart: throughput (wrk) and paced latency percentiles, side by side.
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    import textwrap
    labels = [textwrap.fill(r["label"], 18) for r in rows]
    rps = [r["wrk"]["rps"] for r in rows]
    colors = ["#d9480f" if r["name"].startswith("herald") else "#868e96" for r in rows]
    bars = a1.bar(labels, rps, color=colors)
    a1.bar_label(bars, labels=[f"{v:,.0f}" for v in rps], fontsize=9)
    a1.set_title(f"Throughput: wrk -t{meta['threads']} -c{meta['conns']} -d{meta['duration']}s (req/s, higher is better)", fontsize=10)
    a1.tick_params(axis="x", labelsize=8)
    import numpy as np
    x = np.arange(len(rows))
    width = 0.27
    for k, (key, name) in enumerate([("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99")]):
        vals = [max(r["paced"][key], 0.01) for r in rows]
        a2.bar(x + (k - 1) * width, vals, width, label=name)
    a2.set_yscale("log")
    a2.set_ylim(bottom=0.1)
    a2.axhline(5, color="red", linestyle="--", linewidth=1, label="5 ms goal")
    a2.set_xticks(x)
    a2.set_xticklabels(labels, fontsize=8)
    a2.set_title(f"Latency at a fixed {meta['rate']} req/s (ms, log scale, lower is better)", fontsize=10)
    a2.legend(fontsize=8)
    fig.suptitle(f"Herald vs baselines, {meta['date']}, {meta['cores']} cores, journal: {meta['journal']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "throughput.png"), dpi=110)


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "port":
        free_port()
    elif cmd == "wait-port":
        wait_port(int(args[0]), float(args[1]) if len(args) > 1 else 60)
    elif cmd == "settle":
        acked = ok = None
        if "--acked" in args:
            acked = args[args.index("--acked") + 1]
        if "--ok" in args:
            ok = int(args[args.index("--ok") + 1])
        settle(args[0], args[1], acked, ok)
    elif cmd == "proc":
        proc(int(args[0]))
    elif cmd == "cpu":
        switches = args[args.index("--switches") + 1:args.index("--switches") + 3] if "--switches" in args else []
        wrk_end = args[args.index("--wrk-end") + 1] if "--wrk-end" in args else None
        wrk_end_ticks = int(args[args.index("--wrk-end-ticks") + 1]) if "--wrk-end-ticks" in args else None
        cpu(int(args[0]), int(args[1]), int(args[2]), args[3], args[4], args[5:8], switches, wrk_end, wrk_end_ticks)
    elif cmd == "report":
        report(args[0], args[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
