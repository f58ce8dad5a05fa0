"""Tests for data_download.sh.

The script runs for real (bash, curl, unzip, tar) against tiny fixture archives
served from a local HTTP server on 127.0.0.1, so the download, resume,
verification and extraction paths are the ones users run. Nothing leaves the
machine: every test points GOPRO_URLS / REALBLUR_URLS at the local server.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import re
import subprocess
import tarfile
import threading
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "data_download.sh"
REALBLUR_J = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
REALBLUR_R = "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref"
# Pair counts of the fixtures below, passed to the script as the expected counts.
GOPRO_SEQUENCES = {"train": {"GOPR0372_07_00": 2, "GOPR0374_11_01": 1}, "test": {"GOPR0384_11_00": 2}}
COUNTS_ENV = {
    "GOPRO_EXPECTED_TRAIN": "3",
    "GOPRO_EXPECTED_TEST": "2",
    "REALBLUR_EXPECTED_TRAIN": "3",
    "REALBLUR_EXPECTED_TEST": "1",
}


def png_bytes(value: int) -> bytes:
    """A real 4x4 PNG whose pixels encode `value`, so every fixture file differs."""
    ok, encoded = cv2.imencode(".png", np.full((4, 4, 3), value % 256, np.uint8))
    assert ok
    return encoded.tobytes()


def gopro_members() -> dict[str, bytes]:
    """Files of a fake GOPRO_Large, relative to its root."""
    members, value = {}, 0
    for split, sequences in GOPRO_SEQUENCES.items():
        for sequence, frames in sequences.items():
            for frame in range(1, frames + 1):
                for kind in ("blur", "blur_gamma", "sharp"):
                    value += 1
                    members[f"{split}/{sequence}/{kind}/{frame:06d}.png"] = png_bytes(value)
    return members


def realblur_members() -> dict[str, bytes]:
    """Files of a fake RealBlur archive root: RealBlur-J (3 train / 1 test pairs) and RealBlur-R."""
    members, value = {}, 0
    j_pairs = [f"{REALBLUR_J}/scene{scene:03d}/{{kind}}/{{kind}}_{index}.png"
               for scene, index in [(1, 1), (1, 2), (2, 1), (3, 1)]]
    for template in j_pairs + [f"{REALBLUR_R}/scene001/{{kind}}/{{kind}}_1.png"]:
        for kind in ("gt", "blur"):
            value += 1
            members[template.format(kind=kind)] = png_bytes(value)
    lines = [f"{p.format(kind='gt')} {p.format(kind='blur')}" for p in j_pairs]
    # Last train line has no newline and the test list has a blank line: both are real-world list quirks.
    members["RealBlur_J_train_list.txt"] = "\n".join(lines[:3]).encode()
    members["RealBlur_J_test_list.txt"] = (lines[3] + "\n\n").encode()
    r_pair = f"{REALBLUR_R}/scene001/gt/gt_1.png {REALBLUR_R}/scene001/blur/blur_1.png\n"
    members["RealBlur_R_train_list.txt"] = r_pair.encode()
    members["RealBlur_R_test_list.txt"] = r_pair.encode()
    return members


def zip_bytes(members: dict[str, bytes], top: str, symlinks: dict[str, str] | None = None,
              appended: list[tuple[str, bytes]] | None = None) -> bytes:
    """A zip of ``members`` under ``top``, plus ``symlinks`` (name -> target) stored as Info-ZIP stores links,
    then the ``appended`` (name, data) entries as they are, even a name already in the zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of a duplicate name, and writes it
        for name, data in members.items():
            archive.writestr(top + name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix
            info.external_attr = (0o120777 << 16)  # S_IFLNK | 0777
            archive.writestr(info, target)
        for name, data in appended or []:
            archive.writestr(name, data)
    return buffer.getvalue()


def tgz_bytes(members: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None, owner: str = "") -> bytes:
    """A tar.gz with file entries only (no directory entries), the harder case for member selection, plus
    ``links`` (name -> (tarfile.SYMTYPE or LNKTYPE, target)); ``owner`` is every file's user and group name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.uname = info.gname = owner
            archive.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    return buffer.getvalue()


GOPRO_ZIP = zip_bytes(gopro_members(), "GOPRO_Large/")
REALBLUR_TGZ = tgz_bytes(realblur_members())
HTML_PAGE = b"<!DOCTYPE html><html><body>Too many users have viewed or downloaded this file recently.</body></html>"


class FixtureServer:
    """Serves in-memory files on 127.0.0.1 with HTTP Range support and optional cut-off responses.

    Hand-written because http.server.SimpleHTTPRequestHandler ignores Range headers.
    `requests` records (path, Range header) of every request; `cut_once[path] = n`
    makes the next response for `path` stop after n body bytes, like a dropped connection;
    `ignore_range = True` answers every request with the whole file, like servers without resume;
    `response_headers[path]` are sent with every answer for `path` (the X-Linked-Size / X-Linked-Etag of the hub).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_once: dict[str, int] = {}
        self.response_headers: dict[str, dict[str, str]] = {}
        self.ignore_range = False
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        fixture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                byte_range = self.headers.get("Range")
                fixture.requests.append((self.path, byte_range))
                body = fixture.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if byte_range and not fixture.ignore_range:
                    match = re.fullmatch(r"bytes=(\d+)-", byte_range)
                    assert match, f"unexpected Range header {byte_range!r}"
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_published_headers()
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_published_headers()
                is_html = body.lstrip().startswith(b"<")
                self.send_header("Content-Type", "text/html" if is_html else "application/octet-stream")
                if not fixture.ignore_range:
                    self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = fixture.cut_once.pop(self.path, None)
                self.wfile.write(body[start:] if cut is None else body[start:start + cut])
                self.close_connection = True

            def send_published_headers(self) -> None:
                for name, value in fixture.response_headers.get(self.path, {}).items():
                    self.send_header(name, value)

        return Handler


@pytest.fixture
def server() -> Iterator[FixtureServer]:
    fixture = FixtureServer()
    fixture.thread.start()
    yield fixture
    fixture.httpd.shutdown()
    fixture.httpd.server_close()


def run_script(*args: str, dest: Path, stdin: int | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs data_download.sh with bash; inherited dataset settings are dropped so only `env` counts."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOPRO_", "REALBLUR_", "DOWNLOAD_"))}
    full_env = {**base, **COUNTS_ENV, "DOWNLOAD_RETRY_DELAY": "0", **env}
    return subprocess.run(["bash", str(SCRIPT), *args, "--dest", str(dest)], env=full_env, stdin=stdin,
                          capture_output=True, text=True, timeout=60)


