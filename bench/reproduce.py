"""Reproduce the DnCNN paper's CBSD68 figures from the authors' own weights (CDnCNN-B, ``GD_Color_Blind.mat``).

Imports the authors' MatConvNet file with ``helpers.import_weights`` (default
``../shared/weights/official/GD_Color_Blind.mat`` beside this checkout), adds Gaussian noise at sigma
15, 25 and 50 to CBSD68 under both of ``helpers.evaluate``'s noise protocols and prints the mean PSNR
beside the published figures (Zhang et al., IEEE TIP 2017: CDnCNN-B 33.89 / 31.23 / 27.92 dB, measured
with float noise, unclipped, the "paper" protocol). Not part of ``make bench`` or the tests: the file
and the images are not in the repository, and 68 images x 3 noise levels x 2 protocols through a
20-layer network take a while on a CPU. The table also goes to ``--out``/report.md.

    python -m bench.reproduce [--weights PATH.mat] [--data DIR] [--sigmas 15,25,50] [--limit N] [--out DIR]
                               [--protocols paper,clipped]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from helpers.evaluate import NOISE_PROTOCOLS, evaluate_denoising, format_table
from helpers.import_weights import DNCNN_SOURCE, WeightsImportError, import_dncnn_matconvnet
from helpers.io import list_images, read_image
from helpers.safe_writes import atomic_path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
DEFAULT_WEIGHTS = SHARED / "weights" / "official" / "GD_Color_Blind.mat"
DEFAULT_DATA = SHARED / "data" / "eval" / "CBSD68"
PUBLISHED = {15: 33.89, 25: 31.23, 50: 27.92}  # CDnCNN-B on CBSD68, paper protocol (also in ANCHORS.md)


def reproduction_table(
    model, images: dict, sigmas: list[float], seed: int, device: str, protocols: tuple[str, ...] = ("paper", "clipped")
) -> list[dict]:
    """One row per sigma: the published PSNR, ours under each noise protocol, and the gap under the paper's.

    Runs in the order given (protocol by protocol), printing every result as it comes: a long run
    stopped early still leaves the figures that compare with the paper.
    """
    measured = {}
    for protocol in protocols:
        for sigma in sigmas:
            table = evaluate_denoising(model, images, sigma, seed, noise_protocol=protocol, device=device, keep_examples=0).table
            measured[protocol, sigma] = table[0]["psnr"], table[1]["psnr"]
            print(f"sigma {sigma:g}, {protocol} protocol: noisy input {table[0]['psnr']:.2f} dB, "
                  f"CDnCNN-B {table[1]['psnr']:.2f} dB (published, paper protocol: {PUBLISHED.get(int(sigma))})", flush=True)
    rows = []
    for sigma in sigmas:
        row: dict = {"sigma": f"{sigma:g}", "published (paper protocol)": PUBLISHED.get(int(sigma), float("nan"))}
        for protocol in protocols:
            row[f"noisy input, {protocol}"], row[f"CDnCNN-B, {protocol} protocol"] = measured[protocol, sigma]
        if "paper" in protocols:
            row["gap, paper protocol"] = row["CDnCNN-B, paper protocol"] - row["published (paper protocol)"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="the authors' GD_Color_Blind.mat")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CBSD68's 68 clean images")
    parser.add_argument("--sigmas", default="15,25,50", help="noise levels on the 0-255 scale")
    parser.add_argument("--protocols", default="paper,clipped", help="noise protocols, run in this order")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (a quick look; not the benchmark)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("outputs/reproduce"))
    args = parser.parse_args(argv)
    protocols = tuple(args.protocols.split(","))
    if set(protocols) - set(NOISE_PROTOCOLS):
        parser.error(f"--protocols: expected some of {', '.join(NOISE_PROTOCOLS)}, received {args.protocols!r}")
    if not args.weights.is_file():
        print(f"error: {args.weights}: not found; {DNCNN_SOURCE}; pass --weights PATH", file=sys.stderr)
        return 2
    try:
        model = import_dncnn_matconvnet(args.weights)
        files = list_images(args.data)[: args.limit]
    except (WeightsImportError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    images = {path.stem: read_image(path) for path in files}
    started = time.perf_counter()
    sigmas = [float(sigma) for sigma in args.sigmas.split(",")]
    rows = reproduction_table(model, images, sigmas, args.seed, args.device, protocols)
    title = (f"CDnCNN-B (the authors' GD_Color_Blind.mat, imported) on {args.data.name} ({len(images)} images), "
             f"seed {args.seed}, mean PSNR (dB) over RGB, outputs in 8 bits; protocols: "
             + "; ".join(f"{name} = {text}" for name, text in NOISE_PROTOCOLS.items()))
    text = f"## {title}\n\n{format_table(rows)}\n"
    print(f"\n{text}\n({time.perf_counter() - started:.0f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "report.md") as temp:
        temp.write_text(text)
    print(f"wrote {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
