"""Hostile files and faults for the hardening tests (issue 28): each builder makes a small file that would cost
far more than its size, and ``run_measured`` runs a command in a fresh process and reports its own peak memory."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ONE_GIB = 2**30
MARKER_ELEMENTS = 0x01020304  # a byte tensor of this many elements is the one whose declared size gets replaced
MEASURED_RUN = """
import json, resource, sys
from helpers.commands import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def run_measured(arguments: list[str], cwd: Path | None = None) -> tuple[int, str, int]:
    """Run ``python -m helpers ARGUMENTS`` in a fresh process: (exit code, stderr, that process's peak RSS in bytes)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    completed = subprocess.run([sys.executable, "-c", MEASURED_RUN, *arguments], capture_output=True, text=True,
                               cwd=cwd, env=environment, timeout=300, check=False)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise AssertionError(f"the measured run crashed ({completed.returncode}): {completed.stderr[-2000:]}")
    result = json.loads(lines[-1])
    return result["code"], completed.stderr, result["peak"]


def zip_bomb_torch_file(path: Path, state: dict[str, Any], inflated_bytes: int, key: str = "bomb") -> Path:
    """``torch.save(state)`` plus a ``key`` byte tensor of ``inflated_bytes`` zeros stored deflated: a file of a few
    MB that ``torch.load`` inflates to ``inflated_bytes`` before anything can look at it.

    The tensor is saved at a marker size; the marker is replaced in the pickle (its storage size and its shape),
    and its record rewritten as a deflated stream of the declared size.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({**state, key: torch.zeros(MARKER_ELEMENTS, dtype=torch.uint8)}, buffer)
    marker, declared = struct.pack("<i", MARKER_ELEMENTS), struct.pack("<i", inflated_bytes)
    with zipfile.ZipFile(buffer) as original, zipfile.ZipFile(path, "w") as bomb:
        for info in original.infolist():
            data = original.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert data.count(marker) == 2, "the marker size appears once as the storage size, once as the shape"
                bomb.writestr(info.filename, data.replace(marker, declared))
            elif info.file_size == MARKER_ELEMENTS:
                zeros, deflated = bytes(16 * 2**20), zipfile.ZipInfo(info.filename)
                deflated.compress_type = zipfile.ZIP_DEFLATED
                with bomb.open(deflated, "w", force_zip64=True) as record:
                    for start in range(0, inflated_bytes, len(zeros)):
                        record.write(zeros[: min(len(zeros), inflated_bytes - start)])
            else:
                bomb.writestr(info.filename, data)
    return path


def flip_byte_in_record(path: Path, record_suffix: str, offset: int = 0) -> None:
    """Flip the bits of one byte of a zip record's stored data (bit rot), leaving the zip directory intact."""
    with zipfile.ZipFile(path) as archive:
        info = next(item for item in archive.infolist() if item.filename.endswith(record_suffix))
    with open(path, "r+b") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length + offset)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _riff_chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _riff_list(kind: bytes, data: bytes) -> bytes:
    return _riff_chunk(b"LIST", kind + data)


def mjpeg_avi(path: Path, frames: list[np.ndarray], rate: int = 25, scale: int = 1) -> Path:
    """An MJPEG AVI written by hand, so that its frames may differ in size and its rate (rate / scale fps) may be
    anything: what no well-behaved writer makes. The header's size is the first frame's."""
    jpegs = [cv2.imencode(".jpg", frame)[1].tobytes() for frame in frames]
    height, width = frames[0].shape[:2]
    main_header = struct.pack("<14I", int(1e6 * scale / rate), 0, 0, 0x10, len(frames), 0, 1, 0, width, height, 0, 0, 0, 0)
    stream_header = b"vidsMJPG" + struct.pack("<IHHIIIIIIIIhhhh", 0, 0, 0, 0, scale, rate, 0, len(frames), 0,
                                              0xFFFFFFFF, 0, 0, 0, width, height)
    stream_format = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", width * height * 3, 0, 0, 0, 0)
    headers = _riff_list(b"hdrl", _riff_chunk(b"avih", main_header) + _riff_list(
        b"strl", _riff_chunk(b"strh", stream_header) + _riff_chunk(b"strf", stream_format)))
    movie, index, offset = b"", b"", 4
    for jpeg in jpegs:
        chunk = _riff_chunk(b"00dc", jpeg)
        index += b"00dc" + struct.pack("<III", 0x10, offset, len(jpeg))
        movie += chunk
        offset += len(chunk)
    body = b"AVI " + headers + _riff_list(b"movi", movie) + _riff_chunk(b"idx1", index)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path
