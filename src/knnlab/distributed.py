"""Search and tuning on a Dask cluster (``dask.distributed``), bit-identical to one machine.

Nothing here imports Dask until a cluster is asked for: without a scheduler, knnlab runs as
before and ``dask`` never enters ``sys.modules``.

How a search is split (:func:`sharded_kneighbors`, :func:`plan_search`):

* a search that prunes (p = 2 with the low-rank pre-filter) against a training set that
  fits in a worker's memory (at most :data:`REPLICA_MEMORY_FRACTION` of the smallest
  worker's limit, :data:`REPLICA_MAX_BYTES` when workers have none) is **replicated**:
  one shard, sent to every worker, and the queries split into one block per worker
  thread. Each worker prepares the whole training set and prunes against the whole set's
  k-th distance; cut in shards, every shard repeats the per-query pre-filter work against
  its own, looser k-th distance (the index *replicas* against *shards* of FAISS; measured
  in docs/distributed.md);
* any other search, or a larger training set (n, d), is cut into contiguous **shards**, at
  least one per worker thread and each within that memory;
* each shard and each block of queries is **scattered once** (``client.scatter``), and
  every task is one (shard, query block) pair;
* each task runs knnlab's own search (:func:`knnlab.neighbors.kneighbors`'s body, one
  thread, chunked by ``working_memory`` as on one machine) of the query block against its
  shard and returns the shard's exact top k, indices shifted to global training rows;
* the client merges the shards' lists by (distance, global index), the single-machine tie
  rule, and keeps the first k.

Why the merge is exact: a pair's distance is computed from the two float64 rows alone, the
same whatever chunk, path or shard computes it (see :mod:`knnlab._kernels`), and a shard is
a contiguous run of training rows, so its local order (distance, then local index) is the
global order restricted to it. The global top k by (distance, index) is therefore a subset
of the union of the shards' top k, which the merge sorts by the same key. When the queries
are the training set, each shard returns k + 1 and the query's own row is dropped from
whichever shard holds it (as on one machine, its duplicates stay).

Failures: a task is pure, so when a worker dies Dask reruns its tasks elsewhere; scattered
data has no recipe to rebuild it, so when the only copy of a shard or query block is lost
with its worker, the client scatters that block again and resubmits the tasks that
needed it. Either way the answer is the same.

Grid searches use :func:`run_tasks` for their (fold, p) tasks (see
:func:`knnlab.model_selection.grid_search_cv`).
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from knnlab.options import masked_address
from knnlab.progress import Progress

# Seconds a client waits for a scheduler before giving up: an address that cannot be
# reached, or where something else answers, fails fast, with its name, instead of hanging.
CONNECT_TIMEOUT = 5.0
# Seconds a peer that stayed silent is given to answer an HTTP request, to say what it is
# (MLflow, the Dask dashboard): after the connect timeout, so the whole wait stays bounded.
HTTP_PROBE_TIMEOUT = 1.0
# Most bytes a Dask scheduler's greeting announces (its handshake is about 60 bytes): a
# larger announced length is not Dask's framing.
GREETING_MAX_BYTES = 2**16
# Queries per task at most: a block is sent to each worker that holds a shard, and results
# come back per block (n_block, k); larger blocks mean fewer tasks and fewer per-task set-ups.
QUERY_BLOCK_ROWS = 16384
# Times a task is resubmitted after its input data were lost with a worker.
MAX_RESUBMITS = 3
# A training set is replicated (sent whole to every worker, the queries split) when its
# float64 bytes are at most this fraction of the smallest worker's memory limit: a worker
# holds it widened to float64, its float32 copy and the pre-filter's projections (about
# 1.7x in all) beside ``working_memory`` of work buffers and Dask's own spill threshold
# (60 % by default). Without a memory limit, up to REPLICA_MAX_BYTES.
REPLICA_MEMORY_FRACTION = 0.25
REPLICA_MAX_BYTES = 4 * 2**30

_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("knnlab_dask_client", default=None)


class SchedulerUnreachableError(ConnectionError):
    """No usable Dask scheduler at an address within the connect timeout: nothing answered,
    something else did (:class:`NotASchedulerError`), or the scheduler has no workers."""


class NotASchedulerError(SchedulerUnreachableError):
    """Something answered at a scheduler's address, but not a Dask scheduler."""


