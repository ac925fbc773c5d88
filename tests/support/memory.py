"""Peak memory of one call, measured in a fresh interpreter.

``ru_maxrss`` is a process's high-water mark, so in the test process it would hide any
growth below an earlier test's peak; a subprocess starts clean. ``tracemalloc`` would miss
allocations made in C (Pillow's decoders, zlib), which is where a bomb goes off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

_SCRIPT = """
import json, resource, sys, time
{setup}
results = []
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for call in {calls!r}:
    start = time.perf_counter()
    try:
        exec(call)
        error = None
    except Exception as exc:
        error = f"{{type(exc).__name__}}: {{exc}}"
    seconds = time.perf_counter() - start
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    results.append({{"growth_mib": growth, "seconds": seconds, "error": error}})
print(json.dumps(results))
"""


def peak_growth(setup: str, calls: list[str], env: dict[str, str] | None = None) -> list[dict]:
    """Run ``setup`` (imports, not measured), then each of ``calls`` (one statement each),
    in one new Python. Returns per call ``{"growth_mib", "seconds", "error"}``: how far the
    process's peak resident memory has risen since ``setup`` (MiB, Linux ``ru_maxrss``; a
    high-water mark, so it bounds this call and every earlier one), the call's wall time,
    and the exception it raised as ``"Type: message"`` (None if it returned)."""
    script = _SCRIPT.format(setup=textwrap.dedent(setup), calls=list(calls))
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
