"""Failpoints (core/platform/failpoints.py), on their own: off unless armed, one fault per file, scoped to a process,
and a crash is a real kill -9 of the process that reached the point. The fault suite uses them on the
server-mode stack (tests/faults/test_crash_points.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.platform.failpoints import failpoint
from core.platform.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def armed_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "failpoints"
    folder.mkdir()
    monkeypatch.setenv("BATON_FAILPOINT_DIR", str(folder))
    monkeypatch.delenv("BATON_WORKER_ID", raising=False)
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


def _reach(folder: Path, name: str, worker_id: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BATON_FAILPOINT_DIR=str(folder))
    env.pop("BATON_WORKER_ID", None)
    if worker_id:
        env["BATON_WORKER_ID"] = worker_id
    code = f"from core.platform.failpoints import failpoint; failpoint({name!r}); print('passed')"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.slow  # starts processes of its own
def test_a_disarmed_point_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without BATON_FAILPOINT_DIR no file arms a point, wherever it lies: the process passes at once and leaves
    the file unclaimed (armed, this one would hold the process for five seconds and be renamed)."""
    monkeypatch.delenv("BATON_FAILPOINT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    (tmp_path / "stage.left").write_text("hold 5")
    started = time.monotonic()
    failpoint("stage.left")
    assert time.monotonic() - started < 1
    assert [p.name for p in tmp_path.iterdir()] == ["stage.left"]
    get_settings.cache_clear()
    # And in a process of its own, with "crash" in a folder that is not the failpoint folder: it runs on.
    (tmp_path / "stage.left").write_text("crash")
    env = {k: v for k, v in os.environ.items() if k != "BATON_FAILPOINT_DIR"}
    code = "from core.platform.failpoints import failpoint; failpoint('stage.left'); print('passed')"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "passed" in result.stdout, result
    assert [p.name for p in tmp_path.iterdir()] == ["stage.left"]


def test_hold_stands_still_once_and_the_claim_names_the_process(armed_dir: Path) -> None:
    (armed_dir / "stage.left").write_text("hold 0.3")
    started = time.monotonic()
    failpoint("stage.left")
    assert time.monotonic() - started >= 0.3
    assert [p.name for p in armed_dir.iterdir()] == [f"stage.left.hit-api-{os.getpid()}"]
    started = time.monotonic()
    failpoint("stage.left")  # claimed: disarmed again
    assert time.monotonic() - started < 0.2


@pytest.mark.slow  # starts processes of its own
def test_crash_kills_the_process_at_the_point(armed_dir: Path) -> None:
    (armed_dir / "ledger.appended").write_text("crash")
    result = _reach(armed_dir, "ledger.appended")
    assert result.returncode == -9, result
    assert "passed" not in result.stdout
    assert not (armed_dir / "ledger.appended").exists()
    again = _reach(armed_dir, "ledger.appended")
    assert again.returncode == 0 and "passed" in again.stdout, again


@pytest.mark.slow  # starts processes of its own
def test_a_scoped_point_is_reached_only_by_its_process(armed_dir: Path) -> None:
    (armed_dir / "task.assigned@host-worker-2").write_text("crash")
    other = _reach(armed_dir, "task.assigned", worker_id="host-worker-1")
    assert other.returncode == 0, other
    api = _reach(armed_dir, "task.assigned")
    assert api.returncode == 0, api
    own = _reach(armed_dir, "task.assigned", worker_id="host-worker-2")
    assert own.returncode == -9, own
    hits = [p.name for p in armed_dir.iterdir()]
    assert len(hits) == 1 and hits[0].startswith("task.assigned@host-worker-2.hit-host-worker-2-"), hits


@pytest.mark.slow  # starts processes of its own
def test_of_many_processes_racing_to_a_point_exactly_one_takes_it(armed_dir: Path) -> None:
    (armed_dir / "incident.opened").write_text("crash")
    env = dict(os.environ, BATON_FAILPOINT_DIR=str(armed_dir))
    code = "from core.platform.failpoints import failpoint; failpoint('incident.opened')"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env) for _ in range(6)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    assert codes == [-9, 0, 0, 0, 0, 0]
    assert len(list(armed_dir.glob("incident.opened.hit-*"))) == 1


def test_an_unknown_action_is_named(armed_dir: Path) -> None:
    (armed_dir / "flow.created").write_text("explode")
    with pytest.raises(ValueError, match="unknown failpoint action 'explode'"):
        failpoint("flow.created")