class DaskMissingError(ImportError, ValueError):
    """A scheduler was given, but Dask's ``distributed`` package cannot be imported. Also a
    ValueError: the setting cannot be honoured, an input fault the command line reports in
    one line."""


# knnlab's extra (pyproject.toml) that installs Dask's distributed package.
DASK_EXTRA = "team"
_NO_SCHEDULER = "unset compute.scheduler and DASK_SCHEDULER_ADDRESS to run on this machine"


def connect(address: str, timeout: float = CONNECT_TIMEOUT):
    """A ``distributed.Client`` of the scheduler at ``address`` (``tcp://host:8786``).

    Raises, each with one line naming the address (masked, see :func:`masked_address`):
    :class:`SchedulerUnreachableError` (an OSError) when nothing answers within ``timeout``
    seconds; :class:`NotASchedulerError` (one too) when something else answers at a tcp://
    address or accepts the connection and stays silent (at most :data:`HTTP_PROBE_TIMEOUT`
    more seconds, to name it); :class:`DaskMissingError` when ``distributed`` is not
    installed; ValueError for an address that is not ``scheme://host:port``, or a tls://
    one when Dask's configuration has no certificates for it.
    """
    shown = masked_address(address)
    try:
        from distributed import Client
        from distributed.comm.addressing import parse_address, parse_host_port
    except ImportError as error:
        raise DaskMissingError(_missing_dask(shown, error)) from None
    if "@" in address or "?" in address or "#" in address:
        raise ValueError(
            f"Dask scheduler address {shown} has a user, password, query or fragment; a Dask "
            f"address is scheme://host:port only (Dask authenticates with TLS certificates, "
            f"tls://)"
        )
    scheme, location = parse_address(address)
    if scheme == "tcp":
        try:
            host, port = parse_host_port(location)
        except ValueError:
            raise ValueError(
                f"Dask scheduler address {shown} is not tcp://host:port (such as "
                f"tcp://127.0.0.1:8786; an IPv6 host in brackets, tcp://[::1]:8786)"
            ) from None
        # distributed bounds the TCP connect by ``timeout`` but not the handshake after it
        # (its read waits for ever on a peer that accepts and never answers, or announces a
        # huge message), so the peer's greeting is checked here first, on a plain socket
        # with a deadline. Other schemes do their TLS or WebSocket handshake inside
        # distributed's bounded connect.
        _check_greeting(host, port, shown, timeout)
    if scheme == "tls":
        _check_tls_configured(shown)
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise SchedulerUnreachableError(_unreachable(shown, _first_line(error))) from None


def _check_tls_configured(shown: str) -> None:
    """ValueError unless Dask's configuration gives a client its TLS certificates (a CA and
    its own; without, the Client fails with a TypeError about an ssl_context)."""
    from distributed.security import Security

    if Security().get_connection_args("client")["ssl_context"] is None:
        raise ValueError(
            f"Dask scheduler {shown} is a tls:// address, but Dask's configuration gives this "
            f"client no TLS certificates; set distributed.comm.tls.ca-file and "
            f"distributed.comm.tls.client.cert (and .key, unless the certificate file holds it) "
            f"in Dask's configuration or as DASK_DISTRIBUTED__COMM__TLS__CA_FILE and so on, or "
            f"{_NO_SCHEDULER}"
        )


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _unreachable(shown: str, reason: str) -> str:
    return (
        f"Dask scheduler {shown} cannot be reached ({reason}); start it (`dask scheduler`, "
        f"then `dask worker {shown}`) or {_NO_SCHEDULER}"
    )


def _missing_dask(shown: str, error: ImportError) -> str:
    state = (
        "is not installed"
        if error.name == "distributed"
        else f"cannot be imported ({_first_line(error)})"
    )
    return (
        f"Dask scheduler {shown} given, but Dask's distributed package, which connects to it, "
        f"{state}; install knnlab's {DASK_EXTRA!r} extra (pip install "
        f"'knnlab[{DASK_EXTRA}]'), or {_NO_SCHEDULER}"
    )


