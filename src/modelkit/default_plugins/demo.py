"""``modelkit demo``: the main job, end to end, on the embedded defaults.

Train the seed model (``make_classification`` + ``LogisticRegression(solver="liblinear")``)
with :func:`modelkit.train` into the registry, point ``seed@production`` at it, check that
its artifact is verified (and that a tampered copy is refused), serve it over HTTP with a
server backend, send the server the seed's curl request and print the answer, then keep
serving until Ctrl-C or SIGTERM (``--once``: stop after the answer).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from modelkit.cli import Command
    from modelkit.registry import Registry
    from modelkit.servers import Server
    from modelkit.serving.core import App

__all__ = ["SEED_BODY", "DemoCommand"]

SEED_BODY = (
    '{"features": [[0.1, -0.5, 1.2, 0.3, -1.1, 0.0, 2.4, -0.7, 0.9, 1.5, '
    "-0.2, 0.6, -1.8, 0.4, 0.05, -0.33, 1.1, -2.0, 0.75, 0.2]]}"
)
"""The body of the seed's curl request, its 20 features written out."""

MODEL_NAME = "seed"
ALIAS = "production"
READY_TIMEOUT = 60.0
"""Seconds the demo waits for its own server to answer."""


class DemoCommand:
    """Train the seed model into the registry, serve it, and send it the seed's request."""

    help = "train the seed model into the registry, serve it, and send it the seed's request"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from modelkit.default_plugins.serve_command import add_server_options

        add_server_options(parser)
        where = parser.add_mutually_exclusive_group()
        where.add_argument(
            "--dir",
            type=Path,
            metavar="DIR",
            help="keep the demo's registry in DIR (DIR/registry.db and DIR/artifacts)",
        )
        where.add_argument(
            "--registry",
            metavar="URL",
            help="registry directory or URL (sqlite:///…, postgresql://…); "
            "default: $MODELKIT_HOME, else ./.modelkit",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="stop the server after showing the answer (exit status 0 when it is right)",
        )

    def run(self, args: argparse.Namespace) -> int:
        from modelkit.servers import bind_socket, get_server
        from modelkit.serving.core import App

        server = get_server(args.backend)  # an unknown or missing backend fails first
        if args.port:  # so does a taken port, before anything is trained
            bind_socket(args.host, args.port).close()
        location = str(args.dir) if args.dir is not None else args.registry
        step = _Steps()
        hint = _train(location, step)
        app = App(f"{MODEL_NAME}@{ALIAS}", registry=location)
        outcome: dict[str, Any] = {}

        def ready(url: str) -> None:
            from modelkit.default_plugins.serve_command import describe_models

            step("serve", f"{describe_models(app)} at {url} with {server.name}")
            threading.Thread(
                target=_ask,
                args=(url,),
                kwargs={
                    "app": app,
                    "server": server,
                    "step": step,
                    "hint": hint,
                    "once": args.once,
                    "outcome": outcome,
                },
                name="modelkit-demo-request",
                daemon=True,
            ).start()

        server.run(app, host=args.host, port=args.port, workers=args.workers, on_ready=ready)
        if "error" in outcome:
            print(f"error: {outcome['error']}", file=sys.stderr)
            return 1
        return 0


def _train(location: str | None, step: _Steps) -> str:
    """Train and register the seed model, check its artifact; return the ``serve`` command."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from modelkit.data import Dataset
    from modelkit.default_plugins.registry_commands import open_registry
    from modelkit.training import train

    X, y = make_classification(n_samples=1000, n_features=20, random_state=42)
    data = Dataset(X, y, name=MODEL_NAME)
    step("data", f"{data.n_rows:,} rows x {X.shape[1]} features, {data.fingerprint[:19]}…")

    with open_registry(argparse.Namespace(registry=location)) as registry:
        result = train(
            LogisticRegression(solver="liblinear"),
            X,
            y,
            name=MODEL_NAME,
            registry=registry,
            alias=ALIAS,
        )
        scores = ", ".join(f"{name} {value:.3f}" for name, value in result.metrics.items())
        step("train", f"LogisticRegression(solver='liblinear'), 5-fold CV: {scores}")
        version = result.version
        step(
            "register",
            f"{version.name}/{version.version} in {registry.url}; "
            f"{MODEL_NAME}@{ALIAS} -> {version.version}",
        )
        step("verify", _verify(registry, version.artifact_sha256))
    option = "" if location is None else f" --registry {shlex.quote(location)}"
    return f"modelkit serve {MODEL_NAME}@{ALIAS}{option}"


def _verify(registry: Registry, sha256: str) -> str:
    """Load the version with every hash checked, and show that a flipped byte is refused."""
    import tempfile

    from modelkit.artifact import Artifact
    from modelkit.exceptions import ArtifactIntegrityError, ModelkitError

    registry.load(f"{MODEL_NAME}@{ALIAS}")
    with tempfile.TemporaryDirectory(prefix="modelkit-demo-") as scratch:
        tampered = Path(scratch) / "tampered"
        shutil.copytree(registry.store.get(sha256), tampered)
        payload = tampered / "model.joblib"
        raw = bytearray(payload.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        payload.write_bytes(bytes(raw))
        try:
            Artifact.load(tampered)
        except ArtifactIntegrityError:
            return "every file's sha256 matches the registry; a copy with a flipped byte is refused"
    raise ModelkitError("a copy of the artifact with a flipped byte loaded: this is a bug")


def _ask(
    url: str,
    *,
    app: App,
    server: Server,
    step: _Steps,
    hint: str,
    once: bool,
    outcome: dict[str, Any],
) -> None:
    """Send the server the seed's request, print it and the answer; stop the server if asked."""
    try:
        _wait_ready(url)
        step("request", f"POST {url}/predict {SEED_BODY}")
        status, answer = _post(f"{url}/predict", SEED_BODY)
        step("answer", f"{status} {answer}")
        features = json.loads(SEED_BODY)["features"]
        expected = app.models[MODEL_NAME].model.predict(features).tolist()
        same = status == 200 and json.loads(answer).get("prediction") == expected
        step("", f"the same as Model.predict in this process: {same}")
        if not same:
            outcome["error"] = f"the server answered {status} {answer}, expected {expected}"
            return
        print(
            "\nTry it:\n"
            f"  curl -X POST -H \"Content-Type: application/json\" -d '{SEED_BODY}' "
            f"{url}/predict\n"
            f"Serve it again later with: {hint}",
            flush=True,
        )
        if not once:
            print("Serving until Ctrl-C (or SIGTERM).", flush=True)
    except Exception as exc:
        outcome["error"] = f"the demo request to {url} failed: {type(exc).__name__}: {exc}"
    finally:
        if once or "error" in outcome:
            server.stop()


def _wait_ready(url: str) -> None:
    import urllib.error
    import urllib.request

    readyz = f"{url}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:  # S310: the URL is our own server's http:// address
            with urllib.request.urlopen(readyz, timeout=READY_TIMEOUT) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _post(url: str, body: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - our own server's http:// address
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=READY_TIMEOUT) as response:  # noqa: S310
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:  # an error status still has a JSON answer
        return int(exc.code), exc.read().decode()


class _Steps:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.lock = threading.Lock()

    def __call__(self, name: str, text: str) -> None:
        elapsed = time.perf_counter() - self.start
        with self.lock:
            print(f"{elapsed:6.2f}s  {name:<8} {text}", flush=True)


@hookimpl
def register_commands(register: Callable[[str, Command], None]) -> None:
    register("demo", DemoCommand())
