"""``python -m bench`` (``make bench``): run every benchmark script in bench/, each in its own process.

Each ``bench/bench_<name>.py`` runs as ``python -m bench.bench_<name>`` so that one script's memory
and threads do not disturb the next, and a failing script does not stop the others. ``--quick``
sets ``BENCH_QUICK=1`` in their environment (scripts read it as their quick mode; an environment
variable rather than a flag, so a script without a quick mode still runs). Scripts in ``ON_DEMAND``
run only when ``--only`` or ``--all`` names them, which keeps ``make bench`` within 5 minutes on a
2-core CPU.

    python -m bench [--quick] [--all] [--only inference,peers,video,train,cache,cascade_memory]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PREFERRED_ORDER = ("inference", "peers", "video", "train", "cache")
ON_DEMAND = ("cascade_memory",)  # the memory of a cascade fine-tuning step: a planning figure, not a speed


def available_benchmarks() -> list[str]:
    """Names of the bench_<name>.py scripts present, in a fixed order (inference first)."""
    names = [path.stem.removeprefix("bench_") for path in sorted(BENCH_DIR.glob("bench_*.py"))]
    return sorted(names, key=lambda name: (PREFERRED_ORDER.index(name) if name in PREFERRED_ORDER else len(PREFERRED_ORDER), name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (sets BENCH_QUICK=1 for every script)")
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. inference,train")
    parser.add_argument("--all", action="store_true", help=f"also the on-demand scripts ({', '.join(ON_DEMAND)})")
    args = parser.parse_args(argv)
    names = available_benchmarks()
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"--only: unknown {unknown}, available: {', '.join(names)}")
        names = [name for name in names if name in wanted]
    elif not args.all:
        names = [name for name in names if name not in ON_DEMAND]
    environment = {**os.environ, **({"BENCH_QUICK": "1"} if args.quick else {})}
    results: dict[str, tuple[int, float]] = {}
    for name in names:
        print(f"\n=== bench_{name} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", f"bench.bench_{name}"], env=environment, cwd=BENCH_DIR.parent).returncode
        results[name] = (code, time.perf_counter() - start)
    print("\n=== summary ===")
    for name, (code, seconds) in results.items():
        print(f"bench_{name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    return int(any(code != 0 for code, _ in results.values()))


if __name__ == "__main__":
    raise SystemExit(main())