_CHECK_PORT = (
    f"check the address (a scheduler listens on port 8786 by default, its dashboard on 8787) "
    f"or {_NO_SCHEDULER}"
)
# Protocols named by the first bytes a server sends, unasked (SSH) or to an HTTP request.
_PROTOCOLS = {b"HTTP/": "HTTP", b"SSH-": "SSH"}


def _check_greeting(host: str, port: int, shown: str, timeout: float) -> None:
    """Return when the peer at (host, port) sends a Dask scheduler's greeting (one message
    in distributed's framing, sent as soon as it accepts a connection) within ``timeout``
    seconds; else raise :class:`SchedulerUnreachableError` (nothing accepted the
    connection) or :class:`NotASchedulerError` (something did, and what it did)."""
    deadline = time.monotonic() + timeout
    with contextlib.closing(_open_socket(host, port, shown, deadline, timeout)) as sock:
        received = b""
        while (verdict := _judge_greeting(received)) == "partial":
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(4096)
            except TimeoutError:
                if received:
                    verdict = "other"
                    break
                what = "it spoke HTTP" if _answers_http(sock) else None
                raise NotASchedulerError(_silent(shown, timeout, what)) from None
            except OSError as error:  # reset by the peer
                what = f"it dropped the connection: {_first_line(error)}"
                raise NotASchedulerError(_not_a_scheduler(shown, what)) from None
            if not chunk:
                what = _spoke(received) if received else "it closed the connection unasked"
                raise NotASchedulerError(_not_a_scheduler(shown, what))
            received += chunk
        if verdict == "greeting":
            # The scheduler's own greeting is a valid handshake: sent back, the scheduler
            # sees a client that connects and leaves, instead of logging a broken handshake.
            with contextlib.suppress(OSError):
                sock.sendall(received)
            return
    raise NotASchedulerError(_not_a_scheduler(shown, _spoke(received)))


def _open_socket(host: str, port: int, shown: str, deadline: float, timeout: float):
    """A TCP connection to (host, port), retried while refused (a scheduler may be starting)
    until the deadline; else :class:`SchedulerUnreachableError`."""
    pause = 0.05
    while True:
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:g} s")
            return socket.create_connection((host, port), timeout=remaining)
        except ConnectionRefusedError as error:
            if deadline - time.monotonic() <= pause:
                reason = f"{_first_line(error)}, retried for {timeout:g} s"
                raise SchedulerUnreachableError(_unreachable(shown, reason)) from None
            time.sleep(pause)
            pause = min(2 * pause, 0.5)
        except OSError as error:  # no such host, no route, no answer in time
            raise SchedulerUnreachableError(_unreachable(shown, _first_line(error))) from None


def _judge_greeting(received: bytes) -> str:
    """ "greeting" when ``received`` is one whole message in distributed's framing (its
    length, the number of frames, each frame's length, the frames; lengths adding up),
    "partial" while it may still become one, "other" when it cannot."""
    if len(received) < 8:
        return "partial"
    (size,) = struct.unpack_from("Q", received)  # distributed's framing: native uint64
    if not 16 <= size <= GREETING_MAX_BYTES:
        return "other"
    if len(received) < 8 + size:
        return "partial"
    (n_frames,) = struct.unpack_from("Q", received, 8)
    if len(received) != 8 + size or not 1 <= n_frames <= (size - 8) // 8:
        return "other"
    lengths = struct.unpack_from(f"{n_frames}Q", received, 16)
    return "greeting" if 8 * (1 + n_frames) + sum(lengths) == size else "other"


def _spoke(received: bytes) -> str:
    """What a peer that is not a scheduler said, by its first bytes, without quoting them."""
    for prefix, protocol in _PROTOCOLS.items():
        if received.startswith(prefix):
            return f"it spoke {protocol}"
    return f"it sent {len(received)} bytes that are not Dask's greeting"


def _answers_http(sock: socket.socket) -> bool:
    """Whether the silent peer on ``sock`` answers an HTTP request within
    :data:`HTTP_PROBE_TIMEOUT` seconds."""
    try:
        sock.settimeout(HTTP_PROBE_TIMEOUT)
        sock.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        return sock.recv(64).startswith(b"HTTP/")
    except OSError:  # reset, closed or still silent: not HTTP as far as can be told
        return False


