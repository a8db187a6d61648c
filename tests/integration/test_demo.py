"""The README's main job, ``modelkit demo``, as a user runs it: the real console script.

The demo trains the seed model into a registry, serves it and sends itself the seed's curl
request. ``--once`` stops after the answer; without it the server keeps serving until
SIGTERM. Both run on a free port (``--port 0``; the URL is read from the output).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from modelkit.registry import Registry

pytestmark = pytest.mark.integration

CURL_BODY = (
    '{"features": [[0.1, -0.5, 1.2, 0.3, -1.1, 0.0, 2.4, -0.7, 0.9, 1.5, '
    "-0.2, 0.6, -1.8, 0.4, 0.05, -0.33, 1.1, -2.0, 0.75, 0.2]]}"
)
"""The body of the seed's curl request."""

DEADLINE = 60.0
STEPS = ["data", "train", "register", "verify", "serve", "request", "answer"]


def modelkit_entry() -> str:
    entry = shutil.which("modelkit", path=str(Path(sys.executable).parent))
    assert entry is not None, "the modelkit console script is not installed"
    return entry


def environment(home: Path) -> dict[str, str]:
    return {**os.environ, "MODELKIT_HOME": str(home), "MODELKIT_LOAD_PLUGINS": ""}


def steps(lines: list[str]) -> dict[str, str]:
    """``{step name: its text}`` from lines like ``  1.23s  train    LogisticRegression…``."""
    found = {}
    for line in lines:
        match = re.match(r"\s*\d+\.\d\ds  (\w+)\s+(.*)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def check_answer(lines: list[str], home: Path) -> str:
    """The demo's steps, request and answer are right; return the server's URL."""
    shown = steps(lines)
    assert list(shown) == STEPS, lines
    url = re.search(r" at (http://127\.0\.0\.1:\d+) with ", shown["serve"])
    assert url is not None, shown["serve"]
    assert shown["serve"].startswith("seed (version 1) at ")
    assert shown["request"] == f"POST {url.group(1)}/predict {CURL_BODY}"
    status, body = shown["answer"].split(" ", 1)
    assert status == "200"
    answer = json.loads(body)
    with Registry(home) as registry:
        model = registry.load("seed@production")
        assert registry.aliases("seed") == {"production": 1}
    assert answer["prediction"] == model.predict(json.loads(CURL_BODY)["features"]).tolist()
    assert (answer["model"], answer["version"]) == ("seed", "1")
    assert any(line.endswith("the same as Model.predict in this process: True") for line in lines)
    assert "refused" in shown["verify"]
    curl = next(line for line in lines if line.strip().startswith("curl "))
    assert curl.strip() == (
        f"curl -X POST -H \"Content-Type: application/json\" -d '{CURL_BODY}' "
        f"{url.group(1)}/predict"
    )
    return url.group(1)


@pytest.mark.parametrize("backend", ["auto", "gunicorn"])
def test_demo_once_trains_serves_answers_and_exits_0(tmp_path: Path, backend: str) -> None:
    home = tmp_path / "registry"
    result = subprocess.run(
        [modelkit_entry(), "demo", "--port", "0", "--once", "--backend", backend],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=environment(home),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    check_answer(result.stdout.splitlines(), home)
    assert "Serve it again later with: modelkit serve seed@production\n" in result.stdout
    assert "Serving until" not in result.stdout
    assert not (tmp_path / ".modelkit").exists()  # $MODELKIT_HOME was used


def test_demo_dir_keeps_the_registry_there(tmp_path: Path) -> None:
    result = subprocess.run(
        [modelkit_entry(), "demo", "--port", "0", "--once", "--dir", "here"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=environment(tmp_path / "elsewhere"),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    check_answer(result.stdout.splitlines(), tmp_path / "here")
    assert "modelkit serve seed@production --registry here" in result.stdout
    assert not (tmp_path / "elsewhere").exists()


def test_demo_keeps_serving_until_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "registry"
    process = subprocess.Popen(
        [modelkit_entry(), "demo", "--port", "0", "--backend", "stdlib"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=environment(home),
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + DEADLINE
        while not any(line.startswith("Serving until") for line in seen):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"the demo exited early: {seen}"
            seen.append(line)
        url = check_answer(seen, home)
        with httpx.Client(timeout=DEADLINE) as client:  # still serving: try the curl request
            again = client.post(
                f"{url}/predict", content=CURL_BODY, headers={"Content-Type": "application/json"}
            )
        assert again.status_code == 200
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
        assert process.stderr is not None
        assert process.stderr.read() == ""
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_python_dash_m_runs_the_same_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelkit", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.startswith("modelkit ")
