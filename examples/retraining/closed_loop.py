"""Closing the loop: a served model meets a new concept, is retrained, gated and swapped.

What happens, with real processes on loopback:

1. the seed's model (``LogisticRegression(solver="liblinear")`` on 20 features) is trained on
   concept A and registered as ``seed@production``;
2. ``modelkit serve seed@production --watch 0.5`` serves it (monitoring drift and
   performance, recording every prediction with its inputs);
3. ``modelkit watch seed@production --since-alert …`` runs the retraining loop in its own
   process;
4. a client streams requests and sends each answer's true labels back to ``POST /feedback``.
   Halfway, the concept changes: a new population arrives (shifted inputs) and the label
   rule rotates;
5. the server's monitor raises drift and performance alerts; the loop retrains on the rows
   labelled since the first alert, the challenger passes the gate (exact McNemar mid-p on
   the newest held-out rows) and is promoted; the server swaps it in while the client keeps
   sending, and every request is counted;
6. the new champion is compared with a model trained on concept B from scratch.

Run it with ``python examples/retraining/closed_loop.py`` (add ``--png timeline.png``); it
prints the timeline, the failed-request count and the gate's decision records. The plot needs
the ``plot`` extra (matplotlib).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 20
NOISE = 0.3


@dataclass
class Settings:
    """How big the run is: the example's defaults, or the integration test's smaller ones."""

    rows_before: int = 3000
    """Rows of concept A streamed before the change."""
    max_rows_after: int = 12000
    """Most rows of concept B streamed (the run stops earlier once the loop has settled)."""
    rows_after_promotion: int = 1500
    """Rows of concept B streamed after the new champion first answers."""
    rows_per_request: int = 10
    rows_per_second: float = 600.0
    monitor_window: int = 500
    min_rows: int = 2000
    """Labelled rows since the first alert a retrain waits for."""
    watch_rows: int = 400
    interval: float = 0.5
    seed: int = 0


@dataclass
class Request:
    """One request the client sent: when, how many rows, answered by which version."""

    at: float
    phase: str
    rows: int
    correct: int
    version: str | None
    ok: bool


@dataclass
class Result:
    """What the run measured."""

    requests: list[Request] = field(default_factory=list)
    failed: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    change_at: float = 0.0
    watch_output: list[str] = field(default_factory=list)


# -- the two concepts ------------------------------------------------------------------------


def concepts(seed: int) -> dict[str, Any]:
    """Concept A and concept B: B's population is shifted and its label rule rotated."""
    rng = np.random.default_rng(seed)
    w_a = rng.normal(size=N_FEATURES)
    w_b = np.roll(w_a, N_FEATURES // 4) * np.where(np.arange(N_FEATURES) % 2 == 0, -1.0, 1.0)
    shift = np.zeros(N_FEATURES)
    shift[:4] = 1.0
    return {"A": (w_a, np.zeros(N_FEATURES)), "B": (w_b, shift)}


def sample(concept: tuple[np.ndarray, np.ndarray], n: int, rng: np.random.Generator) -> Any:
    """``n`` rows of a concept and their labels (a noisy linear rule)."""
    w, shift = concept
    X = rng.normal(size=(n, N_FEATURES)) + shift
    score = (X - shift) @ w / np.sqrt(N_FEATURES)
    y = (score + rng.normal(scale=NOISE, size=n) > 0).astype(int)
    return X, y


# -- processes ---------------------------------------------------------------------------


class Process:
    """A ``modelkit`` command in its own session; its stdout lines are kept."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        entry = shutil.which("modelkit", path=str(Path(sys.executable).parent)) or "modelkit"
        self.proc = subprocess.Popen(
            [entry, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise RuntimeError(f"no line matching {pattern!r}; output: {self.output}")
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> int:
        """SIGTERM, then wait; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            status = self.proc.wait(timeout=60)
        self.reader.join(60)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return status


@contextmanager
def running(args: list[str], env: dict[str, str]) -> Iterator[Process]:
    """Run a ``modelkit`` command for the length of a ``with`` block."""
    process = Process(args, env)
    try:
        yield process
    finally:
        process.stop()


class Client:
    """JSON over one keep-alive HTTP/1.1 connection (reopened after a failure)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        """POST JSON; return the status and the decoded answer (status 0: no answer)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = self.conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException, ValueError):
            self.close()
            return 0, None

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# -- the run -----------------------------------------------------------------------------


