"""Two real daemons: a spool folder, a clips folder or an embedding log held by a running daemon is refused to a
second one at start-up with one line naming the path and the holder; once the holder is gone (even by SIGKILL)
the path is free again."""

from __future__ import annotations

import signal

import pytest
from helpers import CliRun, run_cli, write_config, write_tone_scene
from test_webhook_deadlines import LIVE_TONE, always_on


def second_daemon(tiny_model, tmp_path, spool, clips, log) -> list[str]:
    """The arguments of daemon B's run: a short file, into the given spool, clips folder and embedding log."""
    sinks = [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "spool_dir": str(spool), "retries": 0},
             {"type": "clips", "dir": str(clips)}]
    cfg = write_config(tmp_path / "b.yaml", tiny_model, always_on(1), sinks=sinks, runtime={"device": "cpu"},
                       embedding_log={"dir": str(log)})
    return ["run", "--config", str(cfg), "--input", str(write_tone_scene(tmp_path / "b.wav", seconds=4.0))]


@pytest.fixture(scope="module")
def holder(tiny_model, tmp_path_factory):
    """Daemon A, live, holding a spool, a clips folder and an embedding log."""
    tmp = tmp_path_factory.mktemp("holder")
    paths = {"spool": tmp / "spool", "clips": tmp / "clips", "log": tmp / "embeddings"}
    sinks = [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "spool_dir": str(paths["spool"])},
             {"type": "clips", "dir": str(paths["clips"])}]
    cfg = write_config(tmp / "a.yaml", tiny_model, always_on(1), sinks=sinks, sources=[LIVE_TONE],
                       runtime={"device": "cpu"}, embedding_log={"dir": str(paths["log"])})
    run = CliRun("run", "--config", str(cfg))
    try:
        run.wait_for("listening to", 120)
        yield run, paths
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(30)


@pytest.mark.parametrize("shared", ["spool", "clips", "log"])
def test_a_second_daemon_on_a_held_path_is_refused_with_one_line(tiny_model, tmp_path, holder, shared):
    run, paths = holder
    own = {"spool": tmp_path / "spool", "clips": tmp_path / "clips", "log": tmp_path / "embeddings"}
    own[shared] = paths[shared]
    result = run_cli(*second_daemon(tiny_model, tmp_path, own["spool"], own["clips"], own["log"]))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("streamdetect:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"in use by another running streamdetect (pid {run.proc.pid};" in lines[0]
    assert str(paths[shared]) in lines[0]
    assert run.proc.poll() is None  # the holder runs on, untouched


def test_the_path_is_free_again_after_the_holder_is_killed(tiny_model, tmp_path, holder):
    run, paths = holder
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait(30)
    result = run_cli(*second_daemon(tiny_model, tmp_path, paths["spool"], paths["clips"], paths["log"]))
    assert result.returncode == 0, result.stderr
