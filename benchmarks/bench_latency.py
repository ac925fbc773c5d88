"""Latency of one request: a fitted model answering one query per call (what ``knnlab
serve``, ``mlflow models serve`` and ``knnlab predict`` do), and 16 queries per call,
against faiss's exact indexes and scikit-learn, on Fashion-MNIST (60,000 x 784, k = 5).

Usage, from the repository root with the project's environment::

    python benchmarks/bench_latency.py                 # 1,000 calls per row, and the server
    python benchmarks/bench_latency.py --calls 200 --no-serve
    python benchmarks/bench_latency.py --quick         # 5,000 x 784 MNIST-like, 50 calls

Every row is timed in this process, one call after another (each queries the next test
rows), after 20 warm-up calls; p50 and p99 are over the calls. Thread pools are left at
their defaults (every core), as a served model runs. ``agree`` is the share of calls whose
neighbour indices equal knnlab's exact ones (faiss ranks in float32, so a near-tie may
swap). ``served`` times a POST /invocations of one row to a running ``knnlab serve`` over a
kept-alive connection: the whole request, JSON included.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from searchbench import load_data

K = 5
WARM_UP_CALLS = 20
SERVE_START_TIMEOUT = 300.0  # seconds for the server to load a 60,000-row model and answer
SERVE_STOP_TIMEOUT = 30.0


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 of a list of durations, in milliseconds."""
    ms = np.asarray(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def time_calls(call: Callable[[int], object], calls: int, rows: int, n_queries: int) -> dict:
    """Time ``calls`` calls of ``call(start)``, start the first query row of the call."""
    for i in range(WARM_UP_CALLS):
        call((i * rows) % (n_queries - rows))
    seconds, answers = [], []
    for i in range(calls):
        start = ((i + WARM_UP_CALLS) * rows) % (n_queries - rows)
        began = time.perf_counter()
        answer = call(start)
        seconds.append(time.perf_counter() - began)
        answers.append((start, answer))
    p50, p99 = percentiles(seconds)
    return {"p50_ms": p50, "p99_ms": p99, "answers": answers}


def searchers(X_train, y_train, with_faiss: bool) -> dict[str, Callable]:
    """Each contender as search(queries (m, d) float64) -> indices (m, k), prepared."""
    from sklearn.neighbors import KNeighborsClassifier

    from knnlab.estimators import KNNClassifier

    found: dict[str, Callable] = {}
    began = time.perf_counter()
    model = KNNClassifier(K, algorithm="brute").fit(X_train, y_train).prepare()
    print(f"knnlab: fit and prepare {time.perf_counter() - began:.2f} s", file=sys.stderr)
    found["knnlab fitted kneighbors"] = lambda Q: model.kneighbors(Q, return_distance=False)
    found["knnlab fitted predict"] = model.predict
    sk = KNeighborsClassifier(K, algorithm="brute").fit(X_train, y_train)
    found["sklearn brute kneighbors"] = lambda Q: sk.kneighbors(Q, return_distance=False)
    if with_faiss:
        import faiss

        X32 = np.ascontiguousarray(X_train, dtype=np.float32)
        flat = faiss.IndexFlatL2(X32.shape[1])
        flat.add(X32)
        found["faiss IndexFlatL2"] = lambda Q: flat.search(Q.astype(np.float32), K)[1]
        d = X32.shape[1]
        panorama = faiss.index_factory(d, f"PCA{d},FlatL2Panorama8_512")
        panorama.train(X32)
        panorama.add(X32)
        found[f"faiss PCA{d},FlatL2Panorama8_512"] = lambda Q: panorama.search(
            Q.astype(np.float32), K
        )[1]
    try:
        import hnswlib
    except ImportError:
        pass
    else:
        index = hnswlib.Index(space="l2", dim=X_train.shape[1])
        index.init_index(max_elements=len(X_train), M=16, ef_construction=200, random_seed=0)
        index.add_items(X_train.astype(np.float32), num_threads=-1)
        index.set_ef(64)
        found["hnswlib HNSW (approximate)"] = lambda Q: index.knn_query(Q, k=K)[0]
    return found


def log_model(root: Path, X_train, y_train) -> tuple[str, str]:
    """The model as evaluate logs it, in a SQLite store under root: (tracking uri, run id)."""
    import pandas as pd

    from knnlab.estimators import KNNClassifier
    from knnlab.pipeline.io.model_io import save_model
    from knnlab.pipeline.io.params import MlflowParams
    from knnlab.tracking import runs

    model = KNNClassifier(K, algorithm="brute").fit(X_train, y_train)
    columns = [f"pixel_{i}" for i in range(X_train.shape[1])]
    save_model(root / "model.npz", model, extra={"feature_columns": columns})
    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    example = pd.DataFrame(X_train[:5], columns=columns)
    with runs.stage_run(MlflowParams(experiment="latency"), "evaluate", "latency") as run:
        run.log_model(root / "model.npz", example, model.predict(X_train[:5]))
    return uri, run.record.run_id


def time_served(X_train, y_train, X_query, calls: int) -> dict:
    """p50/p99 of one-row POST /invocations to a `knnlab serve` of the logged model."""
    with tempfile.TemporaryDirectory(prefix="knnlab-latency-") as folder:
        root = Path(folder)
        uri, run_id = log_model(root, X_train, y_train)
        from knnlab.tracking.server import free_port

        port = free_port()
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        argv = [sys.executable, "-m", "knnlab", "serve", f"runs:/{run_id}/model"]
        log = (root / "serve.log").open("wb")
        server = subprocess.Popen(
            [*argv, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            began = time.monotonic()
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"knnlab serve exited: {(root / 'serve.log').read_text()}")
                if time.monotonic() - began > SERVE_START_TIMEOUT:
                    raise SystemExit(f"knnlab serve did not answer in {SERVE_START_TIMEOUT} s")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    time.sleep(0.5)
            print(f"knnlab serve: up in {time.monotonic() - began:.1f} s", file=sys.stderr)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.connect()
            # As requests/urllib3 do: without it, Nagle's algorithm meets the server's
            # delayed acknowledgement and a small request waits about 40 ms.
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            bodies = [json.dumps({"inputs": X_query[i : i + 1].tolist()}) for i in range(100)]

            def post(start: int) -> object:
                connection.request(
                    "POST",
                    "/invocations",
                    bodies[start % len(bodies)],
                    {"Content-Type": "application/json"},
                )
                reply = connection.getresponse()
                body = reply.read()
                if reply.status != 200:
                    raise SystemExit(f"knnlab serve answered {reply.status}: {body[:300]!r}")
                return json.loads(body)

            result = time_calls(post, calls, 1, len(X_query))
            connection.close()
            return result
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(SERVE_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per row")
    parser.add_argument("--quick", action="store_true", help="5,000 MNIST-like rows, 50 calls")
    parser.add_argument("--no-serve", action="store_true", help="skip the knnlab serve row")
    parser.add_argument("--serve-only", action="store_true", help="only the knnlab serve row")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.quick:
        from synthetic import make_mnist_like

        X_train, y_train, X_query, _ = make_mnist_like(5000, 500, seed=0)
        X_train, X_query = X_train.astype(np.float64), X_query.astype(np.float64)
        data, calls = "MNIST-like (synthetic), 5000 x 784", min(args.calls, 50)
    else:
        X_train, y_train, X_query, _, data = load_data("fashion_mnist", 60000, 10000, 0)
        calls = args.calls
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = None
    from knnlab import neighbors

    neighbors.warm_up()
    rows = []
    contenders = {} if args.serve_only else searchers(X_train, y_train, faiss_version is not None)
    for rows_per_call in (1, 16) if contenders else ():
        reference = contenders["knnlab fitted kneighbors"]
        exact = {}
        for name, search in contenders.items():
            if rows_per_call == 16 and "predict" in name:
                continue
            print(f"{name}, {rows_per_call} per call ...", file=sys.stderr, flush=True)
            timed = time_calls(
                lambda start, search=search, r=rows_per_call: search(X_query[start : start + r]),
                calls,
                rows_per_call,
                len(X_query),
            )
            agree = None
            if "predict" not in name:
                same = []
                for start, indices in timed["answers"]:
                    if start not in exact:
                        exact[start] = reference(X_query[start : start + rows_per_call])
                    same.append(np.array_equal(np.asarray(indices), exact[start]))
                agree = float(np.mean(same))
            rows.append(
                {
                    "method": name,
                    "rows_per_call": rows_per_call,
                    "p50_ms": timed["p50_ms"],
                    "p99_ms": timed["p99_ms"],
                    "agree": agree,
                }
            )
    if not args.no_serve:
        print("knnlab serve, 1 row per request ...", file=sys.stderr, flush=True)
        served = time_served(X_train, y_train, X_query, calls)
        rows.append(
            {
                "method": "knnlab serve, POST /invocations",
                "rows_per_call": 1,
                "p50_ms": served["p50_ms"],
                "p99_ms": served["p99_ms"],
                "agree": None,
            }
        )
    report(rows, data, calls, faiss_version)
    if args.json:
        args.json.write_text(json.dumps({"data": data, "calls": calls, "rows": rows}, indent=1))
    return 0


def report(rows: list[dict], data: str, calls: int, faiss_version: str | None) -> None:
    import knnlab

    print(f"== Latency, one call after another: {data}, k = {K}, {calls} calls per row")
    print(
        f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"faiss {faiss_version or 'not installed'}, knnlab from {Path(knnlab.__file__).parent}"
    )
    print("threads: every library's default (all usable cores)")
    header = f"{'method':<38} {'rows':>4} {'p50 ms':>8} {'p99 ms':>8} {'vs faiss':>8} {'agree':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        flat = next(
            (
                r
                for r in rows
                if r["method"] == "faiss IndexFlatL2" and r["rows_per_call"] == row["rows_per_call"]
            ),
            None,
        )
        ratio = f"{flat['p50_ms'] / row['p50_ms']:.2f}x" if flat else "-"
        agree = "-" if row["agree"] is None else f"{row['agree']:.3f}"
        print(
            f"{row['method']:<38} {row['rows_per_call']:>4} {row['p50_ms']:>8.2f} "
            f"{row['p99_ms']:>8.2f} {ratio:>8} {agree:>6}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
