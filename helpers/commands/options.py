"""What several commands share: their argument types (each a one-line error on a bad value) and the device flag."""

from __future__ import annotations

import argparse
from typing import Callable, TypeVar

__all__ = ["NETWORKS", "DATA_HELP", "add_device", "checked", "sigma", "stage_list", "aux_weights", "share", "max_pixels"]

Number = TypeVar("Number", int, float)

NETWORKS = ("dncnn", "unet", "edsr")
DATA_HELP = ("sample (embedded set, no download), gopro:PATH, realblur:PATH, folder:PATH (your own sharp frames, made "
             "1280x720) or, for training, photos:DIR[=SHARE][,DIR2[=SHARE]...] (sharp photos at native resolution, "
             "degraded on the fly)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: CUDA when present")


def sigma(text: str) -> float | tuple[float, float]:
    """'25' -> 25.0; '0,55' -> (0.0, 55.0): a noise range drawn per patch (blind denoising)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH, received {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2 and values[0] <= values[1]:
        return values
    raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH with LOW <= HIGH, received {text!r}")


def stage_list(text: str) -> list[str]:
    """'dncnn,unet' -> ['dncnn', 'unet'], each a network stage."""
    stages = [stage.strip() for stage in text.split(",") if stage.strip()]
    unknown = sorted(set(stages) - set(NETWORKS))
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"expected stages among {', '.join(NETWORKS)}, received {text!r}")
    return stages


def aux_weights(text: str) -> dict[str, float]:
    """'0.5' -> {each stage: 0.5}; 'dncnn=0.2,unet=0' -> those stages only."""
    try:
        if "=" not in text:
            return dict.fromkeys(NETWORKS, float(text))
        weights = {stage.strip(): float(value) for stage, value in (part.split("=", 1) for part in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W or STAGE=W,..., received {text!r}") from None
    if set(weights) - set(NETWORKS):
        raise argparse.ArgumentTypeError(f"expected stages among {', '.join(NETWORKS)}, received {text!r}")
    return weights


def checked(text: str, convert: Callable[[str], Number], accept: Callable[[Number], bool], expected: str) -> Number:
    """``convert(text)`` when ``accept`` takes it; otherwise the one-line error "expected EXPECTED, received 'TEXT'"."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}")
    return value


def share(text: str) -> float:
    """A share strictly between 0 and 1 (a held-out fraction: some data must be left on each side)."""
    return checked(text, float, lambda value: 0 < value < 1, "a share between 0 and 1 (exclusive)")


def max_pixels(text: str) -> int:
    """A pixel limit: a positive integer up to Pillow's own decompression-bomb ceiling (its header parser's)."""
    from PIL import Image

    ceiling = 2 * Image.MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, received {text!r}") from None
    if not 0 < value <= ceiling:
        raise argparse.ArgumentTypeError(f"expected 1 to {ceiling:,} pixels (Pillow's ceiling), received {text}")
    return value
