"""Fake ``google.colab.drive``: the mountpoint becomes a link to the folder ``$FAKE_DRIVE``."""

import os
from pathlib import Path

from . import log

_mounted: list[Path] = []


def mount(mountpoint: str, force_remount: bool = False, **kwargs) -> None:
    drive = Path(os.environ["FAKE_DRIVE"])
    (drive / "MyDrive").mkdir(parents=True, exist_ok=True)
    target = Path(mountpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_symlink():
        target.symlink_to(drive, target_is_directory=True)
    _mounted.append(target)
    log(f"mount {mountpoint}")


def flush_and_unmount(timeout_ms: int = 86400000) -> None:
    while _mounted:
        _mounted.pop().unlink(missing_ok=True)
    log("flush_and_unmount")