def python_startup(tmp_path: Path, code: str) -> dict[str, str]:
    """Environment under which every python3 the script starts runs ``code`` first (a sitecustomize.py on
    PYTHONPATH): how a full disk is simulated in helpers/archives.py without filling a real one."""
    folder = tmp_path / "python-startup"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": str(folder)}


def realblur_j_members() -> dict[str, bytes]:
    """The members data_download.sh extracts from RealBlur: RealBlur-J and its lists."""
    return {name: data for name, data in realblur_members().items()
            if name.startswith((REALBLUR_J, "RealBlur_J_"))}


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_nothing_installed(dest: Path, name: str) -> None:
    """No final tree and no leftover extraction folder after a failure."""
    assert not (dest / name).exists()
    assert list(dest.glob(f".{name}.partial.*")) == []


def test_help_and_bad_arguments(tmp_path: Path) -> None:
    shown = run_script("--help", dest=tmp_path)
    assert shown.returncode == 0
    assert "Usage:" in shown.stdout and "--archive PATH" in shown.stdout
    bad = run_script("imagenet", dest=tmp_path)
    assert bad.returncode != 0
    assert "unknown argument 'imagenet'" in bad.stderr


@pytest.mark.parametrize("top", ["GOPRO_Large/", ""], ids=["with-top-folder", "train-test-at-root"])
def test_gopro_download_installs_verified_tree(server: FixtureServer, tmp_path: Path, top: str) -> None:
    server.files["/GOPRO_Large.zip"] = zip_bytes(gopro_members(), top)
    (tmp_path / ".GOPRO_Large.partial.killed").mkdir()  # left by a run killed mid-extraction
    result = run_script("gopro", dest=tmp_path, GOPRO_URLS=server.url("/GOPRO_Large.zip"))
    assert result.returncode == 0, result.stderr
    installed = tree_files(tmp_path / "GOPRO_Large")
    marker = installed.pop(".complete").decode()
    assert installed == gopro_members()
    assert "train_pairs=3" in marker and "test_pairs=2" in marker
    assert "train: 3 pairs" in result.stdout and "test: 2 pairs" in result.stdout
    assert not (tmp_path / "downloads").exists()  # downloaded archive removed after success
    assert (tmp_path / "GOPRO_Large").stat().st_mode & 0o777 == 0o755  # not mktemp's private 0700
    assert list(tmp_path.glob(".GOPRO_Large.partial.*")) == []


