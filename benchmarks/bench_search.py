"""Search benchmark for knnlab: exact kNN against scikit-learn brute force (and faiss-cpu
when installed) on MNIST-shaped data built locally, for Minkowski p = 1, 2, 3.

Usage, from the repository root with the project's environment::

    python benchmarks/bench_search.py              # 60,000 x 784 train, 10,000 queries, k = 5
    python benchmarks/bench_search.py --quick      # 5,000 x 784 train, 500 queries
    python benchmarks/bench_search.py --p 2 --repeat 3 --json bench.json
    python benchmarks/bench_search.py --help

Everything is in ``benchmarks/searchbench.py``. The ``__main__`` guard is needed: each measurement
runs in a fresh process (forkserver or spawn), which imports this file again.
"""

from searchbench import main

if __name__ == "__main__":
    raise SystemExit(main())
