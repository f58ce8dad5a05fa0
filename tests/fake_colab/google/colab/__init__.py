"""A fake ``google.colab`` for the tests: its presence is what marks a Colab runtime.

Drive is a folder (``$FAKE_DRIVE``) that ``drive.mount`` links at the mountpoint; uploads come from
``$FAKE_UPLOADS``; every call is appended to ``$FAKE_COLAB_LOG`` (one line each) so tests can see it.
"""

import os


def log(line: str) -> None:
    """Record one call of the fake API."""
    path = os.environ.get("FAKE_COLAB_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")


from . import drive, files, output  # noqa: E402,F401  (as the real package exposes them)
