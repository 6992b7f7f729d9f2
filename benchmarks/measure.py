"""Timing a command in a fresh process: wall seconds and peak RSS, shared by the benchmarks that compare processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Runs the job and writes its wall time and peak RSS. A small process in between, because a child's ru_maxrss starts
# from the high-water mark of the process it was forked from (Linux keeps it across exec): from a benchmark that has
# built its inputs in memory, every job would look at least as large as the benchmark itself.
WRAPPER = """import json, os, sys, time
start = time.perf_counter()
_, status, usage = os.wait4(os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ), 0)
with open(sys.argv[1], "w") as f:
    json.dump({"seconds": time.perf_counter() - start, "peak_rss_bytes": usage.ru_maxrss * 1024,
               "cpu_seconds": usage.ru_utime + usage.ru_stime}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(cmd: list[str], log_path: str) -> dict:
    """Run `cmd` in a fresh process: wall seconds, and its peak RSS and CPU seconds (with its descendants) from
    wait4. On a shared machine the wall time includes waiting for the others; the CPU seconds over the threads used
    estimate it on idle cores."""
    env = dict(os.environ, TQDM_MININTERVAL="10", HF_HUB_OFFLINE="1")
    with open(log_path, "w") as log:
        done = subprocess.run(
            [sys.executable, "-c", WRAPPER, f"{log_path}.json", *cmd], stdout=log, stderr=log, env=env
        )
    if done.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{f.read()[-6000:]}")
    with open(f"{log_path}.json", encoding="utf-8") as f:
        return json.load(f)  # ru_maxrss is in KiB on Linux
