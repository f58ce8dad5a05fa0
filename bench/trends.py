"""Learning-curve trends: how fast a run's validation PSNR still rises, and what a longer run would give.

Fits ``PSNR = intercept + slope * log10(step)`` to a training history (``helpers.training`` writes one
per epoch into every checkpoint) with ``scipy.stats.linregress``. A straight line in log-steps is the
usual shape of a learning curve past its first epochs, and it never saturates, so projecting it is
generous to a long run: read ``at(10 * steps)`` as "at most about this much". Each projection is
for more steps *of the same run* (same data, batch and learning-rate schedule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Trend:
    """A fitted ``intercept + slope * log10(step)`` with the slope's confidence interval."""

    intercept: float
    slope: float  # dB per 10x steps
    slope_interval: tuple[float, float]  # CONFIDENCE interval of the slope
    steps: tuple[int, ...]  # the steps fitted
    values: tuple[float, ...]

    def at(self, step: float) -> float:
        """The fitted PSNR after ``step`` steps."""
        return self.intercept + self.slope * math.log10(step)

    def steps_to(self, psnr: float, slope: float | None = None) -> float:
        """Steps at which the fit (or one with ``slope``) reaches ``psnr``; inf when it never rises to it."""
        slope = self.slope if slope is None else slope
        last = self.steps[-1]
        reached = self.at(last)
        if psnr <= reached:
            return float(last)
        if slope <= 0:
            return math.inf
        return last * 10 ** ((psnr - reached) / slope)


def psnr_trend(
    history: Mapping[str, Sequence[Any]], steps_per_epoch: int, key: str = "val_psnr", skip_epochs: int = 0
) -> Trend:
    """Fit the trend of ``history[key]`` (one value per epoch) against the step count at each epoch's end.

    ``skip_epochs`` leaves out the first epochs (a fine-tune's first jump is not its trend). Needs three
    epochs at least: two points have no interval.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    if key not in history:
        raise ValueError(f"psnr_trend: the history has no {key!r} (it has {sorted(history)})")
    values = [float(value) for value in history[key]]
    epochs = [int(epoch) for epoch in history.get("epoch") or range(1, len(values) + 1)][: len(values)]
    kept = [(epoch * steps_per_epoch, value) for epoch, value in zip(epochs, values) if epoch > skip_epochs]
    if len(kept) < 3:
        raise ValueError(f"psnr_trend: {len(kept)} epochs of {key!r} after skipping {skip_epochs}; need 3 or more")
    steps, psnrs = zip(*kept)
    fit = stats.linregress(np.log10(steps), psnrs)
    half_width = stats.t.ppf(0.5 + CONFIDENCE / 2, len(steps) - 2) * fit.stderr
    return Trend(float(fit.intercept), float(fit.slope), (float(fit.slope - half_width), float(fit.slope + half_width)),
                 tuple(steps), tuple(psnrs))
