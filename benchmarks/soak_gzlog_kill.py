"""G3 soak: SIGKILL a logging child at random moments N times (default 1000).

Usage: python benchmarks/soak_gzlog_kill.py [N] [first_seed]
Each trial: a child logs continuously to a .jsonl.gz (flush_interval 2 ms), reporting
acknowledged counts after each flush(); it and its writer process are killed at the
same random moment; the log is recovered and checked (gzip -t, entries a prefix
0..n-1, none acknowledged lost).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the tests' shared helpers live there
_spec = importlib.util.spec_from_file_location(
    "_gzh", ROOT / "tests" / "files" / "test_compressed.py"
)
_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tests)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    ops = Counter()
    bad = []
    acked = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as directory:
        for seed in range(first, first + n):
            r = _tests.run_kill_trial(Path(directory), seed)
            ops[("none", "append", "compress", "replace")[r["op_at_kill"]]] += 1
            acked += r["acked"]
            if not (r["valid"] and r["prefix"] and r["lost"] == 0):
                bad.append(r)
                print("FAILED", r, flush=True)
            if (seed - first + 1) % 100 == 0:
                print(f"{seed - first + 1} trials, {len(bad)} failed", flush=True)
    print(
        f"trials={n} failed={len(bad)} acknowledged_entries={acked} "
        f"operation_in_progress_at_kill={dict(ops)} seconds={time.monotonic() - start:.0f}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
