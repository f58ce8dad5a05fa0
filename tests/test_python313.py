"""Colab runs Python 3.13, which cannot be installed here: every Python file and notebook code cell of the
checkout must parse as 3.13 and import no standard module that 3.12 or 3.13 removed.

Run on an older Python, ``feature_version=(3, 13)`` adds nothing the running parser does not know: syntax newer
than the running Python fails, so the code stays free of 3.12+-only syntax. Warnings are errors while parsing,
so an invalid escape sequence (a SyntaxWarning every Colab user sees from 3.12 on) fails too."""

from __future__ import annotations

import ast
import subprocess
import warnings
from pathlib import Path

import nbformat
from IPython.core.inputtransformer2 import TransformerManager

REPO = Path(__file__).resolve().parent.parent

# PEP 594's dead batteries and lib2to3 (removed in 3.13); distutils, imp, asynchat, asyncore, smtpd (in 3.12).
REMOVED_MODULES = frozenset({
    "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "mailcap", "msilib", "nis", "nntplib",
    "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib", "lib2to3",
    "distutils", "imp", "asynchat", "asyncore", "smtpd",
})


def checkout_files(suffix: str) -> list[Path]:
    """The checkout's files ending in ``suffix``: tracked ones and new ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", f"*{suffix}"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    return sorted({REPO / name for name in listed if name and (REPO / name).is_file()})  # a deleted tracked file is gone


def python_sources() -> list[tuple[str, str]]:
    """(label, source) of every Python file and notebook code cell (IPython magics turned into Python calls)."""
    sources = [(str(path.relative_to(REPO)), path.read_text(encoding="utf-8")) for path in checkout_files(".py")]
    for path in checkout_files(".ipynb"):
        cells = [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
        sources += [(f"{path.relative_to(REPO)} code cell {number}", TransformerManager().transform_cell(cell.source))
                    for number, cell in enumerate(cells, 1)]
    return sources


def problems_for_python_313(label: str, source: str) -> list[str]:
    """Why ``source`` would not run on Python 3.13: its syntax error, or each import of a removed module."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tree = ast.parse(source, filename=label, feature_version=(3, 13))
    except SyntaxError as error:
        return [f"{label}:{error.lineno}: {error.msg}"]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:  # relative imports are the project's own
            modules = [node.module]
        else:
            continue
        problems += [f"{label}:{node.lineno}: imports {module}, removed from Python by 3.13"
                     for module in modules if module.split(".")[0] in REMOVED_MODULES]
    return problems


def test_every_file_and_notebook_cell_parses_as_python_313_without_removed_modules():
    sources = python_sources()
    assert any(label.endswith(".ipynb code cell 1") for label, _ in sources) and any(
        label == "helpers/colab.py" for label, _ in sources)  # both kinds were found
    problems = [problem for label, source in sources for problem in problems_for_python_313(label, source)]
    assert problems == [], "\n".join(problems)


def test_the_check_finds_removed_modules_and_invalid_escapes(tmp_path):
    module = tmp_path / "old.py"
    module.write_text('import os, imghdr\nfrom distutils.util import strtobool\nfrom . import cgi\nimport pipes.x\n')
    assert problems_for_python_313("old.py", module.read_text()) == [
        "old.py:1: imports imghdr, removed from Python by 3.13",
        "old.py:2: imports distutils.util, removed from Python by 3.13",
        "old.py:4: imports pipes.x, removed from Python by 3.13",
    ]
    assert problems_for_python_313("escape.py", 'pattern = "\\d+"\n') == ["escape.py:1: invalid escape sequence '\\d'"]
    assert problems_for_python_313("cell", TransformerManager().transform_cell("%matplotlib inline\n!ls\nx = 1\n")) == []
