"""Batch inference benchmark: naive pandas + sqlite3 beside ``modelkit.batch_predict``.

One command runs, on the same machine and the same files:

- CSV -> SQLite, 1M rows x 20 float features: a naive pandas + sqlite3 job, and modelkit;
- Parquet -> SQLite and CSV -> Parquet with modelkit;
- modelkit's stage split (read, predict, write, each timed alone);
- the same CSV -> SQLite job with the model fitted on named columns (a pandas DataFrame, as
  ``modelkit train`` fits one on a CSV);
- the CPU time of parsing the CSV on one thread: pyarrow (what modelkit uses), pandas' C
  parser, and polars and DuckDB when they are installed (they are not dependencies);
- peak RSS of modelkit's CSV -> SQLite job at 1M and at 10M rows (each job in its own process).

The model is the seed's: ``make_classification(n_samples=1000, n_features=20,
random_state=42)`` and ``LogisticRegression(solver="liblinear")``. The naive job reads the CSV
with ``pandas.read_csv(chunksize=100_000)``, predicts with the estimator and writes ``(id,
prediction)`` with one ``executemany`` per chunk; modelkit runs with its defaults and every
output row shows what a modelkit row holds (key, prediction, model name, version, artifact
hash, job id, time), indexed on ``(job, key)``, with the job's progress committed chunk by
chunk, exactly once.

    python benchmarks/batch/run.py            # full run (writes a 4 GB CSV for 10M rows)
    python benchmarks/batch/run.py --quick    # 200k / 1M rows, for a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 20
FEATURES = [f"f{j}" for j in range(N_FEATURES)]
CHUNK_ROWS = 100_000
PARSERS = ("pyarrow", "pandas", "polars", "duckdb")


def make_files(root: Path, n_rows: int) -> tuple[Path, Path]:
    """data-N.csv and data-N.parquet: an id column and f0..f19 standard normal floats."""
    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    csv_path, parquet_path = root / f"data-{n_rows}.csv", root / f"data-{n_rows}.parquet"
    if csv_path.exists() and parquet_path.exists():
        return csv_path, parquet_path
    rng = np.random.default_rng(0)
    writer_csv = None
    writer_pq = None
    step = 1_000_000
    for start in range(0, n_rows, step):
        n = min(step, n_rows - start)
        X = rng.standard_normal((n, N_FEATURES))
        table = pa.table(
            {"id": np.arange(start, start + n), **{f"f{j}": X[:, j] for j in range(N_FEATURES)}}
        )
        if writer_csv is None:
            writer_csv = pv.CSVWriter(str(csv_path), table.schema)
            writer_pq = pq.ParquetWriter(str(parquet_path), table.schema)
        writer_csv.write_table(table)
        assert writer_pq is not None
        writer_pq.write_table(table, row_group_size=CHUNK_ROWS)
    assert writer_csv is not None
    assert writer_pq is not None
    writer_csv.close()
    writer_pq.close()
    return csv_path, parquet_path


def seed_model(root: Path, *, named: bool = False) -> Path:
    """The seed's model, saved with joblib for the child processes; ``named``: fitted on a
    DataFrame whose columns are the CSV's feature names."""
    import joblib
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    path = root / ("seed-named.joblib" if named else "seed.joblib")
    if not path.exists():
        X, y = seed_data()
        data = pd.DataFrame(X, columns=FEATURES) if named else X
        joblib.dump(LogisticRegression(solver="liblinear").fit(data, y), path)
    return path


def seed_data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=1000, n_features=N_FEATURES, random_state=42)
    return X, y


# -- the jobs, each run in a child process ---------------------------------------------------


def naive(model_path: Path, source: Path, target: Path) -> dict[str, float]:
    import joblib
    import pandas as pd

    estimator = joblib.load(model_path)
    conn = sqlite3.connect(target)
    conn.execute("CREATE TABLE IF NOT EXISTS predictions (id INTEGER, prediction INTEGER)")
    times = {"read": 0.0, "predict": 0.0, "write": 0.0}
    rows = 0
    t = time.perf_counter()
    for frame in pd.read_csv(source, chunksize=CHUNK_ROWS):
        t1 = time.perf_counter()
        times["read"] += t1 - t
        predictions = estimator.predict(frame[[f"f{j}" for j in range(N_FEATURES)]].to_numpy())
        t2 = time.perf_counter()
        times["predict"] += t2 - t1
        conn.executemany(
            "INSERT INTO predictions VALUES (?, ?)",
            zip(frame["id"].tolist(), predictions.tolist(), strict=True),
        )
        conn.commit()
        t = time.perf_counter()
        times["write"] += t - t2
        rows += len(frame)
    conn.close()
    return {"rows": rows, **times}


