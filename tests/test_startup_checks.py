"""Start-up checks as a service user sees them: every output path the daemon cannot write is one line naming the
config key, the path and the user; a read-only prompt cache falls back to the per-user cache.

Root ignores file modes, and these tests run as root in CI containers. The daemon is therefore started through
``setpriv`` with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH removed from its bounding set: it is still uid 0,
but the kernel now checks modes for it as for any user, so a folder of mode 0555 is as unwritable to it as a
folder of another user is to a service account. (A second Unix user cannot be used here: the interpreter lives
under /root, mode 0700.) Run as an ordinary user, the tests need no prefix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_config, write_tone_scene

EVENT = [{"label": "tone", "prompts": ["a beep"], "threshold": 0.5}]


@pytest.fixture(scope="module")
def unprivileged() -> list[str]:
    """The command prefix that makes file modes apply to the daemon; checked to work, never skipped."""
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"sd-mode-probe-{os.getpid()}"
    probe.mkdir(mode=0o555)
    try:
        result = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"],
                                capture_output=True, text=True, timeout=60)
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe)
    assert result.returncode != 0 and "Permission denied" in result.stderr, \
        f"file modes do not apply to the daemon with {prefix}: {result}"
    return prefix


def run_daemon(prefix: list[str], tmp_path: Path, config: Path, **env: str) -> subprocess.CompletedProcess:
    scene = write_tone_scene(tmp_path / "scene.wav", 4.0)
    full_env = {**os.environ, "HOME": str(tmp_path / "home"), **env}
    full_env.pop("XDG_CACHE_HOME", None) if "XDG_CACHE_HOME" not in env else None
    return subprocess.run([*prefix, sys.executable, "-m", "streamdetect", "run", "--config", str(config), "--input",
                           str(scene)], capture_output=True, text=True, timeout=300, env=full_env)


def read_only(path: Path, mode: int = 0o555) -> Path:
    path.chmod(mode)
    return path


@pytest.fixture
def places(tmp_path):
    ok = tmp_path / "ok"
    ro = tmp_path / "ro"
    ok.mkdir()
    ro.mkdir()
    (tmp_path / "home").mkdir()
    (ok / "ro.db").write_bytes(b"")
    read_only(ok / "ro.db", 0o444)
    read_only(ro)
    yield ok, ro
    for path in (ro, ok / "ro.db"):
        path.chmod(0o755)


CASES = {
    "sqlite file read-only": ({"type": "sqlite", "path": "{ok}/ro.db"}, "sinks[0].path: sqlite database {ok}/ro.db"),
    "sqlite in read-only folder": ({"type": "sqlite", "path": "{ro}/events.db"},
                                   "sinks[0].path: sqlite database {ro}/events.db"),
    "jsonl in read-only folder": ({"type": "jsonl", "path": "{ro}/out.jsonl"},
                                  "sinks[0].path: jsonl file {ro}/out.jsonl"),
    "spool_dir cannot be created": ({"type": "webhook", "url": "http://127.0.0.1:9/hook", "spool_dir": "{ro}/a/b"},
                                    "sinks[0].spool_dir: webhook spool folder {ro}/a/b: cannot create the folder"),
    "clips folder read-only": ({"type": "clips", "dir": "{ro}"}, "sinks[0].dir: clips folder {ro}: cannot create "
                                                               "files"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unwritable_output_is_one_line_naming_path_and_user(unprivileged, tiny_model, tmp_path, places, case):
    ok, ro = places
    sink, expected = CASES[case]
    sink = {k: v.format(ok=ok, ro=ro) if isinstance(v, str) else v for k, v in sink.items()}
    config = write_config(tmp_path / "c.yaml", tiny_model, EVENT, sinks=[sink], runtime={"device": "cpu"})
    result = run_daemon(unprivileged, tmp_path, config)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("streamdetect: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected.format(ok=ok, ro=ro) in lines[0] and "Permission denied" in lines[0], lines[0]
    assert f"streamdetect runs as {_user()}" in lines[0], lines[0]


def _user() -> str:
    import pwd

    return f"{pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"


def test_every_unwritable_output_is_reported_at_once(unprivileged, tiny_model, tmp_path, places):
    ok, ro = places
    config = write_config(tmp_path / "c.yaml", tiny_model, EVENT, runtime={"device": "cpu"},
                          sinks=[{"type": "sqlite", "path": str(ok / "ro.db")},
                                 {"type": "jsonl", "path": str(ro / "x.jsonl")}],
                          embedding_log={"dir": str(ro / "log")})
    result = run_daemon(unprivileged, tmp_path, config)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    for key in ("sinks[0].path", "sinks[1].path", "embedding_log.dir"):
        assert f"{key}: " in result.stderr, result.stderr


@pytest.fixture
def read_only_model(tiny_model, tmp_path):
    """A model folder the daemon cannot write, as when root exported it and a service user runs it."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model, ignore=shutil.ignore_patterns("prompt_cache"))
    (model / "prompt_cache").mkdir()
    read_only(model / "prompt_cache")
    read_only(model)
    yield model
    model.chmod(0o755)
    (model / "prompt_cache").chmod(0o755)


@pytest.mark.parametrize("xdg", [False, True])
def test_a_read_only_prompt_cache_falls_back_to_the_per_user_cache(unprivileged, read_only_model, tmp_path, xdg):
    (tmp_path / "home").mkdir()
    config = write_config(tmp_path / "c.yaml", read_only_model, EVENT, sinks=[{"type": "jsonl",
                          "path": str(tmp_path / "out.jsonl")}], runtime={"device": "cpu"})
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")} if xdg else {}
    result = run_daemon(unprivileged, tmp_path, config, **env)
    assert result.returncode == 0, result.stderr
    cache = (tmp_path / "xdg" if xdg else tmp_path / "home" / ".cache") / "streamdetect" / "prompt_cache"
    assert f"prompt cache {read_only_model / 'prompt_cache'}: cannot create files" in result.stderr, result.stderr
    assert f"using the per-user cache {cache}" in result.stderr, result.stderr
    assert list(cache.rglob("*.npy")), "nothing was cached in the per-user cache"
    assert not list((read_only_model / "prompt_cache").iterdir())


def test_no_writable_prompt_cache_at_all_is_one_line(unprivileged, read_only_model, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    read_only(home)
    try:
        config = write_config(tmp_path / "c.yaml", read_only_model, EVENT, sinks=[{"type": "jsonl",
                              "path": str(tmp_path / "out.jsonl")}], runtime={"device": "cpu"})
        result = run_daemon(unprivileged, tmp_path, config)
    finally:
        home.chmod(0o755)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("streamdetect: "))
    assert "prompt cache" in line and "per-user cache" in line and _user() in line, line
