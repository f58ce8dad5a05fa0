"""Evaluations to files: CSV and Markdown tables and an image grid.

``save_evaluation`` writes an ``helpers.evaluate.Evaluation`` as CSV and Markdown tables and an image
grid (``helpers.viz``); every file is written to a temporary name and renamed. It lives above both
``evaluate`` (which measures) and ``viz`` (which draws), so that neither imports the other's user.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Mapping, Sequence


from .evaluate import (
    Evaluation,
    format_table,
)
from .safe_writes import atomic_path
from .viz import evaluation_grid

__all__ = ["save_evaluation"]


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with atomic_path(path) as temp:
        with open(temp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temp:
        temp.write_text(text)


def save_evaluation(evaluation: Evaluation, out_dir: str | os.PathLike, name: str, title: str = "") -> dict[str, Path]:
    """Write ``<name>.csv``, ``<name>.md`` (table), ``<name>_per_image.csv`` and ``<name>_grid.png`` under ``out_dir``.

    The grid shows every method and the target for the kept examples, each titled with its PSNR,
    a full frame row and a zoomed centre-crop row per example. Returns the paths written.
    """
    out_dir = Path(out_dir)
    paths = {
        "table_csv": out_dir / f"{name}.csv",
        "table_md": out_dir / f"{name}.md",
        "per_image_csv": out_dir / f"{name}_per_image.csv",
        "grid_png": out_dir / f"{name}_grid.png",
    }
    _write_csv(paths["table_csv"], evaluation.table)
    _write_text(paths["table_md"], (f"## {title}\n\n" if title else "") + format_table(evaluation.table) + "\n")
    _write_csv(paths["per_image_csv"], evaluation.per_image)
    evaluation_grid(evaluation, save=paths["grid_png"])
    return paths
