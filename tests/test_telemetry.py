"""Telemetry: OpenTelemetry spans (tool call -> storage -> embedding), Prometheus /metrics
scraped over real HTTP, events as notifications through the stdio bridge, the lazy imports,
and ``session-buddy logs``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from session_buddy import di
from tests.conftest import ROOT, session_buddy_cmd
from tests.mcp_peers import bridge_and_service, server_env
from tests.test_project import commit_all, make_repo


@pytest.fixture
def spans() -> Iterator[Any]:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from session_buddy.core import telemetry

    exporter = InMemorySpanExporter()
    yield exporter
    telemetry.stop_tracing()
    exporter.shutdown()  # the provider stays (one per process); this exporter takes no more


async def test_a_tool_call_is_traced_through_embedding_and_storage(
    tmp_path: Path, spans: Any
) -> None:
    from session_buddy.core.telemetry import configure_tracing
    from session_buddy.server.app import create_server
    from session_buddy.settings import load_settings

    settings = load_settings(
        mode="lite", data_dir=tmp_path / "data", telemetry={"traces": True}
    ).settings
    server = create_server(settings)  # traces on: the SDK provider is installed
    configure_tracing(settings.telemetry, exporter=spans)
    async with Client(server) as client:
        await client.call_tool("store_reflection", {"content": "DuckDB locks the file"})
    done = {s.name: s for s in spans.get_finished_spans()}
    tool = done["tools/call store_reflection"]
    embed, store = done["embeddings.embed"], done["storage.add_items"]
    assert embed.context.trace_id == store.context.trace_id == tool.context.trace_id
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}

    def ancestors(span: Any) -> list[str]:
        names = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names

    assert "tools/call store_reflection" in ancestors(embed)
    assert "tools/call store_reflection" in ancestors(store)
    assert embed.attributes["texts"] == 1 and store.attributes["items"] == 1
    assert store.start_time >= embed.end_time  # embedded first, then stored
    assert done["tools/call store_reflection"].resource.attributes["service.name"] == (
        "session-buddy"
    )


def test_traces_are_off_by_default_and_span_is_a_no_op(lite_settings: Any) -> None:
    from session_buddy.core import telemetry

    di.configure(lite_settings)
    assert not telemetry.tracing()
    with telemetry.span("storage.add_items", items=1) as nothing:
        assert nothing is None


def test_the_stdio_front_and_the_core_import_no_metrics_or_sdk(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import session_buddy.server.stdio\n"
        "front = sorted(m for m in ('prometheus_client', 'opentelemetry.sdk', 'opentelemetry')"
        " if m in sys.modules)\n"
        "import session_buddy.di, session_buddy.core.memory, session_buddy.core.sync\n"
        "server = sorted(m for m in ('prometheus_client', 'opentelemetry.sdk') if m in sys.modules)\n"
        "print(front, server)\n"
    )
    env = server_env(tmp_path, PYTHONPATH=str(ROOT), SESSION_BUDDY_MODE="lite")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] []"


def scrape(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_metrics_over_http_and_events_as_notifications_through_the_bridge(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "metered")
    (repo / "pyproject.toml").write_text('[project]\nname = "metered"\n')
    commit_all(repo, "initial")
    extra = {"SESSION_BUDDY_ADAPTERS__EMBEDDINGS": "none", "PYTHONPATH": str(ROOT)}
    with bridge_and_service(tmp_path, **extra) as (peer, _env):
        peer.call("start", {"working_directory": str(repo)})
        rid = peer.request("tools/call", {"name": "checkpoint", "arguments": {"name": "metered"}})
        seen: list[dict[str, Any]] = []
        while True:
            message = peer.read_message(60)
            if message.get("id") == rid:
                break
            seen.append(message)
        answer = message["result"]["structuredContent"]
        notes = [
            m["params"]
            for m in seen
            if m.get("method") == "notifications/message"
            and m["params"].get("logger") == "session_buddy.events"
        ]
        assert [n["data"]["msg"] for n in notes] == ["session.checkpoint"]
        assert notes[0]["data"]["extra"]["data"]["checkpoint_id"] == answer["checkpoint_id"]

        service = json.loads((tmp_path / "data" / "service.json").read_text())
        base = f"http://{service['host']}:{service['port']}"
        status, text = scrape(base + "/metrics")  # no token: counts only, loopback
        assert status == 200, text
        assert sample(text, "session_buddy_tool_calls_total", tool="checkpoint", outcome="ok") == 1
        assert sample(text, "session_buddy_tool_calls_total", tool="start", outcome="ok") == 1
        assert sample(text, "session_buddy_tool_call_seconds_count", tool="checkpoint") == 1
        assert sample(text, "session_buddy_up") == 1
        assert "session_buddy_up 1.0" in text  # what the Docker healthcheck looks for
        assert sample(text, "session_buddy_items") == 0
        assert sample(text, "session_buddy_embedding_queue_depth") == 0
        assert sample(text, "session_buddy_dead_letters", queue="sync") == 0
        assert sample(text, "session_buddy_dead_letters", queue="events") == 0
        assert sample(text, "session_buddy_circuit_state", remote="none") == 0
        assert scrape(base + "/mcp")[0] == 401  # everything else still needs the token


def test_metrics_auth_keeps_the_token_on_metrics(tmp_path: Path) -> None:
    from session_buddy.server.http import Activity, guard_middleware
    from session_buddy.settings import load_settings

    def open_paths(**telemetry: Any) -> frozenset[str]:
        settings = load_settings(data_dir=tmp_path / "data", telemetry=telemetry).settings
        paths = di.SessionPaths.from_settings(settings.data_dir).ensure()
        return frozenset(guard_middleware(settings, paths, Activity())[0].kwargs["open_paths"])

    assert open_paths() == {"/metrics"}
    assert open_paths(metrics_auth=True) == frozenset()
    assert open_paths(metrics=False) == frozenset()


# -- session-buddy logs --------------------------------------------------------------------


def logs_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*session_buddy_cmd(), "logs", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    logs = tmp_path / "data" / "logs"
    logs.mkdir(parents=True)
    (logs / "service.log.2").write_text("oldest INFO a\noldest WARNING b\n")
    (logs / "service.log.1").write_text("older INFO c\n")
    (logs / "service.log").write_text("newest WARNING d\nnewest INFO e\n")
    return logs


def test_logs_reads_the_rotated_files_in_order_with_grep_and_lines(
    tmp_path: Path, log_dir: Path
) -> None:
    env = server_env(tmp_path, PYTHONPATH=str(ROOT))
    done = logs_cli(env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "oldest INFO a",
        "oldest WARNING b",
        "older INFO c",
        "newest WARNING d",
        "newest INFO e",
    ]
    assert logs_cli(env, "--grep", "WARN", "--lines", "1").stdout == "newest WARNING d\n"
    bad = logs_cli(env, "--grep", "(")
    assert bad.returncode == 2 and "--grep" in bad.stderr


def test_logs_follow_prints_new_lines_across_a_rotation(tmp_path: Path, log_dir: Path) -> None:
    env = server_env(tmp_path, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [*session_buddy_cmd(), "logs", "--follow", "--grep", "keep", "-n", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(1.5)  # the CLI starts and reaches the end of the file
        with (log_dir / "service.log").open("a") as log:
            log.write("keep 1\nskip 2\n")
        time.sleep(0.6)
        os.rename(log_dir / "service.log", log_dir / "service.log.1")  # as the handler does
        (log_dir / "service.log").write_text("keep 3 after rotation\n")
        assert proc.stdout is not None
        got = [proc.stdout.readline().strip() for _ in range(2)]
        assert got == ["keep 1", "keep 3 after rotation"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_spans_are_exported_over_otlp_http_when_configured(tmp_path: Path) -> None:
    """A real OTLP/HTTP receiver on loopback; the exporter runs in a child process (the
    tracer provider is one per process)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    code = (
        "import asyncio\n"
        "from session_buddy.core import telemetry\n"
        "from session_buddy.settings import TelemetrySettings\n"
        f"telemetry.configure_tracing(TelemetrySettings(traces=True, otlp_endpoint={url!r}))\n"
        "with telemetry.span('sync.round', remote='akosha'):\n"
        "    with telemetry.span('sync.push', memories=3):\n"
        "        pass\n"
        "asyncio.run(telemetry.flush_traces())\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=server_env(tmp_path, PYTHONPATH=str(ROOT)),
            timeout=60,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert received and received[0][0] == "/v1/traces"
    assert received[0][1] == "application/x-protobuf"
    exported = ExportTraceServiceRequest.FromString(received[0][2])
    names = {
        span.name: span
        for resource in exported.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert set(names) == {"sync.round", "sync.push"}
    assert names["sync.push"].parent_span_id == names["sync.round"].span_id
    service = {a.key: a.value.string_value for a in exported.resource_spans[0].resource.attributes}
    assert service["service.name"] == "session-buddy"
