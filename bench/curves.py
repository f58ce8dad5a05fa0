"""What longer training runs would give: each run's validation-PSNR trend, extrapolated in log-steps.

For every run folder (its ``last.pt`` holds the per-epoch history and the run's configuration) it
fits ``bench.trends.psnr_trend`` and prints: steps run, seconds per step (median epoch time), the
slope in dB per 10x steps with its 95% interval, the fitted PSNR at 10x and 100x the steps, and the
hours 10x the steps would take on the machine the run used. ``--needed RUN=DB`` adds, for that run,
the steps and hours to gain DB dB more, at the fitted slope and at its interval's top (the optimistic
case). A straight line in log-steps never saturates, so every projection is an upper estimate.
Not part of ``make bench`` (it reads training state that lives outside the repository):

    python -m bench.curves RUN_DIR [RUN_DIR ...] [--key val_psnr|cascade_psnr] [--skip-epochs 1] [--needed dncnn=0.79]
                           [--out outputs/curves]
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from helpers.checkpoint import load_checkpoint
from bench.trends import Trend, psnr_trend
from helpers.evaluate import format_table
from helpers.viz import save_figure


def _hours(steps: float, seconds_per_step: float) -> float:
    return steps * seconds_per_step / 3600 if math.isfinite(steps) else math.inf


def run_row(name: str, trend: Trend, seconds_per_step: float) -> dict:
    """Where the run stands and what 10x / 100x its steps would give on its trend."""
    last = trend.steps[-1]
    low, high = trend.slope_interval
    return {
        "run": name,
        "steps": last,
        "s/step": f"{seconds_per_step:.2f}",
        "PSNR (last)": trend.values[-1],
        "slope (dB / 10x steps) [95%]": f"{trend.slope:+.3f} [{low:+.3f}, {high:+.3f}]",
        "fit now": trend.at(last),
        "fit at 10x steps": trend.at(10 * last),
        "fit at 100x steps": trend.at(100 * last),
        "hours for 10x": _hours(9 * last, seconds_per_step),
    }


def needed_row(name: str, trend: Trend, seconds_per_step: float, gain: float) -> dict:
    """Steps and hours for ``gain`` dB more than the fit's last point, at the fitted slope and at its interval's top."""
    last = trend.steps[-1]
    row: dict = {"run": name, "gain needed (dB)": f"{gain:+.2f}"}
    for label, slope in (("fitted slope", trend.slope), ("interval top", trend.slope_interval[1])):
        steps = trend.steps_to(trend.at(last) + gain, slope)
        row[f"steps ({label})"] = f"{steps:.3g}"
        row[f"hours ({label})"] = f"{_hours(steps - last, seconds_per_step):.3g}"
    return row


def plot_trends(trends: dict[str, Trend], key: str, path: Path) -> Path:
    """The fitted PSNR (``key``) against steps (log scale), one axis per run, with the fitted line extended to 100x."""
    columns = min(3, len(trends))
    rows = -(-len(trends) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis in axes[len(trends):]:
        axis.set_visible(False)
    for axis, (name, trend) in zip(axes, trends.items()):
        axis.plot(trend.steps, trend.values, "o", label=key)
        span = np.geomspace(trend.steps[0], 100 * trend.steps[-1], 50)
        axis.plot(span, [trend.at(step) for step in span], "--", label=f"fit: {trend.slope:+.3f} dB / 10x steps")
        axis.set_xscale("log")
        axis.set_title(name)
        axis.set_xlabel("steps of this run")
        axis.set_ylabel("PSNR (dB)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    return save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.curves", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding last.pt")
    parser.add_argument("--skip-epochs", type=int, default=1, help="first epochs left out of each fit")
    parser.add_argument("--key", default="val_psnr",
                        help="the history's PSNR to fit: val_psnr (the network on held-out patches) or cascade_psnr "
                             "(the whole cascade with it, on held-out crops)")
    parser.add_argument("--needed", action="append", default=[], metavar="RUN=DB",
                        help="steps and hours for RUN (a folder name) to gain DB dB more on its trend")
    parser.add_argument("--out", type=Path, default=Path("outputs/curves"))
    args = parser.parse_args(argv)
    needed = {}
    for item in args.needed:
        name, _, gain = item.partition("=")
        try:
            needed[name] = float(gain)
        except ValueError:
            parser.error(f"--needed: expected RUN=DB, got {item!r}")
    rows, needed_rows, trends = [], [], {}
    for folder in args.runs:
        state = load_checkpoint(folder / "last.pt")
        steps_per_epoch = state["global_step"] // state["epoch"]
        trends[folder.name] = trend = psnr_trend(state["history"], steps_per_epoch, args.key, args.skip_epochs)
        seconds_per_step = statistics.median(state["history"]["seconds"]) / steps_per_epoch
        rows.append(run_row(folder.name, trend, seconds_per_step))
        if folder.name in needed:
            needed_rows.append(needed_row(folder.name, trend, seconds_per_step, needed.pop(folder.name)))
    if needed:
        parser.error(f"--needed names runs not given: {', '.join(needed)}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = "\n\n".join(format_table(table) for table in (rows, needed_rows) if table)
    print(report)
    (args.out / "report.md").write_text(f"# Learning-curve trends ({args.key})\n\n{report}\n")
    print(f"wrote {args.out / 'report.md'} and {plot_trends(trends, args.key, args.out / 'curves.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
