"""A training race's curves: validation gain per minute and per step of each run, and a table at equal time and steps.

Each run folder's ``last.pt`` holds the per-epoch history (``helpers.training``): the validation PSNR of the
network and of its input on the same held-out patches (equal for runs of one data recipe and seed), the
seconds each epoch took (training and validation) and the run's configuration. The table gives, per run, its
network, learning rate, steps, minutes and seconds per step, its best gain, and its gain at the largest wall
time and at the largest step count every run reached (the last epoch finished by then). Minutes count the
epochs only, not the set-up before the first. Written for issue 27's race (``bench/race_unet_blocks.sh``); it
reads training state that lives outside the repository, so it is not part of ``make bench``. ``--reference
WEIGHTS`` adds a network that did not run (the shipped one), validated on the same patches as the first run, as a
dashed line and a table row:

    python -m bench.race_curves [RUN_DIR ...] [--reference weights/unet.pt] [--out outputs/race27]
                                (default: every run of the race's folder)
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from helpers import recipes
from helpers.cache import default_cache_dir
from helpers.checkpoint import load_checkpoint, load_model
from helpers.evaluate import format_table
from helpers.losses import build_loss
from helpers.models import count_parameters
from helpers.profiling import count_flops
from helpers.training import TrainConfig, validate
from helpers.training.validation import amp_settings
from helpers.viz import save_figure

PATCH = 112  # the race's training patch side: the FLOP count's input


@dataclass(frozen=True)
class RaceRun:
    """One run's curve: after each epoch, its steps, cumulative minutes and validation gain over the input (dB)."""

    name: str
    network: str
    parameters: int
    gmacs: float  # multiply-accumulates per PATCH x PATCH patch, forward
    lr: float
    steps: np.ndarray
    minutes: np.ndarray
    gain: np.ndarray
    seconds_per_step: float  # median over epochs, training only

    def gain_at(self, axis: np.ndarray, limit: float) -> float:
        """The gain of the last epoch finished by ``limit`` on ``axis`` (steps or minutes); NaN before the first
        epoch and after the run's end (it never got there)."""
        finished = np.flatnonzero(axis <= limit + 1e-9)
        return float(self.gain[finished[-1]]) if finished.size and limit <= axis[-1] + 1e-9 else float("nan")


def _network(arch: dict) -> str:
    kwargs = arch["kwargs"]
    if kwargs.get("block", "plain") == "plain":
        return f"plain, {kwargs['base_channels']} ch, depth {kwargs['depth']}"
    blocks = "-".join(map(str, kwargs["enc_blocks"]))
    return f"nafnet, width {kwargs['width']}, enc {blocks}, middle {kwargs['middle_blocks']}"


def load_run(folder: Path) -> RaceRun:
    """A run's curve from its ``last.pt``, and its network's size."""
    state = load_checkpoint(folder / "last.pt")
    history = state["history"]
    steps_per_epoch = state["global_step"] // state["epoch"]
    model = load_model(folder / "last.pt")
    with torch.no_grad():
        macs = count_flops(model, torch.rand(1, 3, PATCH, PATCH)) / 2
    return RaceRun(
        name=folder.name, network=_network(state["arch"]), parameters=count_parameters(model), gmacs=macs / 1e9,
        lr=state["config"]["lr"], steps=np.asarray(history["epoch"]) * steps_per_epoch,
        minutes=np.cumsum(history["seconds"]) / 60,
        gain=np.asarray(history["val_psnr"]) - np.asarray(history["input_psnr"]),
        seconds_per_step=statistics.median(history["seconds_per_step"]),
    )


def reference_gain(weights: Path, run: Path) -> float:
    """The validation gain of ``weights`` on ``run``'s validation patches, as its trainer measured its own (same
    recipe and seed, same autocast)."""
    state = load_checkpoint(run / "last.pt")
    config = TrainConfig(**state["config"])
    _, val = recipes.build_datasets(state["arch"]["name"], state["config"], cache_dir=None)
    loader = torch.utils.data.DataLoader(val, batch_size=config.batch_size)
    device = torch.device("cpu")
    metrics = validate(load_model(weights), loader, build_loss(config.loss), device, amp_settings(config, device))
    return metrics["val_psnr"] - metrics["input_psnr"]


def race_table(runs: list[RaceRun]) -> tuple[list[dict], float, int]:
    """One row per run, with its gains at the wall time and the steps that every run reached."""
    equal_minutes = min(run.minutes[-1] for run in runs)
    equal_steps = int(min(run.steps[-1] for run in runs))
    rows = []
    for run in runs:
        best = int(np.argmax(run.gain))
        rows.append({
            "run": run.name, "network": run.network, "parameters": f"{run.parameters:,}",
            f"GMAC / {PATCH}px": f"{run.gmacs:.2f}", "lr": f"{run.lr:g}", "steps": int(run.steps[-1]),
            "minutes": f"{run.minutes[-1]:.1f}", "s/step": f"{run.seconds_per_step:.2f}",
            "best gain (dB) [step]": f"{run.gain[best]:+.3f} [{int(run.steps[best])}]",
            f"gain at {equal_minutes:.1f} min": f"{run.gain_at(run.minutes, equal_minutes):+.3f}",
            f"gain at {equal_steps} steps": f"{run.gain_at(run.steps, equal_steps):+.3f}",
        })
    return rows, equal_minutes, equal_steps


def plot_race(runs: list[RaceRun], path: Path, reference: tuple[str, float] | None = None) -> Path:
    """Validation gain against wall-clock minutes (left) and against optimisation steps (right); ``reference``
    (a name and its gain) as a dashed line."""
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    by_time, by_step = figure.subplots(1, 2, sharey=True)
    for run in runs:
        label = f"{run.name} (lr {run.lr:g})"
        by_time.plot(run.minutes, run.gain, "o-", markersize=3, label=label)
        by_step.plot(run.steps, run.gain, "o-", markersize=3, label=label)
    for axis, label in ((by_time, "minutes (training + validation, runs side by side)"), (by_step, "optimisation steps")):
        if reference:
            axis.axhline(reference[1], color="black", linestyle="--", linewidth=1, label=reference[0])
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    by_time.set_ylabel("validation gain over the input (dB)")
    by_step.legend(fontsize="small")
    return save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.race_curves", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders holding last.pt (default: those of the race folder)")
    parser.add_argument("--reference", type=Path, default=None, metavar="WEIGHTS",
                        help="also validate these weights on the first run's validation patches (e.g. weights/unet.pt)")
    parser.add_argument("--out", type=Path, default=Path("outputs/race27"))
    args = parser.parse_args(argv)
    folders = args.runs or sorted(path.parent for path in (default_cache_dir() / "race27").glob("*/last.pt"))
    if not folders:
        parser.error(f"no runs: none given and no */last.pt under {default_cache_dir() / 'race27'}")
    runs = [load_run(folder) for folder in folders]
    rows, minutes, steps = race_table(runs)
    reference = None
    if args.reference:
        reference = (args.reference.name, reference_gain(args.reference, folders[0]))
        rows.append({key: "" for key in rows[0]} | {"run": f"reference: {args.reference}",
                                                   "best gain (dB) [step]": f"{reference[1]:+.3f}"})
    table = format_table(rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "race.md").write_text(f"# Race: validation gain at {minutes:.1f} minutes and at {steps} steps\n\n{table}\n")
    print(f"wrote {args.out / 'race.md'} and {plot_race(runs, args.out / 'race.png', reference)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