def train_seed(home: Path, settings: Settings) -> None:
    """Register the seed's model, trained on concept A, as ``seed@production``."""
    from sklearn.linear_model import LogisticRegression

    import modelkit

    rng = np.random.default_rng(settings.seed + 1)
    X, y = sample(concepts(settings.seed)["A"], 3000, rng)
    with modelkit.Registry(home) as registry:
        modelkit.train(
            LogisticRegression(solver="liblinear"),
            X,
            y,
            name="seed",
            registry=registry,
            cv="holdout",
            alias="production",
        )


def stream(url: str, settings: Settings, result: Result) -> None:
    """Send concept A, then concept B until the loop has promoted and settled."""
    rng = np.random.default_rng(settings.seed + 2)
    worlds = concepts(settings.seed)
    gap = settings.rows_per_request / settings.rows_per_second
    first_version: str | None = None
    after_promotion = sent_after = 0
    phase = "A"
    sent = 0
    client = Client(url)
    while True:
        if phase == "A" and sent >= settings.rows_before:
            phase, result.change_at = "B", time.time()
        if phase == "B" and (
            sent_after >= settings.max_rows_after
            or after_promotion >= settings.rows_after_promotion
        ):
            break
        started = time.monotonic()
        X, y = sample(worlds[phase], settings.rows_per_request, rng)
        status, answer = client.post("/predict", {"features": X.tolist()})
        ok = status == 200
        version = answer.get("version") if ok else None
        correct = int(np.sum(np.asarray(answer["prediction"]) == y)) if ok else 0
        if ok:
            first_version = first_version or version
            client.post("/feedback", {"id": answer["id"], "label": y.tolist()})
        result.failed += not ok
        result.requests.append(Request(time.time(), phase, len(y), correct, version, ok))
        sent += len(y)
        if phase == "B":
            sent_after += len(y)
            if version != first_version:
                after_promotion += len(y)
        time.sleep(max(0.0, gap - (time.monotonic() - started)))
    client.close()


