"""The servers measured: each one's protocol (route, body, answer) and command line."""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import artifacts
import attrs
import monitoring
from envs import HERE, Venv, ensure_venv
from processes import Launch

HOST = "127.0.0.1"
PEERS = HERE / "peers"
MODELKIT_ARGS_ENV = "MODELKIT_BENCH_ARGS"
"""More ``modelkit serve`` options for both modelkit servers (a shell-quoted string)."""

ONE_CORE_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}
"""Every server gets these: one core each, so no BLAS thread pools; logs not buffered."""


@attrs.frozen
class Protocol:
    """A route, how a row becomes its request body, and where the answer keeps predictions."""

    route: str
    encode: Callable[[list[float]], bytes]
    decode: Callable[[Any], list[Any]]


def _seed_body(row: list[float]) -> bytes:
    return json.dumps({"features": [row]}).encode()


def _v2_body(row: list[float]) -> bytes:
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}
    return json.dumps({"inputs": [tensor]}).encode()


def _mlflow_body(row: list[float]) -> bytes:
    return json.dumps({"inputs": [row]}).encode()


def _v2_predictions(answer: Any) -> list[Any]:
    data: list[Any] = answer["outputs"][0]["data"]
    return data


SEED = Protocol("/predict", _seed_body, lambda answer: answer["prediction"])
V2 = Protocol(f"/v2/models/{artifacts.MODEL_NAME}/infer", _v2_body, _v2_predictions)
MLFLOW = Protocol("/invocations", _mlflow_body, lambda answer: answer["predictions"])


@attrs.define
class Context:
    """What the servers' command lines are built from; makes models and venvs on first use."""

    run_dir: Path
    seed: artifacts.Seed
    modelkit_args: list[str] = attrs.field(factory=list)
    modelkit_src: Path | None = None
    """A ``src`` directory to run modelkit from (another revision); ``None``: the installed."""
    _venvs: dict[str, Venv] = attrs.field(factory=dict)
    _made: dict[str, Path] = attrs.field(factory=dict)

    def venv(self, peer: str) -> Venv:
        """The peer's virtual environment (installed on first use)."""
        if peer not in self._venvs:
            self._venvs[peer] = ensure_venv(peer, self.log(f"install-{peer}"))
        return self._venvs[peer]

    def folder(self, name: str) -> Path:
        """A working directory of this run (created)."""
        path = self.run_dir / "servers" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, name: str) -> Path:
        """The log file ``logs/<name>.log`` of this run."""
        path = self.run_dir / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def modelkit_env(self) -> dict[str, str]:
        """The environment of modelkit's processes: one core, and the chosen source."""
        if self.modelkit_src is None:
            return dict(ONE_CORE_ENV)
        return {**ONE_CORE_ENV, "PYTHONPATH": str(self.modelkit_src)}

    def once(self, key: str, make: Callable[[], Path]) -> Path:
        """``make()`` the first time ``key`` is asked for; its result after that."""
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]


@attrs.frozen
class ServerSpec:
    """One server of the benchmark."""

    name: str
    about: str
    protocol: Protocol
    peer: str | None
    """Its virtual environment (``None``: the project's own, which runs this script)."""
    packages: tuple[str, ...]
    """The packages whose versions the report states."""
    launch: Callable[[Context, int], Launch]


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _peer_env(venv: Venv) -> dict[str, str]:
    path = f"{venv.path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**ONE_CORE_ENV, "PATH": path, "VIRTUAL_ENV": str(venv.path)}


def _flask_folder(ctx: Context) -> Path:
    folder = ctx.folder("seed-flask")
    artifacts.save_joblib(ctx.seed, folder / "model.pkl")
    return folder


def _flask_run(ctx: Context, port: int) -> Launch:
    venv = ctx.venv("seed-flask")
    folder = ctx.once("seed-flask", lambda: _flask_folder(ctx))
    app = str(PEERS / "seed_app.py")
    argv = [venv.bin("flask"), "--app", app, "run", "--host", HOST, "--port", str(port)]
    return Launch(argv, folder, _peer_env(venv))


def _flask_gunicorn(ctx: Context, port: int) -> Launch:
    venv = ctx.venv("seed-flask")
    folder = ctx.once("seed-flask", lambda: _flask_folder(ctx))
    argv = [venv.bin("gunicorn"), "--workers", "1", "--worker-class", "sync"]
    argv += ["--bind", f"{HOST}:{port}", "--pythonpath", str(PEERS), "seed_app:app"]
    return Launch(argv, folder, _peer_env(venv))


def _mlserver(batching: bool) -> Callable[[Context, int], Launch]:
    def launch(ctx: Context, port: int) -> Launch:
        venv = ctx.venv("mlserver")
        name = "mlserver-batch" if batching else "mlserver"
        root = ctx.folder(name)
        artifacts.save_mlserver(ctx.seed, root, batching=batching)
        artifacts.mlserver_settings(
            root, http_port=port, grpc_port=free_port(), metrics_port=free_port()
        )
        return Launch([venv.bin("mlserver"), "start", str(root)], root, _peer_env(venv))

    return launch