def test_realblur_download_installs_realblur_j(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/RealBlur.tar.gz"] = REALBLUR_TGZ
    result = run_script("realblur", "--keep-archive", dest=tmp_path, REALBLUR_URLS=server.url("/RealBlur.tar.gz"))
    assert result.returncode == 0, result.stderr
    installed = tree_files(tmp_path / "RealBlur")
    installed.pop(".complete")
    assert installed == realblur_j_members()  # RealBlur-R is left out on purpose
    assert "train: 3 pairs" in result.stdout and "test: 1 pairs" in result.stdout
    assert (tmp_path / "downloads" / "RealBlur.tar.gz").read_bytes() == REALBLUR_TGZ


def test_second_run_does_nothing(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/GOPRO_Large.zip"] = GOPRO_ZIP
    env = {"GOPRO_URLS": server.url("/GOPRO_Large.zip")}
    assert run_script("gopro", dest=tmp_path, **env).returncode == 0
    before = tree_files(tmp_path / "GOPRO_Large")
    server.requests.clear()
    again = run_script("gopro", dest=tmp_path, **env)
    assert again.returncode == 0, again.stderr
    assert "already present" in again.stdout
    assert server.requests == []
    assert tree_files(tmp_path / "GOPRO_Large") == before


@pytest.mark.parametrize(("dataset", "name", "archive", "variable"), [
    ("gopro", "GOPRO_Large", GOPRO_ZIP, "GOPRO_URLS"),
    ("realblur", "RealBlur", REALBLUR_TGZ, "REALBLUR_URLS"),
])
def test_truncated_archive_is_rejected(server: FixtureServer, tmp_path: Path, dataset: str, name: str,
                                       archive: bytes, variable: str) -> None:
    server.files["/archive"] = archive[: len(archive) * 2 // 3]
    result = run_script(dataset, dest=tmp_path, **{variable: server.url("/archive")})
    assert result.returncode != 0
    assert "integrity test (truncated or corrupt)" in result.stderr
    assert "--archive" in result.stderr  # tells the user what to do by hand
    assert_nothing_installed(tmp_path, name)
    assert list((tmp_path / "downloads").iterdir()) == []  # the bad download is not kept


def test_html_page_falls_through_to_next_source(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/quota"] = HTML_PAGE
    server.files["/GOPRO_Large.zip"] = GOPRO_ZIP
    urls = f"{server.url('/quota')} {server.url('/GOPRO_Large.zip')}"
    result = run_script("gopro", dest=tmp_path, GOPRO_URLS=urls)
    assert result.returncode == 0, result.stderr
    assert "is an HTML page, not an archive" in result.stderr
    assert [path for path, _ in server.requests] == ["/quota", "/GOPRO_Large.zip"]
    assert (tmp_path / "GOPRO_Large" / ".complete").is_file()


def test_all_sources_failing_prints_manual_steps(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/quota"] = HTML_PAGE
    urls = f"{server.url('/quota')} {server.url('/missing.zip')}"
    result = run_script("gopro", dest=tmp_path, GOPRO_URLS=urls)
    assert result.returncode != 0
    assert "is an HTML page" in result.stderr and "HTTP 404" in result.stderr
    assert "could not get a valid GOPRO_Large.zip from any source" in result.stderr
    assert "--archive /path/to/GOPRO_Large.zip" in result.stderr
    assert_nothing_installed(tmp_path, "GOPRO_Large")


def test_interrupted_download_resumes_on_next_run(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/GOPRO_Large.zip"] = GOPRO_ZIP
    cut = len(GOPRO_ZIP) // 2
    server.cut_once["/GOPRO_Large.zip"] = cut
    env = {"GOPRO_URLS": server.url("/GOPRO_Large.zip"), "DOWNLOAD_ATTEMPTS": "1"}
    first = run_script("gopro", dest=tmp_path, **env)
    assert first.returncode != 0
    assert "partial file is kept" in first.stderr
    partial, = (tmp_path / "downloads").glob("GOPRO_Large.zip.*.part")
    assert partial.stat().st_size == cut
    assert_nothing_installed(tmp_path, "GOPRO_Large")

    second = run_script("gopro", "--keep-archive", dest=tmp_path, **env)
    assert second.returncode == 0, second.stderr
    assert server.requests == [("/GOPRO_Large.zip", None), ("/GOPRO_Large.zip", f"bytes={cut}-")]
    assert (tmp_path / "downloads" / "GOPRO_Large.zip").read_bytes() == GOPRO_ZIP
    assert not partial.exists()


def test_dropped_connection_is_resumed_within_one_run(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/RealBlur.tar.gz"] = REALBLUR_TGZ
    cut = len(REALBLUR_TGZ) // 3
    server.cut_once["/RealBlur.tar.gz"] = cut
    result = run_script("realblur", dest=tmp_path, REALBLUR_URLS=server.url("/RealBlur.tar.gz"))
    assert result.returncode == 0, result.stderr
    assert "resuming, attempt 2 of 3" in result.stdout
    assert server.requests == [("/RealBlur.tar.gz", None), ("/RealBlur.tar.gz", f"bytes={cut}-")]
    assert (tmp_path / "RealBlur" / ".complete").is_file()


def test_server_without_range_support_restarts_download(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/GOPRO_Large.zip"] = GOPRO_ZIP
    server.ignore_range = True
    server.cut_once["/GOPRO_Large.zip"] = len(GOPRO_ZIP) // 2
    result = run_script("gopro", dest=tmp_path, GOPRO_URLS=server.url("/GOPRO_Large.zip"))
    assert result.returncode == 0, result.stderr
    assert "server cannot resume" in result.stdout
    # A ranged request answered with 200 is refused by curl, then the download starts over.
    assert [rng is not None for _, rng in server.requests] == [False, True, False]
    assert (tmp_path / "GOPRO_Large" / ".complete").is_file()


def test_whole_partial_file_left_by_a_killed_run_is_used(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/GOPRO_Large.zip"] = GOPRO_ZIP
    server.cut_once["/GOPRO_Large.zip"] = 10
    env = {"GOPRO_URLS": server.url("/GOPRO_Large.zip"), "DOWNLOAD_ATTEMPTS": "1"}
    assert run_script("gopro", dest=tmp_path, **env).returncode != 0
    partial, = (tmp_path / "downloads").glob("GOPRO_Large.zip.*.part")
    partial.write_bytes(GOPRO_ZIP)  # as if killed after the last byte, before verification
    result = run_script("gopro", dest=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert server.requests[-1] == ("/GOPRO_Large.zip", f"bytes={len(GOPRO_ZIP)}-")  # answered 416
    assert (tmp_path / "GOPRO_Large" / ".complete").is_file()


def test_all_installs_what_it_can_and_reports_the_failure(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/GOPRO_Large.zip"] = GOPRO_ZIP
    result = run_script("all", dest=tmp_path, GOPRO_URLS=server.url("/GOPRO_Large.zip"),
                        REALBLUR_URLS=server.url("/RealBlur.tar.gz"))
    assert result.returncode != 0
    assert "failed: realblur" in result.stderr
    assert (tmp_path / "GOPRO_Large" / ".complete").is_file()
    assert_nothing_installed(tmp_path, "RealBlur")


def test_local_archive_needs_no_network(server: FixtureServer, tmp_path: Path) -> None:
    archive = tmp_path / "browser download" / "GOPRO_Large.zip"  # a space in the path on purpose
    archive.parent.mkdir()
    archive.write_bytes(GOPRO_ZIP)
    dest = tmp_path / "datasets"
    result = run_script("gopro", "--archive", str(archive), dest=dest, GOPRO_URLS=server.url("/GOPRO_Large.zip"))
    assert result.returncode == 0, result.stderr
    assert server.requests == []
    assert archive.read_bytes() == GOPRO_ZIP  # the user's own archive is never deleted
    installed = tree_files(dest / "GOPRO_Large")
    installed.pop(".complete")
    assert installed == gopro_members()


def test_local_archive_that_is_not_an_archive_fails(tmp_path: Path) -> None:
    page = tmp_path / "RealBlur.tar.gz"
    page.write_bytes(HTML_PAGE)
    result = run_script("realblur", "--archive", str(page), dest=tmp_path / "datasets",
                        REALBLUR_URLS="http://127.0.0.1:9/unused")
    assert result.returncode != 0
    assert "is an HTML page" in result.stderr and "is not a valid RealBlur.tar.gz" in result.stderr
    assert_nothing_installed(tmp_path / "datasets", "RealBlur")


@pytest.mark.parametrize(("dataset", "name", "archive", "env", "message"), [
    ("gopro", "GOPRO_Large", GOPRO_ZIP, {"GOPRO_EXPECTED_TRAIN": "2103"},
     "GOPRO_Large train has 3 blur/sharp pairs, expected 2103"),
    ("realblur", "RealBlur", REALBLUR_TGZ, {"REALBLUR_EXPECTED_TEST": "980"},
     "RealBlur test has 1 blur/sharp pairs, expected 980"),
])
def test_wrong_pair_count_fails(tmp_path: Path, dataset: str, name: str, archive: bytes,
                                env: dict[str, str], message: str) -> None:
    path = tmp_path / "archive"
    path.write_bytes(archive)
    result = run_script(dataset, "--archive", str(path), dest=tmp_path / "datasets", **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert_nothing_installed(tmp_path / "datasets", name)


def test_realblur_list_naming_a_missing_file_fails(tmp_path: Path) -> None:
    members = realblur_members()
    del members[f"{REALBLUR_J}/scene002/blur/blur_1.png"]
    path = tmp_path / "RealBlur.tar.gz"
    path.write_bytes(tgz_bytes(members))
    result = run_script("realblur", "--archive", str(path), dest=tmp_path / "datasets")
    assert result.returncode != 0
    assert f"RealBlur_J_train_list.txt names a missing pair: '{REALBLUR_J}/scene002/gt/gt_1.png'" in result.stderr
    assert_nothing_installed(tmp_path / "datasets", "RealBlur")


def test_archive_without_expected_top_folder_fails(tmp_path: Path) -> None:
    path = tmp_path / "GOPRO_Large.zip"
    path.write_bytes(zip_bytes({"readme.txt": b"not GOPRO"}, "other/"))
    result = run_script("gopro", "--archive", str(path), dest=tmp_path / "datasets")
    assert result.returncode != 0
    assert "no [GOPRO_Large/]train/<sequence>/sharp/*.png" in result.stderr
    assert_nothing_installed(tmp_path / "datasets", "GOPRO_Large")


@pytest.mark.parametrize(("env", "message"), [
    ({"GOPRO_SIZE": str(len(GOPRO_ZIP) + 1)}, f"has {len(GOPRO_ZIP)} bytes, expected {len(GOPRO_ZIP) + 1}"),
    ({"GOPRO_SHA256": "0" * 64}, "sha256 is " + hashlib.sha256(GOPRO_ZIP).hexdigest()),
    ({"GOPRO_SIZE": str(len(GOPRO_ZIP)), "GOPRO_SHA256": hashlib.sha256(GOPRO_ZIP).hexdigest()}, None),
], ids=["wrong-size", "wrong-sha256", "matching-size-and-sha256"])
def test_expected_size_and_checksum(server: FixtureServer, tmp_path: Path, env: dict[str, str],
                                    message: str | None) -> None:
    server.files["/GOPRO_Large.zip"] = GOPRO_ZIP
    result = run_script("gopro", dest=tmp_path, GOPRO_URLS=server.url("/GOPRO_Large.zip"), **env)
    if message is None:
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "GOPRO_Large" / ".complete").is_file()
    else:
        assert result.returncode != 0
        assert message in result.stderr
        assert_nothing_installed(tmp_path, "GOPRO_Large")


def test_unmarked_existing_folder_is_left_alone(server: FixtureServer, tmp_path: Path) -> None:
    own = tmp_path / "GOPRO_Large" / "notes.txt"
    own.parent.mkdir()
    own.write_text("mine")
    result = run_script("gopro", dest=tmp_path, GOPRO_URLS=server.url("/GOPRO_Large.zip"))
    assert result.returncode != 0
    assert "exists but has no .complete marker" in result.stderr
    assert own.read_text() == "mine"
    assert server.requests == []


def test_archive_dir_keeps_the_archive_and_a_new_machine_extracts_it_without_downloading(
        server: FixtureServer, tmp_path: Path) -> None:
    server.files["/GOPRO_Large.zip"] = GOPRO_ZIP
    drive = tmp_path / "drive" / "archives"  # created by the script
    env = {"GOPRO_URLS": server.url("/GOPRO_Large.zip")}
    first = run_script("gopro", "--archive-dir", str(drive), dest=tmp_path / "vm1", **env)
    assert first.returncode == 0, first.stderr
    assert (drive / "GOPRO_Large.zip").read_bytes() == GOPRO_ZIP and "keeping GOPRO_Large.zip" in first.stdout
    assert not (tmp_path / "vm1" / "downloads").exists() and list(drive.iterdir()) == [drive / "GOPRO_Large.zip"]
    server.requests.clear()
    second = run_script("gopro", "--archive-dir", str(drive), dest=tmp_path / "vm2", **env)
    assert second.returncode == 0, second.stderr
    assert server.requests == [] and "instead of downloading" in second.stdout
    assert tree_files(tmp_path / "vm2" / "GOPRO_Large").keys() == tree_files(tmp_path / "vm1" / "GOPRO_Large").keys()
    assert (drive / "GOPRO_Large.zip").read_bytes() == GOPRO_ZIP and not (tmp_path / "vm2" / "downloads").exists()


def test_realblur_as_a_zip_is_recognised_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "RealBlur.tar.gz"  # the name lies, the bytes decide
    path.write_bytes(zip_bytes(realblur_members(), ""))
    result = run_script("realblur", "--archive", str(path), dest=tmp_path / "datasets")
    assert result.returncode == 0, result.stderr
    installed = tree_files(tmp_path / "datasets" / "RealBlur")
    installed.pop(".complete")
    assert installed == realblur_j_members()


def test_help_names_the_authors_hub_as_realblurs_first_source(tmp_path: Path) -> None:
    shown = run_script("--help", dest=tmp_path)
    sources = next(line.split()[1:] for line in shown.stdout.splitlines() if line.split()[:1] == ["realblur"]
                   and "://" in line)
    assert sources == ["https://huggingface.co/datasets/rimchang/RealBlur/resolve/main/RealBlur.tar.gz",
                       "gdrive:17v5Dj0M2WExgxJgsGpEWc-6UyhK1IWWK", "http://cg.postech.ac.kr/research/RealBlur/RealBlur.zip"]


REALBLUR_SHA256 = hashlib.sha256(REALBLUR_TGZ).hexdigest()


@pytest.mark.parametrize(("size", "sha256", "message"), [
    (len(REALBLUR_TGZ), REALBLUR_SHA256, None),
    (len(REALBLUR_TGZ), "0" * 64,
     f"sha256 is {REALBLUR_SHA256}, expected {'0' * 64} (the sha256 its source published"),
    (len(REALBLUR_TGZ) + 1, REALBLUR_SHA256,
     f"has {len(REALBLUR_TGZ)} bytes, expected {len(REALBLUR_TGZ) + 1} (the size its source published"),
], ids=["matching", "other-sha256", "other-size"])
def test_hub_download_is_checked_against_the_size_and_sha256_it_publishes(
        server: FixtureServer, tmp_path: Path, size: int, sha256: str, message: str | None) -> None:
    """The hub sends X-Linked-Size and X-Linked-Etag (a quoted sha256); a download that differs falls through."""
    hub, mirror = "/datasets/rimchang/RealBlur/resolve/main/RealBlur.tar.gz", "/mirror/RealBlur.tar.gz"
    server.files[hub] = server.files[mirror] = REALBLUR_TGZ
    server.response_headers[hub] = {"X-Linked-Size": str(size), "X-Linked-Etag": f'"{sha256}"'}
    result = run_script("realblur", dest=tmp_path, REALBLUR_URLS=f"{server.url(hub)} {server.url(mirror)}")
    assert result.returncode == 0, result.stderr
    assert f"publishes size {size} and sha256 {sha256}: the download is checked against them" in result.stdout
    if message is None:
        assert [path for path, _ in server.requests] == [hub]
    else:
        assert message in result.stderr
        assert [path for path, _ in server.requests] == [hub, mirror]  # the next source, which publishes nothing
    assert (tmp_path / "RealBlur" / ".complete").is_file()


def test_failing_realblur_sources_say_where_to_fetch_it_by_hand(server: FixtureServer, tmp_path: Path) -> None:
    server.files["/quota"] = HTML_PAGE
    fake_gdown = tmp_path / "bin" / "gdown"  # Drive refusing, without leaving the machine
    fake_gdown.parent.mkdir()
    fake_gdown.write_text("#!/bin/sh\necho 'Too many users have viewed or downloaded this file recently' >&2\nexit 1\n")
    fake_gdown.chmod(0o755)
    result = run_script("realblur", dest=tmp_path, REALBLUR_URLS=f"gdrive:not-an-id {server.url('/quota')}",
                        PATH=f"{fake_gdown.parent}:{os.environ['PATH']}")
    assert result.returncode != 0
    assert "'too many users'" in result.stderr and "--archive /path/to/RealBlur.tar.gz" in result.stderr
    assert "https://drive.google.com/file/d/not-an-id/view" in result.stderr
    assert "https://drive.google.com/drive/folders/1xUNAAVzLhNQuGriKTk1hrE-MT-H_56fq" in result.stderr


# ----------------------------------------------------------------------------- hostile archives


def test_archive_whose_root_is_its_parent_is_refused(tmp_path: Path) -> None:
    """Members under ../ must not make --dest itself the dataset root (it held the user's own GOPRO-like tree)."""
    dest = tmp_path / "datasets"
    for name, data in gopro_members().items():  # the user's own files, with the expected pair counts
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data)
    dest.chmod(0o700)
    archive = tmp_path / "GOPRO_Large.zip"
    archive.write_bytes(zip_bytes(gopro_members(), "../"))
    result = run_script("gopro", "--archive", str(archive), dest=dest)
    assert result.returncode != 0
    assert "unsafe archive member ../train/" in result.stderr
    assert "disk full" not in result.stderr
    assert not (dest / ".complete").exists() and dest.stat().st_mode & 0o777 == 0o700
    assert {name: data for name, data in tree_files(dest).items() if name != ".data_download.lock"} == gopro_members()
    assert_nothing_installed(dest, "GOPRO_Large")


def test_zip_with_a_symlink_member_is_refused(tmp_path: Path) -> None:
    link = "GOPRO_Large/train/GOPR0372_07_00/sharp/000003.png"
    archive = tmp_path / "GOPRO_Large.zip"
    archive.write_bytes(zip_bytes(gopro_members(), "GOPRO_Large/", symlinks={link: "/etc/hostname"}))
    result = run_script("gopro", "--archive", str(archive), dest=tmp_path / "datasets")
    assert result.returncode != 0
    assert f"unsafe archive member {link} (a symbolic link)" in result.stderr
    assert_nothing_installed(tmp_path / "datasets", "GOPRO_Large")


@pytest.mark.parametrize("kind, what", [(tarfile.SYMTYPE, "a symbolic link"), (tarfile.LNKTYPE, "a hard link")], ids=["symlink", "hardlink"])
def test_tar_with_a_link_member_is_refused(tmp_path: Path, kind: bytes, what: str) -> None:
    link = f"{REALBLUR_J}/scene001/gt/gt_9.png"
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(tgz_bytes(realblur_members(), links={link: (kind, "/etc/hostname")}))
    result = run_script("realblur", "--archive", str(archive), dest=tmp_path / "datasets")
    assert result.returncode != 0
    assert f"unsafe archive member {link} ({what})" in result.stderr
    assert_nothing_installed(tmp_path / "datasets", "RealBlur")


def test_tar_member_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    members = {**realblur_members(), "../escape.txt": b"outside"}
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(tgz_bytes(members))
    result = run_script("realblur", "--archive", str(archive), dest=tmp_path / "datasets")
    assert result.returncode != 0
    assert "unsafe archive member ../escape.txt (leaves the dataset folder)" in result.stderr
    assert not (tmp_path / "escape.txt").exists()
    assert_nothing_installed(tmp_path / "datasets", "RealBlur")


@pytest.mark.parametrize("name", ["../x", "/tmp/x"], ids=["dot-dot", "absolute"])
def test_tar_member_behind_an_owner_name_with_a_space_is_refused(tmp_path: Path, name: str) -> None:
    """`tar -tv` prints owner and group before the name: a space in them once shifted the name past the check."""
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(tgz_bytes({**realblur_members(), name: b"outside"}, owner="evil user"))
    result = run_script("realblur", "--archive", str(archive), dest=tmp_path / "datasets")
    assert result.returncode != 0
    assert f"unsafe archive member {name} (leaves the dataset folder)" in result.stderr
    assert not (tmp_path / "x").exists()
    assert_nothing_installed(tmp_path / "datasets", "RealBlur")


@pytest.mark.parametrize(("appended", "message"), [
    ([("GOPRO_Large/train/GOPR0372_07_00/sharp/000001.png", png_bytes(200))],
     "archive member GOPRO_Large/train/GOPR0372_07_00/sharp/000001.png appears twice"),
    ([("GOPRO_Large/train/GOPR0372_07_00/sharp/000001.png/000002.png", png_bytes(200))],
     "archive member GOPRO_Large/train/GOPR0372_07_00/sharp/000001.png is both a file and a folder"),
], ids=["duplicate-member", "file-and-folder"])
def test_zip_member_extraction_would_ask_about_fails_without_a_prompt(
        tmp_path: Path, appended: list[tuple[str, bytes]], message: str) -> None:
    """unzip asked "replace ...? [y]es, [n]o" and waited on an open stdin; now the cause is named, nothing asked."""
    archive = tmp_path / "GOPRO_Large.zip"
    archive.write_bytes(zip_bytes(gopro_members(), "GOPRO_Large/", appended=appended))
    read_end, write_end = os.pipe()  # stdin stays open, as in a terminal or a notebook
    try:
        result = run_script("gopro", "--archive", str(archive), dest=tmp_path / "datasets", stdin=read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode != 0
    assert message in result.stderr
    assert "replace" not in result.stdout + result.stderr and "disk full" not in result.stderr
    assert_nothing_installed(tmp_path / "datasets", "GOPRO_Large")


def test_archive_larger_than_the_free_space_is_refused_before_extracting(tmp_path: Path) -> None:
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(REALBLUR_TGZ)
    fake_full_disk = python_startup(tmp_path, (
        "import collections, shutil\n"
        "Usage = collections.namedtuple('Usage', 'total used free')\n"
        "shutil.disk_usage = lambda path: Usage(10**9, 10**9 - 100, 100)\n"))
    result = run_script("realblur", "--archive", str(archive), dest=tmp_path / "datasets", **fake_full_disk)
    needed = sum(len(data) for data in realblur_j_members().values())  # RealBlur-R is not extracted, not counted
    assert result.returncode != 0
    assert f"extracting {archive} needs {needed} bytes" in result.stderr
    assert "only 100 bytes (0.0 GiB) are free" in result.stderr
    assert_nothing_installed(tmp_path / "datasets", "RealBlur")
    assert archive.read_bytes() == REALBLUR_TGZ


def test_disk_filling_up_during_extraction_is_named_in_one_line(tmp_path: Path) -> None:
    archive = tmp_path / "GOPRO_Large.zip"
    archive.write_bytes(GOPRO_ZIP)
    disk_fills_up = python_startup(tmp_path, (
        "import errno, os, shutil\n"
        "def copy_to_a_full_disk(source, target, length=0):\n"
        "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "shutil.copyfileobj = copy_to_a_full_disk\n"))
    read_end, write_end = os.pipe()
    try:
        result = run_script("gopro", "--archive", str(archive), dest=tmp_path / "datasets", stdin=read_end,
                            **disk_fills_up)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode != 0
    cause, = [line for line in result.stderr.splitlines() if "disk full" in line]
    assert f"disk full while extracting GOPRO_Large/train/GOPR0372_07_00/blur/000001.png from {archive}" in cause
    assert "Traceback" not in result.stderr
    assert_nothing_installed(tmp_path / "datasets", "GOPRO_Large")


def tar_with_a_damaged_header() -> bytes:
    """RealBlur's tar.gz with the second member's header damaged (bad checksum): tarfile alone would stop there
    as if the archive ended, so the members after it would go missing without a word."""
    raw = bytearray(gzip.decompress(REALBLUR_TGZ))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as archive:
        second = archive.getmembers()[1]
    raw[second.offset] ^= 0xFF
    return gzip.compress(bytes(raw))


def gzip_with_a_wrong_checksum() -> bytes:
    damaged = bytearray(REALBLUR_TGZ)
    damaged[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    return bytes(damaged)


@pytest.mark.parametrize(("archive_bytes", "message"), [
    (tar_with_a_damaged_header(), "data after the end of the tar archive (a damaged member header?)"),
    (gzip_with_a_wrong_checksum(), "failed the tar.gz integrity test (truncated or corrupt): CRC check failed"),
], ids=["damaged-member-header", "gzip-checksum"])
def test_damaged_tar_gz_is_refused(tmp_path: Path, archive_bytes: bytes, message: str) -> None:
    archive = tmp_path / "RealBlur.tar.gz"
    archive.write_bytes(archive_bytes)
    result = run_script("realblur", "--archive", str(archive), dest=tmp_path / "datasets")
    assert result.returncode != 0
    assert message in result.stderr
    assert_nothing_installed(tmp_path / "datasets", "RealBlur")