def run(home: Path, settings: Settings | None = None) -> Result:
    """The whole loop in ``home`` (a registry directory); return what was measured."""
    settings = settings or Settings()
    env = {**os.environ, "MODELKIT_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    train_seed(home, settings)
    result = Result()
    serve_args = [
        "serve", "seed@production", "--port", "0", "--watch", "0.5",
        "--monitor-window", str(settings.monitor_window),
    ]  # fmt: skip
    watch_args = [
        "watch", "seed@production", "--interval", str(settings.interval), "--since-alert",
        "--min-rows", str(settings.min_rows), "--window-rows", str(settings.min_rows * 2),
        "--watch-rows", str(settings.watch_rows), "--cooldown", "3600",
    ]  # fmt: skip
    with running(serve_args, env) as server, running(watch_args, env) as watch:
        url = server.wait_for(r" at (http://\S+) with ").group(1)
        watch.wait_for(r"^watching ")
        stream(url, settings, result)
    result.watch_output = watch.output
    collect(home, settings, result)
    return result


def collect(home: Path, settings: Settings, result: Result) -> None:
    """Read the alerts and decisions back, and score the models on fresh concept B rows."""
    from sklearn.linear_model import LogisticRegression

    import modelkit

    with modelkit.Registry(home) as registry:
        result.alerts = [a.to_dict() for a in reversed(registry.alerts("seed"))]
        result.events = [e.to_dict() for e in reversed(registry.retrain_events("seed"))]
        champion = registry.load("seed@production")
        first = registry.load("seed/1")
    rng = np.random.default_rng(settings.seed + 3)
    world = concepts(settings.seed)["B"]
    X_test, y_test = sample(world, 20000, rng)
    X_fresh, y_fresh = sample(world, 20000, rng)
    scratch = LogisticRegression(solver="liblinear").fit(X_fresh, y_fresh)
    result.accuracy = {
        "seed model on concept A (live)": _live(result, "A"),
        "seed model on concept B (live)": _live(result, "B", version="1"),
        "new champion on concept B (live)": _live(result, "B", version="!1"),
        "seed model on concept B (test set)": float(np.mean(first.predict(X_test) == y_test)),
        "new champion on concept B (test set)": float(np.mean(champion.predict(X_test) == y_test)),
        "trained on concept B from scratch (test set)": float(
            np.mean(scratch.predict(X_test) == y_test)
        ),
    }


def _live(result: Result, phase: str, version: str | None = None) -> float:
    chosen = [
        r
        for r in result.requests
        if r.ok
        and r.phase == phase
        and (
            version is None
            or (version.startswith("!") and r.version != version[1:])
            or r.version == version
        )
    ]
    rows = sum(r.rows for r in chosen)
    return sum(r.correct for r in chosen) / rows if rows else float("nan")


# -- reporting ---------------------------------------------------------------------------


def _when(text: str) -> float:
    return datetime.fromisoformat(text).astimezone(timezone.utc).timestamp()


def timeline(result: Result) -> list[tuple[float, str]]:
    """``(unix time, description)`` of everything that happened, in order."""
    items: list[tuple[float, str]] = [(result.change_at, "concept changes: A -> B")]
    for alert in result.alerts:
        details = alert["details"]
        what = details.get("verdict") or details.get("metric") or details.get("rule") or ""
        items.append((_when(alert["at"]), f"{alert['kind']} alert ({what})"))
    for event in result.events:
        versions = f" {event['champion']} -> {event['challenger']}" if event["challenger"] else ""
        items.append(
            (_when(event["at"]), f"retrain {event['kind']}{versions}: {event['reason'] or ''}")
        )
    previous = None
    for request in result.requests:
        if request.ok and request.version != previous:
            if previous is not None:
                items.append((request.at, f"server answers with version {request.version}"))
            previous = request.version
    return sorted(items)


def print_report(result: Result) -> None:
    """The timeline, the failed requests, the accuracies and the gate's decision records."""
    start = result.requests[0].at if result.requests else 0.0
    print("timeline (seconds since the first request):")
    for at, text in timeline(result):
        print(f"  {at - start:7.2f}s  {text}")
    total = len(result.requests)
    print(f"\nrequests: {total}, failed: {result.failed}")
    print("\naccuracy:")
    for name, value in result.accuracy.items():
        print(f"  {name:<46} {value:.4f}")
    print("\ndecision records:")
    for event in result.events:
        numbers = {
            k: event["details"][k]
            for k in ("gate", "watch", "rows", "train_rows", "holdout_rows", "reasons")
            if k in event["details"]
        }
        print(f"  {event['kind']}: {json.dumps(numbers, sort_keys=True)}")


ALERT_COLORS = {"drift": "tab:orange", "performance": "tab:red", "health": "tab:brown"}
EVENT_COLORS = {
    "triggered": "tab:blue",
    "promoted": "tab:green",
    "kept": "tab:purple",
    "rolled_back": "tab:pink",
}


def plot(result: Result, path: Path) -> None:
    """Accuracy over time (rolling, per 500 rows), with the alerts and decisions marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in result.requests if r.ok]
    start = result.requests[0].at
    times = np.array([r.at - start for r in ok])
    correct = np.cumsum([r.correct for r in ok])
    rows = np.cumsum([r.rows for r in ok])
    window = 50  # requests
    acc = (correct[window:] - correct[:-window]) / (rows[window:] - rows[:-window])
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.plot(times[window:], acc, color="black", lw=1.2, label="live accuracy (last 500 rows)")
    marks = [
        (result.change_at, "concept change", "grey", "--"),
        *[
            (_when(a["at"]), f"{a['kind']} alert", ALERT_COLORS[a["kind"]], ":")
            for a in result.alerts
        ],
        *[
            (_when(e["at"]), e["kind"], EVENT_COLORS[e["kind"]], "-")
            for e in result.events
            if e["kind"] in EVENT_COLORS
        ],
    ]
    seen: set[str] = set()
    for at, label, color, style in marks:
        ax.axvline(
            at - start, color=color, ls=style, lw=1,
            label=None if label in seen else label,
        )  # fmt: skip
        seen.add(label)
    ax.set_xlabel("seconds")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"seed@production: retrained and swapped with {result.failed} failed requests")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the example; print the report; save the plot with ``--png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="keep the registry here (default: temporary)")
    parser.add_argument("--png", type=Path, help="save the plot here (needs matplotlib)")
    parser.add_argument("--json", type=Path, help="save the measurements here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelkit-retraining-") as tmp:
        home = args.dir or Path(tmp) / "registry"
        result = run(home)
    print_report(result)
    if args.png:
        plot(result, args.png)
        print(f"\nplot saved to {args.png}")
    if args.json:
        data = {
            "failed": result.failed,
            "requests": len(result.requests),
            "accuracy": result.accuracy,
            "alerts": result.alerts,
            "events": result.events,
            "timeline": timeline(result),
        }
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
