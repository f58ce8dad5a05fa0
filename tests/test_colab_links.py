"""``colab-links`` refuses what would corrupt the project (issue 28, item 5): owner, name, branch and clone URL are
checked with the rules GitHub and Git use before anything is written."""

from __future__ import annotations

import shutil
import subprocess
from argparse import Namespace
from pathlib import Path

import pytest

from helpers import colab
from helpers.commands import notebooks as notebook_commands
from test_notebooks import copy_of_the_linked_files

git = pytest.mark.skipif(shutil.which("git") is None, reason="Git itself is the reference")

BRANCHES = ["main", "colab", "feature/x-1", "v1.2", "release/2024.1", "a.b/c_d", "../../x", "x/../y", "-x", "x y",
            "x\ny", "x~1", "x^", "x:y", "x?", "x*", "x[1", "x\\y", ".hidden", "x/.y", "x.lock", "x/y.lock", "x/", "/x",
            "x//y", "x.", "x@{1}", "@", "", "x\x7f", "naïve"]


@git
@pytest.mark.parametrize("branch", BRANCHES, ids=[repr(branch) for branch in BRANCHES])
def test_branch_names_are_judged_as_git_judges_them(branch: str) -> None:
    # the full ref name, so that '@' is not read as "the current branch"; `git branch` adds its own two rules:
    # no leading '-', and no branch named '@'
    checked = subprocess.run(["git", "check-ref-format", f"refs/heads/{branch}"], capture_output=True, check=False)
    accepted_by_git = checked.returncode == 0 and not branch.startswith("-") and branch != "@"
    assert (colab._branch_problem(branch) is None) == accepted_by_git


@pytest.mark.parametrize("repo", ["alice/x\n", "alice/x\ny", "-alice/x", "alice-/x", "al--ice/x", "a" * 40 + "/x",
                                  "alice/" + "x" * 101, "alice/..", "alice/.", "alice/x/y", "alice", "alice/x y", "alice/x\""])
def test_owner_and_name_follow_githubs_rules(tmp_path: Path, repo: str) -> None:
    with pytest.raises(ValueError, match="OWNER/NAME as GitHub allows them"):
        colab.rewrite_colab_links(repo, root=tmp_path)  # refused before any file is read or written
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("url", ["https://github.com/alice/x\nimport os", "https://github.com/alice/x\"", "https://x/ y",
                                 "https://x/\x01", "javascript:alert(1)", "github.com/alice/x", "https://x/a\\b", ""])
def test_clone_urls_git_could_not_read_or_that_break_the_cell_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="not a clone URL"):
        colab.rewrite_colab_links("alice/x", clone_url=url or " ", root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_good_addresses_are_written_and_the_project_stays_valid_python(tmp_path: Path) -> None:
    copy_of_the_linked_files(tmp_path)
    for url in ("git@github.com:alice/x.git", "ssh://git@example.org/x.git", "file:///srv/mirror.git"):
        colab.rewrite_colab_links("alice-b/x.y_z", "feature/x-1", clone_url=url, root=tmp_path)
        source = (tmp_path / "helpers" / "colab.py").read_text()
        compile(source, "colab.py", "exec")  # still Python: the command can run again
        assert f'REPO_URL = "{url}"' in source and 'BRANCH = "feature/x-1"' in source


def test_the_command_refuses_a_newline_in_one_line_with_exit_code_2(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(colab, "LOCAL_ROOT", tmp_path)
    arguments = Namespace(repo="alice/x", branch="main", clone_url="https://github.com/alice/x\n\"")
    assert notebook_commands.colab_links_command(arguments) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not any(tmp_path.iterdir())
