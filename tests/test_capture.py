"""Automatic capture at run start: git state (real repositories, the real git program),
environment, and the run's context (real subprocesses for entry points)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from lineagehub.ingest import capture
from lineagehub.ingest.capture import (
    CodeState,
    capture_code,
    capture_context,
    capture_environment,
    redact_argv,
)
from lineagehub.vocabulary import CodeCommit, packages_digest

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git program")

PYTHON = sys.executable
POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX file names, modes and symlinks")


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git configuration (an excludesFile or diff settings would change
    the results) and no repository above tmp_path; identities by environment."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo, input=stdin, capture_output=True, check=True, timeout=30
    )
    return proc.stdout.decode()


def make_repo(tmp_path: Path, name: str = "repo", object_format: str = "sha1") -> Path:
    """A repository with one commit: README.md and a .gitignore that ignores *.log."""
    repo = tmp_path / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main", f"--object-format={object_format}")
    (repo / "README.md").write_text("hello\nworld\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def code(path: Path, max_diff_bytes: int = capture.DEFAULT_MAX_DIFF_BYTES) -> CodeState:
    state = capture_code(path, max_diff_bytes=max_diff_bytes)
    assert state is not None
    return state


# --- code ---------------------------------------------------------------------------------


def test_clean_repo(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    start = time.perf_counter()
    state = code(repo)
    assert time.perf_counter() - start < 1.0
    assert state.commit.sha == head(repo)
    assert state.commit.branch == "main"
    assert not state.commit.dirty
    assert state.diff is None and state.commit.diff_digest is None
    assert state.toplevel.resolve() == repo.resolve()
    assert state.commit.node_id.endswith("@" + head(repo))


def test_path_below_the_top_level_and_a_file_path(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "src" / "pkg").mkdir(parents=True)
    assert code(repo / "src" / "pkg").toplevel.resolve() == repo.resolve()
    assert code(repo / "README.md").commit.sha == head(repo)


def test_modified_tracked_file(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "README.md").write_text("hello\nthere\n")
    state = code(repo)
    assert state.commit.dirty
    assert state.diff is not None
    assert b"-world\n+there\n" in state.diff
    assert state.commit.diff_digest == "sha256:" + hashlib.sha256(state.diff).hexdigest()
    assert state.commit.node_id.endswith(f"{head(repo)}+{state.commit.diff_digest[7:23]}")
    assert not state.diff_truncated


def test_staged_change_is_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "README.md").write_text("staged\n")
    git(repo, "add", "README.md")
    state = code(repo)
    assert state.commit.dirty and state.diff is not None and b"+staged" in state.diff


def test_same_change_same_id_and_different_change_different_id(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "README.md").write_text("v1\n")
    first, again = code(repo).commit, code(repo).commit
    (repo / "README.md").write_text("v2\n")
    other = code(repo).commit
    assert first.node_id == again.node_id != other.node_id


def test_untracked_file_is_dirty_and_in_the_diff(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "train.py").write_text("print('hi')\n")
    state = code(repo)
    assert state.commit.dirty
    assert state.diff is not None
    assert b"+++ b/train.py\n" in state.diff and b"+print('hi')\n" in state.diff


def test_ignored_file_is_not_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "debug.log").write_text("noise\n")
    state = code(repo)
    assert not state.commit.dirty and state.diff is None


def _untracked_zoo(repo: Path) -> None:
    """Untracked files of every kind a patch has to carry."""
    (repo / "new.txt").write_text("line1\nline2\n")
    (repo / "with space.txt").write_bytes(b"no newline at the end")
    (repo / "na\u00efve.txt").write_text("\u00fc\n", encoding="utf-8")
    (repo / 'quo"te.txt').write_text("q\n")
    (repo / "empty").write_bytes(b"")
    (repo / "one").write_text("single line\n")
    (repo / "crlf.txt").write_bytes(b"a\r\nb\r\n")
    (repo / "data.bin").write_bytes(bytes(range(256)) * 3)
    (repo / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "dir").mkdir()
    (repo / "dir" / "nested.txt").write_text("n\n")
    (repo / "link").symlink_to("new.txt")


@POSIX
@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
def test_untracked_patches_are_byte_for_byte_what_git_shows(
    tmp_path: Path, object_format: str
) -> None:
    """The untracked part of the diff equals git's own: ``git add -N`` then ``git diff``."""
    repo = make_repo(tmp_path, object_format=object_format)
    _untracked_zoo(repo)
    state = code(repo)
    assert state.diff is not None and not state.diff_truncated
    git(repo, "add", "-N", ".")
    expected = subprocess.run(
        ["git", *capture._GIT_CONFIG, "diff", *capture._DIFF_OPTIONS, "HEAD"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    assert state.diff == expected


@POSIX
def test_diff_applies_on_a_checkout_of_head(tmp_path: Path) -> None:
    """The diff reproduces the working tree: tracked changes, deletions, untracked files."""
    repo = make_repo(tmp_path)
    (repo / "gone.txt").write_text("to be deleted\n")
    (repo / "model.bin").write_bytes(bytes(range(200)))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "second")
    (repo / "README.md").write_text("hello\nchanged\n")
    (repo / "gone.txt").unlink()
    (repo / "model.bin").write_bytes(bytes(range(200, 256)) + b"\0")
    _untracked_zoo(repo)
    state = code(repo)
    assert state.diff is not None

    copy = tmp_path / "copy"
    git(tmp_path, "clone", "-q", str(repo), str(copy))
    git(copy, "apply", "--binary", "-", stdin=state.diff)

    def tree(root: Path) -> dict[str, tuple[bytes, bool]]:
        files = {}
        for p in root.rglob("*"):
            rel = p.relative_to(root).as_posix()
            if rel.startswith(".git/") or rel == ".git" or (p.is_dir() and not p.is_symlink()):
                continue
            content = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            files[rel] = (content, p.is_symlink() or os.access(p, os.X_OK))
        return files

    assert tree(copy) == tree(repo)


def test_detached_head_has_no_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "checkout", "-q", "--detach")
    state = code(repo)
    assert state.commit.branch is None and state.commit.sha == head(repo)


