"""The stdio front: answers ``initialize`` at once, then hands the stream to the server.

By default (``server.shared``) the server is the one shared service of the data directory
and this process is a thin bridge to it (:mod:`session_buddy.server.bridge`, started on first use
by :mod:`session_buddy.server.discovery`), so any number of sessions use one memory. With
``serve --standalone`` (or ``server.shared: false``) the server runs inside this process,
as described below.

Importing FastMCP, ACB and the rest takes 1.5-2.5 s on a 2-core machine; an MCP client waits
for the ``initialize`` answer before anything else. So ``session-buddy serve`` (stdio) runs
this front first, which imports nothing heavy:

1. The real stdout is kept for JSON-RPC only: its file descriptor is duplicated for the
   front, and fd 1 plus ``sys.stdout`` are pointed at stderr, so nothing any library prints
   can corrupt the protocol.
2. A loader thread imports the server and configures the container.
3. The main thread reads stdin. It answers ``initialize`` itself (the answer is the one the
   server gives, see :mod:`session_buddy.server.identity`) and queues every message.
4. When the server is loaded it runs on pipes: the queued messages, starting with the same
   ``initialize`` (whose duplicate answer is dropped), are written into it and its answers
   are copied to the real stdout, line by line, JSON-RPC only.
5. End of stdin, SIGTERM or SIGINT close the server's input; its lifespan runs the
   ShutdownManager (database checkpointed and closed) before the process exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sys
import threading
from typing import IO, Any

from session_buddy.server.catalog import listed, unsupported
from session_buddy.server.identity import initialize_result
from session_buddy.server.limits import parse_message, rpc_error
from session_buddy.server.roots import ClientRoots, declares_roots

#: The request size limit until the settings are loaded (the default of
#: ``server.max_request_bytes``); the loaded setting replaces it.
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
#: The smallest limit the settings allow: a shorter line is within any limit.
MIN_REQUEST_LIMIT = 1024

SHUTDOWN_GRACE_S = 30.0
#: the loader waits this long (or until a request needs the server) before it starts importing,
#: so that on a busy machine the first answers (initialize, the lists) go out first
LOADER_DELAY_S = 0.3


class _Stop(Exception):
    pass


BRIDGE_WORKERS = 8


class StdioFront:
    def __init__(self, config: str | None = None, standalone: bool = False) -> None:
        self.config = config
        self.standalone = standalone
        self._protocol_version: str | None = None
        self._out_lock = threading.Lock()
        # each line with its decoded message (checked by limits.parse_message)
        self._inbox: queue.Queue[tuple[bytes, dict[str, Any]] | None] = queue.Queue()
        self.max_request_bytes = DEFAULT_MAX_REQUEST_BYTES
        self._limits_known = threading.Event()  # set once the settings are read
        self._init_id: Any = None
        self._init_answered = False
        self._roots_declared = False  # the client's initialize declared capabilities.roots
        self._drop_init_answer = False
        self._load_error: BaseException | None = None
        self._server: Any = None
        self._stopping = False
        self._out: IO[bytes] = sys.stdout.buffer
        self._needed = threading.Event()  # a request the front cannot answer arrived

    # -- output --------------------------------------------------------------------------------

    def _claim_stdout(self) -> None:
        """Keep the real stdout for JSON-RPC; send everything else written to fd 1 to stderr."""
        sys.stdout.flush()
        real = os.dup(1)
        os.dup2(2, 1)
        self._out = os.fdopen(real, "wb", buffering=0)
        sys.stdout = sys.stderr

    def _send(self, line: bytes) -> None:
        with self._out_lock:
            self._out.write(line if line.endswith(b"\n") else line + b"\n")

    def _send_json(self, message: dict[str, Any]) -> None:
        self._send(json.dumps(message, separators=(",", ":")).encode())

    # -- loading -------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            from session_buddy.logs import reclaim_logging, route_logging_to_stderr

            route_logging_to_stderr()
            from session_buddy.server.app import create_server, private_data_dir
            from session_buddy.settings import load_settings

            loaded = load_settings(self.config)
            route_logging_to_stderr(loaded.settings.log_level)
            private_data_dir(loaded.settings)
            self._server = create_server(loaded.settings)
            reclaim_logging(loaded.settings.log_level)  # bounded records, no Rich boxes
        except BaseException as exc:  # reported to the client as errors
            self._load_error = exc

    # -- the server on pipes -------------------------------------------------------------------

    def _run_server(self) -> None:
        """Run FastMCP's stdio transport with its stdin/stdout replaced by pipes."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        feeder = threading.Thread(target=self._feed, args=(in_w,), name="front-feed", daemon=True)
        pump = threading.Thread(target=self._pump, args=(out_r,), name="front-pump", daemon=True)
        saved_stdin, saved_stdout = sys.stdin, sys.stdout
        sys.stdin = open(in_r, encoding="utf-8", closefd=True)  # noqa: SIM115
        sys.stdout = open(out_w, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
        feeder.start()
        pump.start()
        try:
            self._server.run(transport="stdio", show_banner=False)
        finally:
            # FastMCP's transport may have closed the pipe already when its client went away
            if not sys.stdout.closed:
                with contextlib.suppress(OSError, ValueError):
                    sys.stdout.flush()
                with contextlib.suppress(OSError, ValueError):
                    sys.stdout.close()
            sys.stdin, sys.stdout = saved_stdin, saved_stdout
            pump.join(timeout=5)

    def _feed(self, fd: int) -> None:
        with os.fdopen(fd, "wb", buffering=0) as pipe:
            while True:
                item = self._inbox.get()
                if item is None:
                    return
                line = item[0]
                try:
                    pipe.write(line if line.endswith(b"\n") else line + b"\n")
                except (BrokenPipeError, OSError):
                    return

    def _pump(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                try:
                    message = json.loads(line)
                except (ValueError, RecursionError):
                    sys.stderr.buffer.write(line)  # never let non-JSON-RPC reach stdout
                    continue
                if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                    sys.stderr.buffer.write(line)
                    continue
                if (
                    self._drop_init_answer
                    and "method" not in message
                    and message.get("id") == self._init_id
                ):
                    self._drop_init_answer = False  # the server's answer to the replayed initialize
                    continue
                self._send(line)

    # -- input ---------------------------------------------------------------------------------

    def _answer_load_error(self, message: dict[str, Any]) -> None:
        if "id" in message and "method" in message:
            self._send_json(
                {
                    "jsonrpc": "2.0",
                    "id": message["id"],
                    "error": {
                        "code": -32603,
                        "message": f"session-buddy could not start: {self._load_error}. "
                        "Run `session-buddy health` for details.",
                    },
                }
            )

    def _on_line(self, line: bytes) -> None:
        if not line.strip():
            return
        if len(line) > MIN_REQUEST_LIMIT:  # it may be over the configured limit: know it first
            self._limits_known.wait(SHUTDOWN_GRACE_S)
        message, problem = parse_message(line, self.max_request_bytes)
        if message is None:
            # answered here, in both modes: never decoded by anything that could choke on it
            self._send_json(problem or rpc_error(None, -32600, "Invalid Request"))
            return
        if message.get("method") == "initialize" and not self._init_answered:
            self._init_answered = True
            self._init_id = message.get("id")
            self._drop_init_answer = True
            params = message.get("params")
            params = params if isinstance(params, dict) else {}
            self._roots_declared = declares_roots(params)
            self._send_json(
                {
                    "jsonrpc": "2.0",
                    "id": self._init_id,
                    "result": initialize_result(params.get("protocolVersion")),
                }
            )
        elif "id" in message:
            stored = listed(message.get("method"), message.get("params"))
            if stored is not None:  # answered now, cold service or not (server.catalog)
                self._send_json({"jsonrpc": "2.0", "id": message["id"], "result": stored})
                return
            missing = unsupported(message.get("method"))
            if missing is not None:
                self._send_json({"jsonrpc": "2.0", "id": message["id"], "error": missing})
                return
            if message.get("method") != "initialize":
                self._needed.set()
        self._inbox.put((line, message))

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stopping = True
        raise _Stop

    def _load_and_serve(self) -> None:
        self._needed.wait(LOADER_DELAY_S)
        try:
            from session_buddy.settings import load_settings

            settings = load_settings(self.config).settings
            self.max_request_bytes = settings.server.max_request_bytes
            shared = settings.server.shared and not self.standalone
        except BaseException as exc:
            self._load_error = exc
            shared = False
        finally:
            self._limits_known.set()
        if shared:
            self._bridge(settings)
            return
        if self._load_error is None:
            self._load()
        if self._load_error is None:
            self._run_server()
            return
        while True:  # answer every request with the reason until input ends
            item = self._inbox.get()
            if item is None:
                return
            message = item[1]
            if not (message.get("method") == "initialize" and message.get("id") == self._init_id):
                self._answer_load_error(message)

    def _bridge(self, settings: Any) -> None:
        """Forward every message to the shared service, each on a worker thread; ask a client
        that offers roots for them (:mod:`session_buddy.server.roots`)."""
        from concurrent.futures import ThreadPoolExecutor

        from session_buddy.paths import SessionPaths
        from session_buddy.server.bridge import ServiceBridge, Timeouts

        limits = settings.server
        bridge = ServiceBridge(
            SessionPaths.from_settings(settings.data_dir).data,
            self.config,
            self._send_json,
            self._protocol_version or "2025-06-18",
            user=settings.user,
            timeouts=Timeouts(limits.call_timeout_s, limits.probe_after_s, limits.probe_timeout_s),
        )
        roots = ClientRoots(self._send_json, bridge.set_root)

        def forward(message: dict[str, Any], body: bytes) -> None:
            roots.wait()  # a pending roots/list answer decides "this project"
            bridge.forward(message, body)

        with ThreadPoolExecutor(BRIDGE_WORKERS, thread_name_prefix="bridge") as pool:
            while True:
                item = self._inbox.get()
                if item is None:
                    break
                line, message = item
                method = message.get("method")
                if method == "initialize" and message.get("id") == self._init_id:
                    continue  # answered by the front
                if roots.take(message):
                    continue  # the client's answer to the bridge's own roots/list
                if method in ("notifications/initialized", "notifications/roots/list_changed"):
                    if self._roots_declared:
                        roots.ask()
                    continue  # the service is stateless: nothing to tell it
                if self._protocol_version:
                    bridge.protocol_version = self._protocol_version
                pool.submit(forward, message, line.rstrip(b"\r\n"))

    def run(self) -> int:
        self._claim_stdout()
        worker = threading.Thread(target=self._load_and_serve, name="front-server")
        worker.start()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        stdin = sys.stdin.buffer
        try:
            while True:
                line = stdin.readline(self.max_request_bytes + 1)
                if not line:
                    break
                if len(line) > self.max_request_bytes and not line.endswith(b"\n"):
                    while (rest := stdin.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass  # skip the rest of an over-long line without holding it
                self._on_line(line)
        except _Stop:
            pass
        # End of input or a signal: close the server's input; its lifespan shuts down cleanly.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._inbox.put(None)
        worker.join(timeout=SHUTDOWN_GRACE_S * 2)
        return 0 if self._load_error is None else 1


def main(config: str | None = None, standalone: bool = False) -> int:
    return StdioFront(config, standalone).run()
