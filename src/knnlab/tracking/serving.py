"""``knnlab serve``: a logged model behind MLflow's own scoring server, in this process,
with a guard in front of it that refuses what MLflow would answer with a 500 or a silent
guess (a body too large, JSON nested too deep, an unknown ``params`` key, no
Content-Type), and a clean stop on Ctrl-C or SIGTERM. Kept apart from
:mod:`knnlab.tracking.models`, which the logging stages import, so that a stage's code is
not the serving command's."""

from __future__ import annotations

from knnlab.tracking.models import load_checked_model

# Request bodies ``knnlab serve`` takes. 16 MiB is about 12,000 rows of 64 features (the
# digits) or 1,000 of 784 (MNIST) as JSON, and as much as Databricks' model serving takes per
# request. The server holds the body, its parsed JSON (Python objects, about 5 times the
# text) and MLflow's frame of it at once, and a prediction cannot be cut short once it
# started: a larger batch belongs in several requests, or in ``knnlab predict``.
MAX_BODY_BYTES = 16 * 2**20
# Arrays and objects inside one another: knnlab's request forms need 4 ({"dataframe_split":
# {"data": [[...]]}}); Python's JSON parser gives up near 1,000 (RecursionError), and
# MLflow's handling of what it parsed a little earlier, both answered with 500.
MAX_JSON_DEPTH = 32
SERVE_STOP_TIMEOUT = 20  # seconds requests in progress get to finish after Ctrl-C or SIGTERM


def serve(
    tracking_uri: str, model_uri: str, host: str, port: int, max_body_bytes: int = MAX_BODY_BYTES
) -> None:
    """Serve a logged model with MLflow's own scoring server (``/ping``, ``/health``,
    ``/version``, ``/invocations``: what ``mlflow models serve --env-manager local`` runs),
    in this process, until Ctrl-C or SIGTERM (requests in progress get
    ``SERVE_STOP_TIMEOUT`` seconds to finish, then it returns).

    The model is checked first (:func:`load_checked_model`), and no program is looked up on
    ``PATH`` (MLflow 3.17 starts ``uvicorn`` by name, so its command works only with the
    environment's ``bin`` on ``PATH``). Requests pass :class:`RequestGuard` first: bodies
    over ``max_body_bytes`` get 413, JSON nested deeper than ``MAX_JSON_DEPTH`` 400, and
    ``params`` the model does not declare 400.
    """
    import mlflow
    import uvicorn  # MLflow's scoring server runs on it (a dependency of mlflow)
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    from knnlab.tracking.errors import TrackingError
    from knnlab.tracking.server import bind, check_port
    from knnlab.tracking.store import redact_uri

    check_port(port)
    if max_body_bytes < 1:
        raise ValueError(f"the request body limit must be at least 1 byte; got {max_body_bytes}")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        model = load_checked_model(model_uri)
    except MlflowException as error:  # e.g. no such run or model in the store
        raise TrackingError(
            f"{model_uri} in MLflow store {redact_uri(tracking_uri)}: {error.message}"
        ) from None
    schema = model.metadata.get_params_schema()
    params = [param.name for param in schema.params] if schema is not None else []
    app = RequestGuard(scoring_server.init(model), max_body_bytes, params)
    sock = bind(host, port)
    server = _stoppable_server(uvicorn.Config(app, timeout_graceful_shutdown=SERVE_STOP_TIMEOUT))
    with sock:
        sock.listen()
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        print(f"knnlab serve: {model_uri} at {url}/invocations (request bodies up to "
              f"{max_body_bytes:,} bytes); Ctrl-C or SIGTERM stops", flush=True)  # fmt: skip
        server.run(sockets=[sock])
    print(f"knnlab serve: stopped ({server.stopped_by or 'by itself'})", flush=True)


def _stoppable_server(config):
    """uvicorn's server, which on Ctrl-C or SIGTERM finishes the requests in progress and
    returns, its ``stopped_by`` naming the signal. uvicorn's own raises the signal again
    once stopped, which ends the process by SIGTERM without a word, or by a traceback."""
    import contextlib
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        stopped_by: str | None = None

        @contextlib.contextmanager
        def capture_signals(self):
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {signum: signal.signal(signum, self.handle_exit) for signum in handled}
            try:
                yield
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)

        def handle_exit(self, sig, frame):
            self.stopped_by = self.stopped_by or signal.Signals(sig).name
            super().handle_exit(sig, frame)

    return Server(config)