def _not_a_scheduler(shown: str, what: str) -> str:
    return f"something answered at {shown} but it is not a Dask scheduler ({what}); {_CHECK_PORT}"


def _silent(shown: str, timeout: float, what: str | None) -> str:
    if what is not None:
        return _not_a_scheduler(shown, what)
    return (
        f"something answered at {shown} but did not complete Dask's handshake within "
        f"{timeout:g} s (it accepted the connection and sent nothing, where a Dask scheduler "
        f"greets at once); {_CHECK_PORT}"
    )


@contextlib.contextmanager
def on_cluster(scheduler) -> Iterator[Any]:
    """Run knnlab's searches inside the block on a Dask cluster: ``kneighbors``, the
    estimators' brute-force searches and ``grid_search_cv`` take its client when they are
    not given one. ``scheduler``: an address (connected here, closed at the end) or a
    ``distributed.Client`` (left open). Yields the client."""
    owned = isinstance(scheduler, str)
    client = connect(scheduler) if owned else scheduler
    token = _ACTIVE.set(client)
    try:
        yield client
    finally:
        _ACTIVE.reset(token)
        if owned:
            client.close()


def resolve_client(scheduler):
    """The client for ``scheduler`` (None: the enclosing :func:`on_cluster`'s, if any; a
    string: a new connection, which the caller's search closes after use, see
    :func:`client_for`)."""
    if scheduler is None:
        return _ACTIVE.get()
    return scheduler


@contextlib.contextmanager
def client_for(scheduler) -> Iterator[Any]:
    """A client for ``scheduler`` (address or Client) for the length of the block; None
    when there is neither a scheduler nor an enclosing :func:`on_cluster`."""
    scheduler = resolve_client(scheduler)
    if isinstance(scheduler, str):
        client = connect(scheduler)
        try:
            yield client
        finally:
            client.close()
    else:
        yield scheduler


def _require_workers(client) -> None:
    """Wait up to :data:`CONNECT_TIMEOUT` seconds for a worker; else
    :class:`SchedulerUnreachableError` (tasks would wait for ever on a cluster without
    workers)."""
    if client.nthreads():
        return
    timeout = CONNECT_TIMEOUT
    address = client.scheduler.address
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise SchedulerUnreachableError(
            f"Dask scheduler {address} has no workers (waited {timeout:g} s); start one: "
            f"`dask worker {address}`"
        ) from None


def total_threads(client) -> int:
    """Worker threads of the cluster (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def memory_limits(client) -> list[int]:
    """Each worker's memory limit in bytes (0: none set)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return [int(w.get("memory_limit") or 0) for w in workers.values()]


# --- scattered inputs and resilient tasks --------------------------------------------------


def compact(array: np.ndarray) -> np.ndarray:
    """The array in the narrowest of uint8, int16 and float32 that holds every float64
    value bit for bit (pixels are small integers: 8x fewer bytes to send), else itself.
    ``np.asarray(compact(a), dtype=np.float64)`` has a's exact bits, so a worker that widens
    it computes what this machine would."""
    if array.dtype != np.float64 or array.size == 0:
        return array
    # Equal float64 values have equal bits, but for -0.0 == 0.0 (NaN never compares equal):
    # integers cannot hold -0.0, float32 can.
    negative_zero = bool((np.signbit(array) & (array == 0)).any())
    for dtype in (np.uint8, np.int16, np.float32):
        if negative_zero and dtype != np.float32:
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            narrow = array.astype(dtype)
        if np.array_equal(narrow.astype(np.float64), array):
            return narrow
    return array


@dataclass(frozen=True)
class Ref:
    """A task argument standing for a scattered input (by name), see :func:`run_tasks`."""

    name: str


