#!/usr/bin/env python3
"""Which b-trees a SQLite journal's commits write: WAL frames per commit, by table or index.

    BENCH_KEEP=1 .build/release/herald-bench pipeline 2000 10
    benchmarks/wal_pages.py /tmp/herald-bench-<pid>/kept

DIR holds `journal.sqlite` and `journal.sqlite-wal` as they were before the journal closed
(`herald-bench pipeline` with BENCH_KEEP=1 copies them to `kept/`; closing checkpoints the WAL
and deletes it). Reads the frames SQLite appended since the WAL last started over, maps each
frame's page to its b-tree with the `dbstat` table of Debian's sqlite3 shell, and prints the
frames each commit wrote, on average, per b-tree. `sqlite_schema` is page 1, which holds the
database's size: a commit that grows the file writes it.

On demand, never a test. Needs the `sqlite3` command (apt-get install sqlite3).
"""
import collections
import os
import shutil
import struct
import subprocess
import sys
import tempfile


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    directory = sys.argv[1]
    wal = open(os.path.join(directory, "journal.sqlite-wal"), "rb").read()
    if len(wal) < 32:
        sys.exit("the WAL is empty: nothing was committed since it last started over")
    _, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">IIIIIIII", wal[:32])
    frames = []
    offset = 32
    while offset + 24 + page_size <= len(wal):
        page, commit_size, frame_salt1, frame_salt2 = struct.unpack(">IIII", wal[offset:offset + 16])
        if (frame_salt1, frame_salt2) != (salt1, salt2):
            break  # left over from before the WAL started over
        frames.append((page, commit_size != 0))
        offset += 24 + page_size
    work = tempfile.mkdtemp()
    try:
        for name in ("journal.sqlite", "journal.sqlite-wal"):
            shutil.copy(os.path.join(directory, name), os.path.join(work, name))
        listing = subprocess.run(["sqlite3", os.path.join(work, "journal.sqlite"), "SELECT pageno, name FROM dbstat"],
                                 capture_output=True, text=True, check=True).stdout
    finally:
        shutil.rmtree(work)
    owner = {}
    for line in listing.splitlines():
        page, _, name = line.partition("|")
        owner[int(page)] = name
    commits = sum(1 for _, ends in frames if ends)
    if commits == 0:
        sys.exit("no complete commit in the WAL")
    by_tree = collections.Counter(owner.get(page, "(free or new)") for page, _ in frames)
    print(f"page size {page_size}, {len(frames)} frames in {commits} commits: "
          f"{len(frames) / commits:.1f} frames, {len(frames) * (page_size + 24) / commits / 1024:.1f} KiB per commit")
    for name, count in by_tree.most_common():
        print(f"{count / commits:6.2f}  {name}")


if __name__ == "__main__":
    main()