class RequestGuard:
    """ASGI middleware in front of MLflow's scoring server, answering what MLflow would
    mishandle before MLflow sees it.

    - A body over ``max_body_bytes``, by its ``Content-Length`` or counted as it streams
      in, gets 413 and the connection is closed, before the rest is read: MLflow reads any
      body whole, and its request timeout (504) does not stop the parsing and predicting
      that go on behind it.
    - A request to ``/invocations`` without a ``Content-Type`` gets 415 (MLflow fails on
      it with 500).
    - A JSON body for ``/invocations`` that is not JSON or nests deeper than
      ``MAX_JSON_DEPTH`` gets 400, with a short reason (MLflow quotes the whole body).
    - ``params`` keys that are not in ``allowed_params`` (the model signature's) get 400
      naming the allowed ones: MLflow drops them with a warning in the server's log only,
      so ``{"ouput": "proba"}`` would get labels back with 200.

    Refusals are JSON, ``{"error_code": ..., "message": "knnlab serve: ..."}``, as MLflow's
    own errors are.
    """

    def __init__(self, app, max_body_bytes: int, allowed_params: list[str]):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.allowed_params = list(allowed_params)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # the lifespan messages
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(send, 413, self._too_large(f"{int(declared):,} bytes"))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                await _refuse(send, 413, self._too_large(f"over {self.max_body_bytes:,} bytes"))
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        invocation = scope["method"] == "POST" and scope["path"] == "/invocations"
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip()
        if invocation and not content_type:
            await _refuse(send, 415, "knnlab serve: the request has no Content-Type header; "
                          "send Content-Type: application/json (or text/csv)")  # fmt: skip
            return
        if invocation and content_type == b"application/json":
            import asyncio

            # In a thread, as MLflow parses: /ping answers while a large body is parsed.
            if problem := await asyncio.to_thread(self.json_problem, body):
                await _refuse(send, 400, problem)
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self, size: str) -> str:
        return (
            f"knnlab serve: the request body is {size}, more than the {self.max_body_bytes:,} "
            "this server takes; send fewer rows per request, or start the server with a "
            "larger limit"
        )

    def json_problem(self, body: bytes) -> str | None:
        """Why a JSON request body is refused, in one line; None when it is not."""
        import json

        try:
            request = json.loads(body)
        except RecursionError:
            return _too_deep()
        except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
            return f"knnlab serve: the request body is not JSON: {error}"
        if _nesting_depth(request, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            return _too_deep()
        params = request.get("params") if isinstance(request, dict) else None
        if params is None:
            return None
        allowed = ", ".join(repr(name) for name in self.allowed_params) or "none"
        if not isinstance(params, dict):
            got = _JSON_TYPES.get(type(params), "a number")
            return (
                f"knnlab serve: params must be a JSON object; got {got}; the model's params: "
                f"{allowed}"
            )
        unknown = [key for key in params if key not in self.allowed_params]
        if unknown:
            shown = ", ".join(_excerpt(key) for key in unknown[:_SHOWN_KEYS])
            more = f", ... ({len(unknown)} in all)" if len(unknown) > _SHOWN_KEYS else ""
            return f"knnlab serve: unknown params {shown}{more}; the model's params: {allowed}"
        return None


_JSON_TYPES = {list: "an array", str: "a string", bool: "true or false"}  # else a number
_SHOWN_KEYS = 5  # unknown params keys quoted in a refusal
_KEY_EXCERPT = 40  # characters of each


def _excerpt(key: str) -> str:
    """``key`` quoted, cut to ``_KEY_EXCERPT`` characters, unprintable ones escaped."""
    shown = repr(key[:_KEY_EXCERPT])
    return shown + "..." if len(key) > _KEY_EXCERPT else shown


def _too_deep() -> str:
    return (
        f"knnlab serve: the request's JSON nests arrays and objects more than "
        f"{MAX_JSON_DEPTH} deep; send rows as in the README: "
        '{"inputs": [[...], ...]} or {"dataframe_split": {"columns": [...], "data": [[...]]}}'
    )


def _nesting_depth(value, limit: int) -> int:
    """Levels of arrays and objects in parsed JSON ``value`` (0 for a number or a string),
    counted up to ``limit + 1``: walked with a stack, as a recursive walk would fail
    where the parser did."""
    deepest = 0
    stack = [(value, 1)] if type(value) in (list, dict) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        for child in item.values() if type(item) is dict else item:
            if type(child) is list or type(child) is dict:  # all that json.loads nests
                stack.append((child, depth + 1))
    return deepest


async def _refuse(send, status: int, message: str) -> None:
    """Answer ``status`` with ``message`` as MLflow's errors are; after a 413, close the
    connection, as the rest of the body may still be on its way."""
    import json

    code = {400: "BAD_REQUEST", 413: "REQUEST_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}[status]
    body = json.dumps({"error_code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