def run_tasks(
    client,
    inputs: dict[str, np.ndarray],
    calls: Sequence[tuple[Callable, tuple]],
    *,
    broadcast: Sequence[str] = (),
    on_result: Callable[[int, Any], None] | None = None,
    timings: dict[str, float] | None = None,
) -> list:
    """Run ``function(*args)`` for every (function, args) in ``calls`` on the cluster and
    return the results in the order of ``calls``.

    inputs : arrays scattered once, before any task; an argument ``Ref(name)`` is replaced by
        the scattered ``inputs[name]`` on the worker, in the narrowest dtype that holds it
        exactly (:func:`compact`: the function widens it back with ``np.asarray(x,
        dtype=np.float64)``). Those named in ``broadcast`` go to every
        worker, the others to one worker each (round-robin), where the tasks using them run.
    on_result : called as results arrive, with the call's position and its result.
    timings : if given, filled with the seconds spent narrowing the inputs (``compact``),
        scattering them (``scatter``, re-scatters included) and from the first submission
        to the last result (``tasks``).

    The functions must be pure (same arguments, same result): a task whose worker dies is
    rerun by Dask; a task whose scattered input was lost with a worker is resubmitted after
    the lost inputs are scattered again (at most :data:`MAX_RESUBMITS` times). An exception
    raised by a function is raised here.
    """
    from distributed import as_completed

    broadcast = set(broadcast)
    futures: dict[str, Any] = {}
    spent = {"compact": 0.0, "scatter": 0.0}

    def scatter(names: list[str]) -> None:
        for wide in (True, False):
            chosen = [n for n in names if (n in broadcast) == wide]
            if chosen:
                start = time.perf_counter()
                sent = [compact(inputs[n]) for n in chosen]
                compacted = time.perf_counter()
                scattered = client.scatter(sent, broadcast=wide, hash=False)
                spent["compact"] += compacted - start
                spent["scatter"] += time.perf_counter() - compacted
                futures.update(zip(chosen, scattered, strict=True))

    _require_workers(client)
    scatter(list(inputs))
    scattered = time.perf_counter()

    def submit(position: int):
        function, args = calls[position]
        resolved = [futures[a.name] if isinstance(a, Ref) else a for a in args]
        return client.submit(function, *resolved, pure=False)

    pending = {submit(i): i for i in range(len(calls))}
    attempts = [0] * len(calls)
    results: list[Any] = [None] * len(calls)
    done = as_completed(list(pending), loop=client.loop)
    try:
        for future in done:
            position = pending.pop(future)
            if future.status == "finished":
                results[position] = future.result()
                future.release()
                if on_result is not None:
                    on_result(position, results[position])
                continue
            if future.status == "error":
                future.result()  # the function raised: raise it here
            # Cancelled or lost: an input of this task went with a worker.
            attempts[position] += 1
            if attempts[position] > MAX_RESUBMITS:
                raise RuntimeError(
                    f"Dask task {position} lost its input data {MAX_RESUBMITS} times "
                    f"(workers dying?); last state: {future.status}"
                )
            needed = [a.name for a in calls[position][1] if isinstance(a, Ref)]
            scatter([n for n in needed if futures[n].status != "finished"])
            retry = submit(position)
            pending[retry] = position
            done.add(retry)
    finally:
        for future in list(pending) + list(futures.values()):
            future.cancel()
    if timings is not None:
        timings.update(spent, tasks=time.perf_counter() - scattered)
    return results


# --- the sharded search ---------------------------------------------------------------------


def shard_bounds(n_rows: int, n_shards: int) -> np.ndarray:
    """(n_shards + 1,) row offsets of contiguous, near-equal shards (none empty)."""
    n_shards = max(1, min(n_shards, n_rows))
    return np.linspace(0, n_rows, n_shards + 1).round().astype(np.int64)


@dataclass(frozen=True)
class SearchPlan:
    """How a search is split: ``n_shards`` contiguous training shards times
    ``n_query_blocks`` contiguous query blocks, one task per pair. With one shard the
    training set is replicated (sent to every worker) and the query blocks go one worker
    each; with several, each shard goes to one worker and the query blocks to all."""

    n_shards: int
    n_query_blocks: int

    @property
    def replicated(self) -> bool:
        return self.n_shards == 1


