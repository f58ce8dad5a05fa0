"""Fake ``google.colab.files``: uploads are the files of ``$FAKE_UPLOADS``; downloads are logged."""

import os
from pathlib import Path

from . import log


def upload() -> dict:
    folder = Path(os.environ["FAKE_UPLOADS"])
    log("upload")
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def download(filename: str) -> None:
    log(f"download {filename}")
