#!/usr/bin/env python3
"""Runs `swift test` and ends it, with a diagnosis, if it stops making progress.

    scripts/test-watchdog.py [--stall SECONDS] [--limit SECONDS] swift test --skip-build

A test that never returns would otherwise hold CI until the runner's own timeout, with
nothing in the log to say which test it was: the test process writes its console output
through a buffer, so its last lines are lost when it is killed. This script asks Swift
Testing for its event stream (one JSON record per line, written as each test starts and
ends), passes the console output through unchanged, and watches the stream. When no test
has started or ended for `--stall` seconds once the run has begun, or the whole run passes `--limit`, it prints:

- the tests that started and did not end, with how long each has run;
- every thread's stack in the test process (gdb, when installed), which shows a thread
  blocked in a lock or a system call; tasks suspended in `await` have no thread to show;

then stops the run (SIGTERM to every process of its session, the servers the tests started
included, SIGKILL 10 s later) and exits with 124.
Otherwise it exits with the command's own status.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stall", type=float, default=300,
                        help="seconds without a test starting or ending (default 300)")
    parser.add_argument("--limit", type=float, default=1800,
                        help="seconds for the whole run (default 1800)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the test command: swift test and its options")
    arguments = parser.parse_args()
    if arguments.command[:1] == ["--"]:
        arguments.command = arguments.command[1:]
    if arguments.command[:2] != ["swift", "test"]:
        parser.error("the command must be `swift test ...` (its event stream is what is watched)")
    if arguments.stall <= 0 or arguments.limit <= 0:
        parser.error("--stall and --limit must be positive")
    return arguments


class EventStream:
    """Reads the records Swift Testing has appended to its event stream since the last call."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.names = {}        # test id -> display name, from the stream's "test" records
        self.running = {}      # test id -> time it started, for tests (not suites) not yet ended
        # When a test last started or ended; None until the run has begun (building, or
        # waiting for another SwiftPM's lock, is not a stall).
        self.last_change = None

    def read(self):
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self.offset)
                data = stream.read()
        except FileNotFoundError:
            return
        if not data:
            return
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            self.record(line)

    def record(self, line):
        try:
            record = json.loads(line)
        except ValueError:
            return
        payload = record.get("payload") or {}
        if record.get("kind") == "test":
            if payload.get("kind") != "suite":
                self.names[payload.get("id")] = payload.get("displayName") or payload.get("name") or payload.get("id")
            return
        kind = payload.get("kind")
        test = payload.get("testID")
        if kind in ("runStarted", "testStarted", "testEnded", "testCaseStarted", "testCaseEnded", "testSkipped"):
            self.last_change = time.monotonic()
        if test not in self.names:
            return
        if kind == "testStarted":
            self.running[test] = time.monotonic()
        elif kind in ("testEnded", "testSkipped"):
            self.running.pop(test, None)


def session_processes(session):
    """The processes of the run's session, with their command lines. Foundation starts each
    child in a process group of its own, so the run's group alone would leave them behind."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != session:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ProcessLookupError):
            continue
        found.append((int(entry), command))
    return found


def stop_session(session):
    """SIGTERM to every process of the session, SIGKILL to those left 10 s later."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 0)):
        for pid, _ in session_processes(session):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while session_processes(session) and time.monotonic() < deadline:
            time.sleep(0.2)


def diagnose(stream, session, reason):
    out = sys.stdout
    out.write(f"\n=== test-watchdog: {reason} ===\n")
    stream.read()
    now = time.monotonic()
    if stream.running:
        out.write("Tests that started and did not end:\n")
        for test, started in sorted(stream.running.items(), key=lambda item: item[1]):
            out.write(f"  {stream.names.get(test, test)}  ({test}), running for {now - started:.0f} s\n")
    else:
        out.write("No test is running: the process is stuck outside any test.\n")
    gdb = shutil.which("gdb")
    for pid in [pid for pid, command in session_processes(session) if ".xctest" in command]:
        if not gdb:
            out.write(f"(gdb is not installed: no thread stacks for process {pid})\n")
            continue
        out.write(f"--- every thread's stack in process {pid} ---\n")
        out.flush()
        try:
            result = subprocess.run([gdb, "-batch", "-nx", "-p", str(pid), "-ex", "set pagination off",
                                     "-ex", "thread apply all bt 40"],
                                    capture_output=True, text=True, timeout=120)
            text = result.stdout
        except subprocess.TimeoutExpired:
            text = "(gdb did not finish within 120 s)\n"
        # Keep the frames; drop gdb's notes about symbols it loads.
        out.write("\n".join(line for line in text.splitlines()
                            if line.startswith(("Thread ", "#")) or not line.strip()) + "\n")
    out.write(f"=== test-watchdog: stopped the run ({reason}) ===\n")
    out.flush()


def main():
    arguments = parse_arguments()
    directory = tempfile.mkdtemp(prefix="herald-test-events.")
    events = os.path.join(directory, "events.jsonl")
    command = arguments.command + ["--experimental-event-stream-output", events,
                                   "--experimental-event-stream-version", "0"]
    process = subprocess.Popen(command, start_new_session=True)
    stream = EventStream(events)
    started = time.monotonic()
    reason = None
    try:
        while True:
            try:
                status = process.wait(timeout=5)
                return status
            except subprocess.TimeoutExpired:
                pass
            stream.read()
            now = time.monotonic()
            if stream.last_change is not None and now - stream.last_change > arguments.stall:
                reason = f"no test started or ended for {arguments.stall:.0f} s"
            elif now - started > arguments.limit:
                reason = f"the run took longer than {arguments.limit:.0f} s"
            if reason:
                diagnose(stream, process.pid, reason)
                stop_session(process.pid)
                process.wait()
                return 124
    except KeyboardInterrupt:
        stop_session(process.pid)
        process.wait()
        return 130
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