def modelkit_job(model_path: Path, source: Path, target: str) -> dict[str, float]:
    import joblib
    import pandas as pd

    from modelkit import Model, batch_predict

    estimator = joblib.load(model_path)
    X, _ = seed_data()
    sample = pd.DataFrame(X, columns=FEATURES) if hasattr(estimator, "feature_names_in_") else X
    model = Model.wrap(estimator, sample=sample, name="seed")
    result = batch_predict(model, str(source), target, key="id", progress=False)
    return {"rows": result.rows_out, "job_seconds": result.seconds}


def parse(parser: str, source: Path) -> dict[str, float]:
    """Parse the whole CSV into float64 columns on one thread (``rows``: 0 when ``parser``
    is not installed)."""
    types = {"id": "int64", **dict.fromkeys(FEATURES, "float64")}
    try:
        if parser == "pyarrow":
            import pyarrow as pa
            import pyarrow.csv as pv

            options = pv.ConvertOptions(
                column_types={k: pa.type_for_alias(v) for k, v in types.items()}
            )
            rows = pv.read_csv(
                source, read_options=pv.ReadOptions(use_threads=False), convert_options=options
            ).num_rows
        elif parser == "pandas":
            import pandas as pd

            rows = len(pd.read_csv(source, engine="c", dtype=types))
        elif parser == "polars":
            os.environ["POLARS_MAX_THREADS"] = "1"
            import polars as pl

            overrides = {k: pl.Int64 if v == "int64" else pl.Float64 for k, v in types.items()}
            rows = pl.read_csv(source, schema_overrides=overrides).height
        else:
            import duckdb

            con = duckdb.connect()
            con.execute("SET threads = 1")
            columns = ", ".join(
                f"'{k}': '{'BIGINT' if v == 'int64' else 'DOUBLE'}'" for k, v in types.items()
            )
            query = f"SELECT * FROM read_csv('{source}', header = true, columns = {{{columns}}})"
            rows = len(con.execute(query).fetchnumpy()["id"])
    except ImportError:
        return {"rows": 0}
    return {"rows": rows}


def stages(model_path: Path, source: Path, target: Path) -> dict[str, float]:
    """modelkit's stages one at a time, streaming as a job does: read every chunk; read again
    and predict each (predict timed); write the predicted chunks."""
    import joblib

    from modelkit import Model
    from modelkit.batch import DEFAULT_CHUNK_ROWS
    from modelkit.batch._predict import Plan, predict_chunk
    from modelkit.batch.sinks import JobSpec, SqliteSink
    from modelkit.batch.sources import CsvSource

    X, _ = seed_data()
    model = Model.wrap(joblib.load(model_path), sample=X, name="seed")
    plan = Plan(model=model, key="id")

    def chunks() -> Any:
        reader = CsvSource(
            source, column_types=plan.column_types(), columns_wanted=plan.read_columns()
        )
        return reader.chunks(DEFAULT_CHUNK_ROWS)

    t0 = time.perf_counter()
    rows = sum(chunk.n_rows for chunk in chunks())
    read = time.perf_counter() - t0
    predict = 0.0
    outputs = []
    for chunk in chunks():
        t1 = time.perf_counter()
        outputs.append(predict_chunk(plan, chunk))
        predict += time.perf_counter() - t1
    sink = SqliteSink(target)
    spec = JobSpec(
        job_id="stages",
        table="predictions",
        key="id",
        model_name="seed",
        model_version=1,
        artifact_sha256="0" * 64,
        source="s",
        outputs=("predict",),
    )
    sink.start(spec)
    t2 = time.perf_counter()
    for output in outputs:
        sink.write(spec, output)
    sink.close()
    write = time.perf_counter() - t2
    return {"read": read, "predict": predict, "write": write, "rows": rows}


def machine() -> str:
    """The CPU model and count."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} x {model}"


def cpu_seconds() -> float:
    """User and system CPU time of this process so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def child(argv: list[str]) -> None:
    kind, model_path, source, target = argv
    # import everything first: the figures time the jobs, not Python's start-up
    import joblib  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import modelkit.batch._files
    import modelkit.batch._jobs  # noqa: F401

    imports_mb = peak_rss_mb()
    t0 = time.perf_counter()
    cpu0 = cpu_seconds()
    if kind == "naive":
        out = naive(Path(model_path), Path(source), Path(target))
    elif kind.startswith("parse-"):
        out = parse(kind.removeprefix("parse-"), Path(source))
    elif kind == "stages":
        out = stages(Path(model_path), Path(source), Path(target))
    else:
        out = modelkit_job(Path(model_path), Path(source), target)
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = cpu_seconds() - cpu0
    out["max_rss_mb"] = peak_rss_mb()
    out["imports_rss_mb"] = imports_mb
    print(json.dumps(out))


