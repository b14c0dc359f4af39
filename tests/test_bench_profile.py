"""bench/profile.py: py-spy records a real process from outside, and the record is folded into its hot code."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.profile import Recording, by_package, hot_frames, package_of, py_spy

SPINNER = """
import json, time

def encode_forever():
    while True:
        json.dumps({"k": list(range(200))})

def sleep_forever():
    while True:
        time.sleep(1)

import threading
threading.Thread(target=sleep_forever, daemon=True).start()
print("ready", flush=True)
encode_forever()
"""


def test_a_folded_record_names_the_functions_that_hold_the_cpu(tmp_path: Path) -> None:
    raw = tmp_path / "api.txt"
    raw.write_text(
        "process 1:\"python\";thread (0x1);run (uvicorn/server.py:10);handle (api/routes/tasks.py:40);"
        "execute (sqlalchemy/engine/base.py:1400) 6\n"
        "process 1:\"python\";thread (0x1);run (uvicorn/server.py:10);handle (api/routes/tasks.py:41) 3\n"
        "process 1:\"python\";thread (0x2);dumps (/usr/lib/python3.11/json/__init__.py:231) 1\n"
        "not a stack line\n", encoding="utf-8")
    samples, hot = hot_frames(raw)
    assert samples == 10
    by_name = {h.function: h for h in hot}
    # The line numbers are folded away: two lines of one function are one function.
    assert by_name["handle (api/routes/tasks.py)"].self_share == pytest.approx(0.3)
    assert by_name["handle (api/routes/tasks.py)"].inclusive_share == pytest.approx(0.9)
    assert by_name["execute (sqlalchemy/engine/base.py)"].self_share == pytest.approx(0.6)
    assert hot[0].function == "execute (sqlalchemy/engine/base.py)"
    assert package_of("execute (/v/lib/python3.11/site-packages/sqlalchemy/engine/base.py:1400)") == "sqlalchemy"
    assert package_of("dumps (/usr/lib/python3.11/json/__init__.py:231)") == "stdlib:json"
    assert package_of("handle (/work/main/api/routes/tasks.py:40)") == "api"
    # py-spy's own spelling: the path under the sys.path entry the module came from.
    assert package_of("Session.execute (sqlalchemy/orm/session.py:2351)") == "sqlalchemy"
    assert package_of("JSONEncoder.encode (json/encoder.py:200)") == "stdlib:json"
    assert package_of("advance (core/incidents/engine.py:88)") == "core"


@pytest.mark.slow  # samples a process for a few seconds
def test_py_spy_records_a_running_process_and_its_hot_function(tmp_path: Path) -> None:
    assert py_spy() is not None, "py-spy comes with the test extras (pyproject.toml)"
    spinner = subprocess.Popen([sys.executable, "-c", SPINNER], stdout=subprocess.PIPE)
    try:
        assert spinner.stdout is not None and spinner.stdout.readline().strip() == b"ready"
        with Recording(tmp_path / "profile", {"spinner": spinner.pid}) as recording:
            time.sleep(3)
    finally:
        spinner.kill()
        spinner.wait()
    assert recording.errors == {}
    samples, hot = hot_frames(tmp_path / "profile" / "spinner.txt")
    assert samples > 50, "about 97 samples a second for 3 s, the busy thread only (idle ones are not sampled)"
    assert any("json/" in h.function for h in hot), hot
    assert max(h.inclusive_share for h in hot) > 0.5, "the encoding loop holds the CPU"
    # A sleeping thread holds no CPU: a sample or two as it wakes each second (py-spy counts a runnable thread
    # waiting for the GIL as busy), never a share beside the busy one's.
    assert sum(h.self_share for h in hot if "sleep_forever" in h.function) < 0.05
    assert next(iter(by_package(tmp_path / "profile" / "spinner.txt"))) == "stdlib:json"