def plan_search(
    train_bytes: int,
    n_train: int,
    n_queries: int,
    threads: int,
    memory_limits: Sequence[int] = (),
    *,
    n_shards: int | None = None,
    query_block: int = QUERY_BLOCK_ROWS,
    replicate: bool = True,
) -> SearchPlan:
    """The split of a search of n_queries against n_train training rows (train_bytes of
    float64) on a cluster of ``threads`` worker threads whose workers have the given
    memory limits in bytes (0 or none: no limit).

    Replicate (one shard) when ``replicate`` (the search prunes: the p = 2 pre-filter) and
    the training set fits a worker (see :data:`REPLICA_MEMORY_FRACTION`); else one shard
    per thread at least, more if a shard would not fit. A scan of every pair (any other p)
    costs the same split either way, but its set-up (the float32 copy, norms) is split
    with the shards and repeated by replicas: measured at p = 1 on Fashion-MNIST, 1.62-1.75x
    on 2 workers sharded against 1.42-1.61x replicated. ``n_shards`` overrides. Query
    blocks: at most ``query_block`` rows, and at least enough that every thread has a
    task."""
    if n_shards is not None:
        _check_positive("n_shards", n_shards, " or None (plan it)")
    _check_positive("query_block", query_block)
    threads = max(1, threads)
    limits = [m for m in memory_limits if m]
    budget = REPLICA_MAX_BYTES
    if limits:
        budget = min(budget, int(REPLICA_MEMORY_FRACTION * min(limits)))
    if n_shards is None:
        needed = -(-train_bytes // max(1, budget))
        n_shards = 1 if replicate and needed <= 1 else max(threads, needed)
    n_shards = max(1, min(n_shards, n_train))
    blocks = max(-(-n_queries // max(1, query_block)), -(-threads // n_shards))
    return SearchPlan(n_shards, max(1, min(blocks, n_queries)))


def _check_positive(name: str, value, alternative: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer{alternative}, got {value!r}")


def plan_for(
    client,
    X_train: np.ndarray,
    n_queries: int,
    n_neighbors: int,
    p: float,
    prefilter: bool | None = None,
    *,
    n_shards: int | None = None,
    query_block: int = QUERY_BLOCK_ROWS,
) -> SearchPlan:
    """:func:`plan_search` for a search of n_queries against the checked X_train (n, d) on
    ``client``'s cluster: replicas only for a search that prunes (decided as
    :func:`knnlab.neighbors.kneighbors` decides on one machine)."""
    from knnlab import _kernels, neighbors

    n_train, n_features = X_train.shape
    prunes = neighbors.prefilter_applies(
        prefilter, _kernels.power_kind(p), n_train, n_features, n_queries, n_neighbors
    )
    return plan_search(
        n_train * n_features * 8,
        n_train,
        n_queries,
        total_threads(client),
        memory_limits(client),
        n_shards=n_shards,
        query_block=query_block,
        replicate=prunes,
    )


def search_shard(
    shard: np.ndarray,
    offset: int,
    queries: np.ndarray,
    n_neighbors: int,
    p: float,
    working_memory: int | None,
    prefilter: bool | None,
    whole: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One task: the exact top ``min(n_neighbors, len(shard))`` of each query (m, d) among
    the shard's rows (n_s, d), on one thread. whole : (n_train, n_queries) of the whole
    search, for the automatic pre-filter's decision. Returns distances (m, k_s) and global
    row indices (m, k_s) (local row + offset), sorted by (distance, index)."""
    from knnlab import neighbors

    shard = np.ascontiguousarray(shard, dtype=np.float64)  # as sent by compact()
    queries = np.ascontiguousarray(queries, dtype=np.float64)
    k = min(n_neighbors, shard.shape[0])
    distances, indices, _ = neighbors.search_checked(
        shard, queries, k, p, working_memory, 1, prefilter, whole
    )
    return distances, indices + offset


def merge_neighbours(
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
    n_neighbors: int,
    own_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge shards' neighbour lists with knnlab's tie rule.

    parts : per shard, distances (m, k_s) and global indices (m, k_s); own_rows : (m,) the
        global training row of each query to leave out (the queries are the training
        rows), or None. Returns the first n_neighbors by (distance, then lower index) of
        each row: distances (m, n_neighbors) float64 and indices (m, n_neighbors) int64.
    """
    distances = np.concatenate([d for d, _ in parts], axis=1)  # (m, sum k_s)
    indices = np.concatenate([i for _, i in parts], axis=1)
    if own_rows is not None:
        own = indices == own_rows[:, None]
        distances = np.where(own, np.inf, distances)
        indices = np.where(own, np.iinfo(np.int64).max, indices)  # last among the inf
    order = np.lexsort((indices, distances), axis=-1)[:, :n_neighbors]
    return (
        np.take_along_axis(distances, order, axis=1),
        np.take_along_axis(indices, order, axis=1),
    )


def sharded_kneighbors(
    client,
    X_train,
    X_query,
    n_neighbors: int,
    *,
    p: float = 2,
    working_memory: int | None = None,
    prefilter: bool | None = None,
    n_shards: int | None = None,
    query_block: int = QUERY_BLOCK_ROWS,
    timings: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`knnlab.neighbors.kneighbors` on a Dask cluster: same arguments and checks,
    bit-identical results (see the module docstring for why).

    client : ``distributed.Client`` or a scheduler address; n_shards : training shards
    (default: :func:`plan_search`, one, replicated, when the training set fits a worker);
    query_block : queries per task at most; timings : if given, filled with the seconds of
    ``compact``, ``scatter``, ``tasks`` (see :func:`run_tasks`) and ``merge``, and with the
    plan's ``n_shards`` and ``n_query_blocks``.
    """
    from knnlab import _kernels, neighbors

    with client_for(client) as client:
        X_train, X_query, p = neighbors.check_search_inputs(X_train, X_query, n_neighbors, p)
        is_self_query = X_query is None
        queries = X_train if is_self_query else X_query
        whole = (len(X_train), len(queries))
        settings = (working_memory, prefilter, whole)
        plan = plan_for(
            client,
            X_train,
            len(queries),
            n_neighbors,
            p,
            prefilter,
            n_shards=n_shards,
            query_block=query_block,
        )
        bounds = shard_bounds(len(X_train), plan.n_shards)
        blocks = shard_bounds(len(queries), plan.n_query_blocks)
        n_s, n_q = len(bounds) - 1, len(blocks) - 1
        inputs = {f"shard{s}": X_train[bounds[s] : bounds[s + 1]] for s in range(n_s)}
        inputs |= {f"queries{q}": queries[blocks[q] : blocks[q + 1]] for q in range(n_q)}
        # The query's own row, when it is a training row: one more from each shard.
        k_ask = n_neighbors + int(is_self_query)
        calls = [
            (
                search_shard,
                (Ref(f"shard{s}"), int(bounds[s]), Ref(f"queries{q}"), k_ask, p, *settings),
            )
            for q in range(n_q)
            for s in range(n_s)
        ]
        # Whatever every task reads goes to every worker: the one training shard when it is
        # replicated, else the query blocks (each shard then stays on one worker).
        wide = ["shard0"] if n_s == 1 else [f"queries{q}" for q in range(n_q)]
        description = f"search of {len(queries):,} queries on Dask"
        with Progress(len(calls), description, "task") as progress:
            found = run_tasks(
                client,
                inputs,
                calls,
                broadcast=wide,
                timings=timings,
                on_result=lambda position, result: progress.update(),
            )
    merge_start = time.perf_counter()
    distances = np.empty((len(queries), n_neighbors))
    indices = np.empty((len(queries), n_neighbors), dtype=np.int64)
    for q in range(n_q):
        a, b = int(blocks[q]), int(blocks[q + 1])
        own = np.arange(a, b) if is_self_query else None
        distances[a:b], indices[a:b] = merge_neighbours(
            found[q * n_s : (q + 1) * n_s], n_neighbors, own
        )
    if np.isinf(distances).any():
        centre = X_train.mean(axis=0)
        a_all = _kernels.largest_centred(X_train, centre)
        if not is_self_query:
            a_all = max(a_all, _kernels.largest_centred(queries, centre))
        neighbors.check_finite_distances(distances, p, a_all)
    if timings is not None:
        timings["merge"] = time.perf_counter() - merge_start
        timings.update(n_shards=n_s, n_query_blocks=n_q)
    return distances, indices


def describe(client) -> str:
    """One line: the scheduler's address and its workers and threads."""
    threads = client.nthreads()
    return (
        f"Dask scheduler {client.scheduler.address}: {len(threads)} workers, "
        f"{sum(threads.values())} threads"
    )