def run_child(kind: str, model: Path, source: Path, target: str) -> dict[str, float]:
    if target.endswith(".parquet"):
        shutil.rmtree(target, ignore_errors=True)
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(target + suffix).unlink(missing_ok=True)
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(model), str(source), target],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200k and 1M rows")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each job (median)")
    parser.add_argument("--dir", type=Path, help="where to keep the data files (default: tmp)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    began = time.perf_counter()
    root = args.dir or Path(tempfile.mkdtemp(prefix="modelkit-batch-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    small, large = (200_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)
    model, named = seed_model(root), seed_model(root, named=True)
    csv_path, parquet_path = make_files(root, small)
    db = str(root / "out.db")
    print(
        f"{small:,} rows x {N_FEATURES} features, CSV {csv_path.stat().st_size / 1e6:.0f} MB, "
        f"Parquet {parquet_path.stat().st_size / 1e6:.0f} MB; {machine()}; load average "
        f"{os.getloadavg()[0]:.2f} at the start"
    )
    jobs = {
        "naive CSV -> SQLite": ("naive", model, csv_path, db),
        "modelkit CSV -> SQLite": ("modelkit", model, csv_path, db),
        "  fitted on named columns": ("modelkit", named, csv_path, db),
        "modelkit Parquet -> SQLite": ("modelkit", model, parquet_path, db),
        "modelkit CSV -> Parquet": ("modelkit", model, csv_path, str(root / "out.parquet")),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in jobs}
    for _ in range(args.repeat):  # interleaved, so that a busy moment hits every job alike
        for name, (kind, fitted, source, target) in jobs.items():
            runs[name].append(run_child(kind, fitted, source, target))
    results = {  # the median run of each job
        name: sorted(done, key=lambda r: r["seconds"])[len(done) // 2]
        for name, done in runs.items()
    }
    naive_rate = results["naive CSV -> SQLite"]["rows"] / results["naive CSV -> SQLite"]["seconds"]
    print(f"\nmedian of {args.repeat} interleaved runs per job")
    print(
        f"\n{'job':28} {'rows':>10} {'seconds':>8} {'rows/s':>11} {'vs naive':>8} "
        f"{'CPU s':>6} {'RSS MB':>7}"
    )
    for name, r in results.items():
        rate = r["rows"] / r["seconds"]
        print(
            f"{name:28} {r['rows']:>10,.0f} {r['seconds']:>8.2f} {rate:>11,.0f} "
            f"{rate / naive_rate:>7.2f}x {r['cpu_seconds']:>6.2f} {r['max_rss_mb']:>7.0f}"
        )
    split = run_child("stages", model, csv_path, db)
    r = results["naive CSV -> SQLite"]
    print("\nstage split, rows/s (each stage alone, on one thread but the CSV parse)")
    print(f"{'':10} {'read':>11} {'predict':>11} {'write':>11}")
    for who, s in (("naive", r), ("modelkit", split)):
        print(
            f"{who:10} "
            + " ".join(f"{s['rows'] / s[k]:>11,.0f}" for k in ("read", "predict", "write"))
        )
    print(f"\nparsing the CSV on one thread (median of {args.repeat})")
    print(f"{'parser':10} {'CPU s':>6} {'rows/s':>11}")
    for name in PARSERS:
        parsed = [run_child(f"parse-{name}", model, csv_path, db) for _ in range(args.repeat)]
        best = sorted(parsed, key=lambda r: r["cpu_seconds"])[len(parsed) // 2]
        if not best["rows"]:
            print(f"{name:10} {'':>6} not installed")
            continue
        print(f"{name:10} {best['cpu_seconds']:>6.2f} {best['rows'] / best['seconds']:>11,.0f}")
    big_csv, _ = make_files(root, large)
    big = run_child("modelkit", model, big_csv, db)
    small_rss = results["modelkit CSV -> SQLite"]["max_rss_mb"]
    print(
        f"\npeak RSS, modelkit CSV -> SQLite (after imports of "
        f"{results['modelkit CSV -> SQLite']['imports_rss_mb']:.0f} MB): {small:,} rows "
        f"{small_rss:.0f} MB, "
        f"{large:,} rows {big['max_rss_mb']:.0f} MB ({big['max_rss_mb'] / small_rss - 1:+.1%}); "
        f"{large:,} rows at {big['rows'] / big['seconds']:,.0f} rows/s"
    )
    print(
        f"load average {os.getloadavg()[0]:.2f} at the end; the benchmark took "
        f"{time.perf_counter() - began:.0f}s"
    )
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