def _mlflow_model(ctx: Context) -> Path:
    venv = ctx.venv("mlflow")
    folder = ctx.folder("mlflow")
    source = artifacts.save_joblib(ctx.seed, folder / "model.joblib")
    return artifacts.save_mlflow(venv, source, folder / "model", ctx.log("mlflow-save"))


def _mlflow(ctx: Context, port: int) -> Launch:
    venv = ctx.venv("mlflow")
    model = ctx.once("mlflow", lambda: _mlflow_model(ctx))
    argv = [venv.bin("mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local"]
    argv += ["-h", HOST, "-p", str(port)]
    return Launch(argv, model.parent, _peer_env(venv))


def _raw_asgi(ctx: Context, port: int) -> Launch:
    folder = ctx.folder("raw-asgi")
    model = ctx.once("raw-asgi", lambda: artifacts.save_joblib(ctx.seed, folder / "model.joblib"))
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(PEERS), "raw_asgi:app"]
    argv += ["--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return Launch(argv, folder, {**ONE_CORE_ENV, "RAW_ASGI_MODEL": str(model)})


def modelkit_args(option: str | None) -> list[str]:
    """Extra ``modelkit serve`` options: ``$MODELKIT_BENCH_ARGS``, then ``--modelkit-args``."""
    return shlex.split(os.environ.get(MODELKIT_ARGS_ENV, "")) + shlex.split(option or "")


def _modelkit(
    backend: str, options: Sequence[str] = (), suffix: str = ""
) -> Callable[[Context, int], Launch]:
    def launch(ctx: Context, port: int) -> Launch:
        env = ctx.modelkit_env()
        home = ctx.once(
            "modelkit",
            lambda: artifacts.save_modelkit(
                ctx.folder("modelkit-home"), env, ctx.log("modelkit-train")
            ),
        )
        argv = [sys.executable, "-m", "modelkit", "serve", f"{artifacts.MODEL_NAME}@production"]
        argv += ["--backend", backend, "--workers", "1", "--host", HOST, "--port", str(port)]
        argv += ["--registry", str(home)]
        env["MODELKIT_HOME"] = str(home)
        argv += [*options, *ctx.modelkit_args]
        return Launch(argv, ctx.folder(f"modelkit-{backend}{suffix}"), env)

    return launch


_FLASK = ("flask", "werkzeug", "gunicorn", "scikit-learn", "numpy")
_MLSERVER = ("mlserver", "mlserver-sklearn", "uvicorn", "httptools", "uvloop", "scikit-learn")
_MLFLOW = ("mlflow", "uvicorn", "httptools", "uvloop", "fastapi", "pandas", "scikit-learn")
_OURS = ("modelkit", "uvicorn", "gunicorn", "h11", "httptools", "uvloop", "scikit-learn", "numpy")

SERVERS = (
    ServerSpec(
        "seed-flask-run", "the seed app, `flask run`", SEED, "seed-flask", _FLASK, _flask_run
    ),
    ServerSpec(
        "seed-flask-gunicorn",
        "the seed app, gunicorn 1 sync worker",
        SEED,
        "seed-flask",
        _FLASK,
        _flask_gunicorn,
    ),
    ServerSpec("mlserver", "MLServer, no batching", V2, "mlserver", _MLSERVER, _mlserver(False)),
    ServerSpec(
        "mlserver-batch", "MLServer, batching 32 x 2 ms", V2, "mlserver", _MLSERVER, _mlserver(True)
    ),
    ServerSpec("mlflow", "MLflow `models serve`", MLFLOW, "mlflow", _MLFLOW, _mlflow),
    ServerSpec("raw-asgi", "raw ASGI app on uvicorn", SEED, None, _OURS, _raw_asgi),
    ServerSpec("modelkit-native", "modelkit serve, native", SEED, None, _OURS, _modelkit("native")),
    ServerSpec(
        "modelkit-uvicorn", "modelkit serve, uvicorn", SEED, None, _OURS, _modelkit("uvicorn")
    ),
    ServerSpec(
        "modelkit-gunicorn", "modelkit serve, gunicorn", SEED, None, _OURS, _modelkit("gunicorn")
    ),
)
"""Every server, in the order they run and appear in the table."""

MONITORING_SERVERS = tuple(
    ServerSpec(
        f"modelkit-{backend}{suffix}",
        f"modelkit serve, {backend}, {about}",
        SEED,
        None,
        _OURS,
        _modelkit(backend, options, suffix),
    )
    for backend in monitoring.BACKENDS
    for suffix, (about, options) in monitoring.VARIANTS.items()
)
"""modelkit with monitoring (and input recording) on and off: ``run.py --monitoring``."""