def test_remote_credentials_are_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    repo = make_repo(tmp_path)
    git(repo, "remote", "add", "origin", "https://user:token@github.com/org/repo.git")
    with caplog.at_level(logging.DEBUG, logger="lineagehub.ingest.capture"):
        commit = code(repo).commit
    assert "token" not in commit.repo and "user" not in commit.repo
    assert "token" not in caplog.text
    ssh = CodeCommit(repo="git@github.com:org/repo.git", sha=commit.sha)
    assert commit.node_id == ssh.node_id == f"commit:github.com/org/repo@{head(repo)}"


def test_origin_is_preferred_else_the_first_remote(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    git(repo, "remote", "add", "upstream", "https://example.com/up/stream.git")
    assert code(repo).commit.repo == "https://example.com/up/stream.git"
    git(repo, "remote", "add", "origin", "git@github.com:org/repo.git")
    assert code(repo).commit.repo == "git@github.com:org/repo.git"


def test_no_remote_is_a_file_uri_of_the_top_level(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    state = code(repo)
    assert state.commit.repo == state.toplevel.as_uri()
    assert state.commit.repo.startswith("file://")


def test_local_path_remote(tmp_path: Path) -> None:
    upstream = make_repo(tmp_path, "upstream")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(upstream), str(clone))
    git(clone, "remote", "set-url", "origin", "../upstream")
    assert code(clone).commit.repo == str(upstream.resolve())


def test_not_a_repository(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with caplog.at_level(logging.DEBUG, logger="lineagehub.ingest.capture"):
        assert capture_code(plain) is None
        assert capture_code(tmp_path / "does-not-exist") is None
    assert "not" in caplog.text


def test_repository_without_commits_is_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    with caplog.at_level(logging.DEBUG, logger="lineagehub.ingest.capture"):
        assert capture_code(repo) is None
    assert "no commits" in caplog.text


def test_git_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    repo = make_repo(tmp_path)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with caplog.at_level(logging.DEBUG, logger="lineagehub.ingest.capture"):
        assert capture_code(repo) is None
    assert "no git program" in caplog.text


@POSIX
def test_git_hanging_times_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A git that never answers (and whose child keeps the pipes open) costs the timeout."""
    repo = make_repo(tmp_path)
    fake = tmp_path / "slow-bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nsleep 30 &\nsleep 30\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="lineagehub.ingest.capture"):
        assert capture_code(repo, timeout=0.3) is None
    assert time.perf_counter() - start < 2.0
    assert "longer than" in caplog.text


def test_diff_is_capped_and_says_so(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "README.md").write_text("x" * 50 + "\n" * 5000)
    (repo / "later.txt").write_text("untracked\n")
    state = code(repo, max_diff_bytes=2000)
    assert state.diff is not None and state.diff_truncated
    assert state.diff.startswith(b"diff --git a/README.md b/README.md\n")
    assert b"# lineagehub: diff of tracked files truncated at 2000 bytes" in state.diff
    assert b"1 untracked files not included" in state.diff
    assert len(state.diff) < 2200
    assert state.commit.diff_digest == "sha256:" + hashlib.sha256(state.diff).hexdigest()


def test_large_untracked_file_is_named_not_read(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "big.csv").write_bytes(b"1,2,3\n" * 10_000)
    (repo / "small.py").write_text("y = 2\n")
    state = code(repo, max_diff_bytes=4096)
    assert state.diff is not None and state.diff_truncated
    assert b"+y = 2\n" in state.diff
    assert b"# lineagehub: untracked file not included (60000 bytes): big.csv\n" in state.diff


# --- environment --------------------------------------------------------------------------


def test_environment_digest_is_the_packages_text_digest() -> None:
    state = capture_environment()
    env = state.environment
    assert env.packages is not None
    assert "pydantic" in env.packages
    assert env.packages_digest == "sha256:" + hashlib.sha256(state.packages_text).hexdigest()
    assert env.packages_digest == packages_digest(env.packages)
    lines = state.packages_text.decode().split("\n")
    assert lines == sorted(lines) and len(lines) == len(env.packages)
    assert all(name == name.lower() and "_" not in name for name in env.packages)
    assert env.python.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")


def test_environment_is_cached_and_refreshable() -> None:
    first = capture_environment()
    assert capture_environment() is first
    fresh = capture_environment(refresh=True)
    assert fresh is not first and fresh == first
    assert fresh.environment.node_id == first.environment.node_id


def test_platform_string_is_stable() -> None:
    import platform

    plat = capture_environment().environment.platform
    assert plat.startswith(f"{sys.platform}-{platform.machine()}")
    if sys.platform.startswith("linux"):
        assert platform.release() not in plat  # the kernel changes with every update


# --- context ------------------------------------------------------------------------------

_PRINT_CONTEXT = """\
import json, sys
from lineagehub.ingest.capture import capture_context
ctx = capture_context()
print(json.dumps({"user": ctx.user, "host": ctx.host, "entry_point": ctx.entry_point,
                  "argv": list(ctx.argv), "notebook": ctx.notebook_path is not None,
                  "ipython_imported": "IPython" in sys.modules}))
"""


def run_python(args: list[str], cwd: Path, stdin: str | None = None) -> dict[str, object]:
    proc = subprocess.run(
        [PYTHON, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("{"))
    result: dict[str, object] = json.loads(line)
    return result


def test_context_of_a_script_in_a_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "scripts").mkdir()
    (repo / "scripts" / "train.py").write_text(_PRINT_CONTEXT)
    ctx = run_python(
        ["scripts/train.py", "--lr", "0.1", "--api-key=abc123", "--token", "s3cr3t"], cwd=repo
    )
    assert ctx["entry_point"] == "scripts/train.py"
    argv = ctx["argv"]
    assert isinstance(argv, list)
    assert argv[1:] == ["--lr", "0.1", "--api-key=***", "--token", "***"]
    assert ctx["user"] and ctx["host"]
    assert ctx["notebook"] is False
    assert ctx["ipython_imported"] is False


def test_context_of_a_script_outside_a_repository_is_absolute(tmp_path: Path) -> None:
    folder = tmp_path / "loose"
    folder.mkdir()
    (folder / "job.py").write_text(_PRINT_CONTEXT)
    ctx = run_python(["job.py"], cwd=folder)
    assert ctx["entry_point"] == str((folder / "job.py").resolve())


def test_context_of_a_module(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "mypkg").mkdir()
    (repo / "mypkg" / "__init__.py").write_text("")
    (repo / "mypkg" / "train.py").write_text(_PRINT_CONTEXT)
    (repo / "mypkg" / "__main__.py").write_text(_PRINT_CONTEXT)
    assert run_python(["-m", "mypkg.train"], cwd=repo)["entry_point"] == "mypkg.train"
    assert run_python(["-m", "mypkg"], cwd=repo)["entry_point"] == "mypkg"


def test_context_of_command_and_repl(tmp_path: Path) -> None:
    assert run_python(["-c", _PRINT_CONTEXT], cwd=tmp_path)["entry_point"] == "<command>"
    repl = run_python(["-q", "-i"], cwd=tmp_path, stdin=_PRINT_CONTEXT)
    assert repl["entry_point"] == "<interactive>"


def test_in_process_context_with_code_state(tmp_path: Path) -> None:
    ctx = capture_context(code=code(make_repo(tmp_path)))
    assert ctx.user is not None and ctx.agent is not None and ctx.agent.name == ctx.user
    assert ctx.entry_point  # pytest's own entry point: whatever it is, it is there


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--password=hunter2"], ["--password=***"]),
        (["--password", "hunter2", "--epochs", "3"], ["--password", "***", "--epochs", "3"]),
        (["--db-password", "--verbose"], ["--db-password", "--verbose"]),  # a flag, no value
        (["db.password=x", "HF_TOKEN=y", "lr=0.1"], ["db.password=***", "HF_TOKEN=***", "lr=0.1"]),
        (
            ["--api_key", "k", "--secret-key=s", "--key", "v"],
            ["--api_key", "***", "--secret-key=***", "--key", "***"],
        ),
        (
            ["--key-file", "/etc/k.pem", "--keyword", "x"],
            ["--key-file", "/etc/k.pem", "--keyword", "x"],
        ),
        (["--data", "https://u:p@host/x.csv"], ["--data", "https://***@host/x.csv"]),
        (["-auth", "bearer"], ["-auth", "***"]),
    ],
)
def test_redact_argv(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


class _FakeShell:
    """What capture looks at on an IPython kernel's shell: ``kernel`` and ``user_ns``."""

    def __init__(self, user_ns: dict[str, object], kernel: object = True) -> None:
        self.kernel = kernel
        self.user_ns = user_ns


def _fake_ipython(monkeypatch: pytest.MonkeyPatch, shell: _FakeShell) -> None:
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)


@pytest.mark.parametrize("key", ["__vsc_ipynb_file__", "__session__"])
def test_notebook_path_and_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    repo = make_repo(tmp_path)
    (repo / "nb").mkdir()
    notebook = repo / "nb" / "explore.ipynb"
    notebook.write_text('{"cells": [], "nbformat": 4}')
    _fake_ipython(monkeypatch, _FakeShell({key: str(notebook)}))
    ctx = capture_context(code=code(repo))
    assert ctx.notebook_path == notebook.resolve()
    assert ctx.notebook_snapshot == notebook.read_bytes()
    assert ctx.entry_point == "nb/explore.ipynb"
    # The default folder for the code state is the notebook's, when there is no script.
    assert capture._notebook_path() == notebook.resolve()


def test_notebook_from_jupyter_session_variable_and_size_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = tmp_path / "big.ipynb"
    notebook.write_bytes(b"{" + b" " * 5000 + b"}")
    _fake_ipython(monkeypatch, _FakeShell({}))
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    ctx = capture_context(max_notebook_bytes=1000)
    assert ctx.notebook_path == notebook.resolve()
    assert ctx.notebook_snapshot is None  # too large: no half a notebook


def test_kernel_without_a_known_notebook_and_terminal_ipython(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_ipython(monkeypatch, _FakeShell({}))
    assert capture_context().entry_point == "<notebook>"
    _fake_ipython(monkeypatch, _FakeShell({}, kernel=None))
    ctx = capture_context()
    assert ctx.notebook_path is None and ctx.entry_point != "<notebook>"
