"""Fake ``google.colab.files``: uploads are the files of ``$FAKE_UPLOADS``, saved as Colab saves them; downloads are logged.

Colab's ``files.upload`` writes every uploaded file into the current folder (or ``target_dir``) itself, a name
already taken becoming "name (1).ext", "name (2).ext", ..., prints where each went, and returns
{name as picked: content}: so does this one.
"""

import os
from pathlib import Path

from . import log


def _unique_name(path: Path) -> Path:
    """``path``, or "stem (N)suffix" beside it for the first N that is free (Colab's ``_get_unique_filename``)."""
    counter = 1
    candidate = path
    while os.path.lexists(candidate):
        candidate = path.with_name(f"{path.stem} ({counter}){path.suffix}")
        counter += 1
    return candidate


def upload(target_dir: str = "") -> dict:
    log("upload")
    picked = {path.name: path.read_bytes() for path in sorted(Path(os.environ["FAKE_UPLOADS"]).iterdir()) if path.is_file()}
    for name, content in picked.items():
        local = _unique_name(Path(target_dir) / name)
        print(f"Saving {name} to {local}")
        local.write_bytes(content)
    return picked


def download(filename: str) -> None:
    log(f"download {filename}")
