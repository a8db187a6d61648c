"""Memory across gunicorn workers: RSS and PSS of 1 vs 4 workers serving a ~200 MB model.

::

    .venv/bin/python benchmarks/memory/run.py [--trees 170] [--workers 1 4] [--requests 200]

1. Trains an ExtraTreesClassifier with fully grown trees (about 200 MB of node arrays),
   registers it in a scratch registry, and serves it with ``modelkit serve --backend
   gunicorn --workers N`` (the models are loaded in the master before it forks). After
   ``--requests`` predictions spread over the workers, it reads ``/proc/PID/smaps_rollup``
   of the master and of every worker: RSS counts every resident page a process maps, PSS
   divides each shared page among the processes sharing it, so the sum of PSS is what the
   server really costs.
2. Loads the same ``model.joblib`` in a fresh process with and without ``joblib.load(...,
   mmap_mode="r")``, for the trees and for a KNeighborsClassifier holding a 200 MB training
   array, and reports the RSS and PSS after one prediction: what memory-mapping could save.

Prints Markdown tables (paste them into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 2**20


def smaps(pid: int) -> dict[str, int]:
    """Rss, Pss, Shared_* and Private_* of a process, in bytes (from smaps_rollup)."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            found[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return found


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def build_registry(home: Path, trees: int) -> tuple[Any, float]:
    """Register "big" (ExtraTrees, fully grown) at production; return (rows, model MiB)."""
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import ExtraTreesClassifier

    from modelkit import Artifact, Registry

    X, y = make_classification(n_samples=20_000, n_features=20, flip_y=0.3, random_state=0)
    estimator = ExtraTreesClassifier(n_estimators=trees, random_state=0, n_jobs=2).fit(X, y)
    nbytes = sum(
        t.tree_.__getstate__()["nodes"].nbytes + t.tree_.__getstate__()["values"].nbytes
        for t in estimator.estimators_
    )
    estimator.n_jobs = 1
    with Registry(home) as registry:
        registry.register("big", Artifact.from_model(estimator, name="big", sample=X[:100]))
        registry.set_alias("big", "production", 1)
    return np.asarray(X[:4]), nbytes / MIB


def serve_and_measure(home: Path, workers: int, rows: Any, requests: int) -> dict[str, Any]:
    """Serve "big" with gunicorn and ``workers`` workers; RSS/PSS of every process."""
    import httpx

    entry = shutil.which("modelkit", path=str(Path(sys.executable).parent))
    assert entry is not None
    env = {**os.environ, "MODELKIT_HOME": str(home), "MODELKIT_LOAD_PLUGINS": ""}
    env.pop("MODELKIT_API_KEYS", None)
    proc = subprocess.Popen(
        [
            entry,
            "serve",
            "big@production",
            "--backend",
            "gunicorn",
            "--workers",
            str(workers),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r" at (http://\S+) with ", line)
        assert url is not None, line
        deadline = time.monotonic() + 60
        while len(children(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        body = {"features": rows.tolist()}
        with httpx.Client(base_url=url.group(1), timeout=60) as client:
            for _ in range(requests):  # new connections: spread over the workers
                answer = client.post("/predict", json=body, headers={"Connection": "close"})
                assert answer.status_code == 200, answer.text
        master = smaps(proc.pid)
        each = [smaps(pid) for pid in children(proc.pid)]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    return {"workers": workers, "master": master, "each": each}


_LOAD = """
import sys, joblib, numpy as np
path, mode = sys.argv[1], sys.argv[2]
estimator = joblib.load(path, mmap_mode=None if mode == "none" else "r")
estimator.predict(np.zeros((4, estimator.n_features_in_)))
rollup = open("/proc/self/smaps_rollup").read().split("\\n")
values = {l.split()[0].rstrip(":"): int(l.split()[1]) for l in rollup if l.endswith("kB")}
print(values["Rss"], values["Pss"], values["Anonymous"])
"""


def load_rss(path: Path, mode: str) -> tuple[float, float, float]:
    """RSS, PSS and anonymous memory (MiB) of a fresh process that loaded ``path`` and
    predicted once. Anonymous pages are the process's own; file pages (a memory-mapped array)
    live in the page cache, shared by every process that maps the same file."""
    out = subprocess.run(
        [sys.executable, "-c", _LOAD, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]) / 1024, int(out[1]) / 1024, int(out[2]) / 1024


def mmap_table(home: Path, tmp: Path) -> list[str]:
    import joblib
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier

    (trees,) = list(Path(home, "artifacts").rglob("model.joblib"))
    X = np.random.default_rng(0).normal(size=(1_310_720, 20))  # 200 MiB of float64
    knn = KNeighborsClassifier(n_neighbors=3, algorithm="brute").fit(X, X[:, 0] > 0)
    knn_path = tmp / "knn.joblib"
    joblib.dump(knn, knn_path)
    lines = [
        "| model.joblib | load | RSS MiB | PSS MiB | anonymous MiB |",
        "|---|---|---:|---:|---:|",
    ]
    for name, path in (("ExtraTrees (trees)", trees), ("KNeighbors (200 MiB array)", knn_path)):
        for mode in ("none", "r"):
            rss, pss, anonymous = load_rss(path, mode)
            label = "joblib.load" if mode == "none" else 'joblib.load(mmap_mode="r")'
            lines.append(f"| {name} | {label} | {rss:.0f} | {pss:.0f} | {anonymous:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=170)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        home = tmp / "registry"
        rows, model_mib = build_registry(home, args.trees)
        size = sum(p.stat().st_size for p in home.rglob("model.joblib")) / MIB
        print(
            f"model: ExtraTrees, {args.trees} trees, {model_mib:.0f} MiB of node arrays, ", end=""
        )
        print(f"model.joblib {size:.0f} MiB\n")
        print("| workers | master RSS | worker RSS (each) | total RSS | total PSS |")
        print("|---:|---:|---:|---:|---:|")
        for workers in args.workers:
            found = serve_and_measure(home, workers, rows, args.requests)
            processes = [found["master"], *found["each"]]
            each = ", ".join(f"{p['Rss'] / MIB:.0f}" for p in found["each"])
            total_rss = sum(p["Rss"] for p in processes) / MIB
            total_pss = sum(p["Pss"] for p in processes) / MIB
            print(
                f"| {workers} | {found['master']['Rss'] / MIB:.0f} MiB | {each} MiB | "
                f"{total_rss:.0f} MiB | {total_pss:.0f} MiB |"
            )
        print()
        print("\n".join(mmap_table(home, tmp)))


if __name__ == "__main__":
    main()
