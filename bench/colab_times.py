"""Memory and time of each training notebook's full run on Colab's GPUs, as the notebooks' estimate cells print them.

    python -m bench.colab_times

Runs each training notebook's parameter and ``CONFIG`` cells (QUICK off), builds its network and loss from
that config (``helpers.recipes``), and counts one step with ``helpers.profiling.estimate_training``. The steps
per epoch are GOPRO's: 2,103 training frames, 80% of them trained on (the recipe holds a fifth of the sequences
out), times the notebook's patches per frame. The perceptual loss term (notebook 03; its ImageNet weights would
be downloaded) is left out of the count. Needs no dataset and no GPU; the times rest on the assumed share of
float16 peak that the output states.
"""

from __future__ import annotations

import nbformat

from helpers import losses, recipes
from helpers.notebooks import NOTEBOOK_DIR
from helpers.profiling import estimate_training

GOPRO_TRAINING_FRAMES = round(0.8 * 2103)
NOTEBOOKS = {"dncnn": "02_dncnn_denoising.ipynb", "unet": "03_unet_deblurring.ipynb", "edsr": "04_edsr_super_resolution.ipynb"}


def notebook_config(name: str) -> dict:
    """The notebook's parameters and CONFIG, executed as its cells are (full run: QUICK off, nothing downloaded)."""
    cells = [cell.source for cell in nbformat.read(NOTEBOOK_DIR / name, as_version=4).cells if cell.cell_type == "code"]
    namespace: dict = {}
    exec(next(source for source in cells if source.startswith("QUICK = ")), namespace)  # the parameters cell
    namespace["QUICK"] = False
    exec(next(source for source in cells if source.startswith("CONFIG = {")), namespace)
    return namespace["CONFIG"]


def main() -> None:
    for stage, name in NOTEBOOKS.items():
        config = notebook_config(name)
        weights = {term: weight for term, weight in config["loss"]["weights"].items() if term != "perceptual"}
        loss = losses.build_loss({"weights": weights})
        steps = GOPRO_TRAINING_FRAMES * config["data"]["samples_per_frame"] // config["batch_size"]
        scale = config["arch"].get("scale", 1)
        estimate = estimate_training(recipes.build_model(stage, config), loss, config["data"]["patch"], config["batch_size"],
                                     steps, config["epochs"], scale=scale)
        print(f"{name}: {config['arch']}, batch {config['batch_size']}, patch {config['data']['patch']}\n{estimate.summary()}\n")


if __name__ == "__main__":
    main()
