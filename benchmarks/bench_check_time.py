"""`arblocks check` and `build` times of this checkout and an older one, side by side (run by hand; figures go to
docs/performance.md).

    git worktree add /tmp/old COMMIT
    python benchmarks/bench_check_time.py --old /tmp/old [--threads 1 2]

Each command runs in a fresh process (import, validation, build and the check), alternating old and new, once per
thread count (``OMP_NUM_THREADS``): `arblocks check specs/pixelcnn.json --size 8`, `arblocks check
specs/pixelsnail.json` and `arblocks build specs/pixelsnail.json`. Prints each time, the new/old ratio and the line
of the report that says what was proven at the spec's own size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (
    ("check", "specs/pixelcnn.json", "--size", "8"),
    ("check", "specs/pixelsnail.json"),
    ("build", "specs/pixelsnail.json"),
)


def timed(checkout: Path, command: tuple[str, ...], threads: int) -> tuple[float, str]:
    # the checkout's own plugins before the installed ones (an older arblocks refuses a newer plugin's hooks)
    path = [str(checkout), *(str(src) for src in sorted(checkout.glob("plugins/*/src")))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    # run in the checkout: `python -m` puts the working directory first on the path, before PYTHONPATH
    result = subprocess.run([sys.executable, "-m", "arblocks", *command], cwd=checkout, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    said = next((line for line in result.stdout.splitlines() if "32x32" in line), f"exit {result.returncode}")
    return seconds, said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="a checkout of the older commit (git worktree add)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    for threads in args.threads:
        for command in COMMANDS:
            old, old_said = timed(args.old, command, threads)
            new, new_said = timed(ROOT, command, threads)
            print(f"{threads} thread(s) | arblocks {' '.join(command)} | old {old:.1f} s | new {new:.1f} s | {new / old:.2f}x")
            print(f"    old: {old_said.strip()[:160]}\n    new: {new_said.strip()[:160]}", flush=True)


if __name__ == "__main__":
    main()
