"""Events: the bus, signed webhooks through retries / circuit / dead letters to a real
receiver on loopback, and MCP logging notifications to a real client."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.logging import LogMessage

from session_buddy import di
from session_buddy.core import events as ev
from session_buddy.core.webhooks import WebhookService, sign, verify
from tests.test_project import commit_all, make_repo
from tests.webhook_receiver import Receiver, webhook_receiver

SECRET = b"test-webhook-secret"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("SESSION_BUDDY_WEBHOOK_SECRET", SECRET.decode())
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)
    with webhook_receiver(SECRET) as r:
        yield r


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "hooked-app")
    (repo / "pyproject.toml").write_text('[project]\nname = "hooked"\n')
    commit_all(repo, "initial")
    return repo


def settings_for(tmp_path: Path, urls: list[str], **events: Any) -> Any:
    from session_buddy.settings import load_settings

    section = {
        "webhooks": urls,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_attempts": 4,
        "dlq_backoff_base_s": 3600.0,  # no automatic retry during a test unless asked
        **events,
    }
    return load_settings(
        mode="lite",
        data_dir=tmp_path / "data",
        adapters={"embeddings": "none", "storage": "memory"},
        events=section,
    ).settings


@pytest.fixture
async def logged() -> list[LogMessage]:
    return []


async def open_client(settings: Any, logged: list[LogMessage]) -> Client[Any]:
    from session_buddy.server.app import create_server

    async def on_log(message: LogMessage) -> None:
        logged.append(message)

    return Client(create_server(settings), log_handler=on_log)


async def call(client: Client[Any], tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    data = result.structured_content
    assert isinstance(data, dict)
    return data.get("result", data) if set(data) == {"result"} else data


@pytest.fixture
async def session_client(
    tmp_path: Path, receiver: Receiver, logged: list[LogMessage], request: pytest.FixtureRequest
) -> AsyncIterator[Client[Any]]:
    extra = getattr(request, "param", {})
    client = await open_client(settings_for(tmp_path, [receiver.url], **extra), logged)
    async with client:
        yield client


def test_the_bus_calls_every_listener_and_survives_a_failing_one() -> None:
    bus = ev.EventBus()
    seen: list[ev.Event] = []

    def broken(event: ev.Event) -> None:
        raise RuntimeError("listener bug")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(seen.append)
    event = bus.emit(ev.SESSION_STARTED, session_id="s1")
    assert seen == [event] and event.data == {"session_id": "s1"} and len(event.id) == 32
    unsubscribe()
    bus.emit(ev.SESSION_ENDED)
    assert len(seen) == 1


def test_the_settings_know_every_event_type_and_refuse_others(tmp_path: Path) -> None:
    from typing import get_args

    from session_buddy.errors import ConfigurationError
    from session_buddy.settings import EventType

    assert get_args(EventType) == ev.EVENT_TYPES
    with pytest.raises(ConfigurationError, match=r"events\.types\.0: Input should be"):
        settings_for(tmp_path, [], types=["session.strated"])


def test_the_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    import hashlib
    import hmac

    body = b'{"type": "session.started"}'
    expected = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", body) == f"sha256={expected}"
    assert verify(SECRET, "1700000000", body, f"sha256={expected}")
    assert not verify(b"other", "1700000000", body, f"sha256={expected}")
    assert not verify(SECRET, "1700000001", body, f"sha256={expected}")  # replayed later


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.02)


async def test_events_are_delivered_signed_once_after_retries_and_never_block_a_call(
    session_client: Client[Any], receiver: Receiver, repo: Path
) -> None:
    receiver.hold.clear()  # the receiver hangs: the calls must not wait for it
    started = await call(session_client, "start", working_directory=str(repo))
    checkpoint = await call(session_client, "checkpoint", name="first")
    assert checkpoint["session_id"] == started["session"]["id"]
    assert receiver.attempts == []  # nothing was answered while the calls ran
    receiver.fail_next = 2  # then two 500s: the retries deliver it
    receiver.hold.set()
    webhooks = di.get(WebhookService)
    await until(lambda: len(receiver.accepted) >= 2)
    await webhooks.flush()
    assert receiver.bad_signatures == 0
    started_events = receiver.accepted_of(ev.SESSION_STARTED)
    checkpoints = receiver.accepted_of(ev.SESSION_CHECKPOINT)
    assert len(started_events) == 1 and len(checkpoints) == 1  # once each
    body = checkpoints[0]["body"]
    assert body["data"]["session_id"] == started["session"]["id"]
    assert body["data"]["checkpoint_id"] == checkpoint["checkpoint_id"]
    assert body["id"] == checkpoints[0]["event_id"]
    # the two failed tries were of the first event, with the same id as its delivery
    first_id = receiver.attempts[0]["event_id"]
    assert [a["event_id"] for a in receiver.attempts[:3]] == [first_id] * 3
    status = await webhooks.status()
    assert status["delivered"] == 2 and status["retries"] == 2 and status["dlq_size"] == 0
    assert status["circuits"][0]["state"] == "closed"


@pytest.mark.parametrize(
    "session_client",
    [{"max_attempts": 2, "breaker_failures": 3, "breaker_cooldown_s": 0.3}],
    indirect=True,
)
async def test_a_receiver_that_keeps_failing_gets_dead_letters_then_recovers(
    session_client: Client[Any], receiver: Receiver, repo: Path
) -> None:
    receiver.fail_always = True
    await call(session_client, "start", working_directory=str(repo))
    for name in ("a", "b", "c"):
        await call(session_client, "checkpoint", name=name)
    webhooks = di.get(WebhookService)
    await webhooks.flush()
    listed = await webhooks.dlq("list")
    assert listed["size"] == 4  # started + 3 checkpoints, none lost
    assert receiver.accepted == []
    by_type = sorted(e["type"] for e in listed["entries"])
    assert by_type == [ev.SESSION_CHECKPOINT] * 3 + [ev.SESSION_STARTED]
    errors = {e["last_error"] for e in listed["entries"]}
    # 2 tries each: after 3 failed calls the circuit opened and the rest were parked at once
    assert any("HTTP 500" in e for e in errors) and any("circuit" in e for e in errors)
    assert (await webhooks.status())["circuits"][0]["state"] == "open"
    assert len(receiver.attempts) == 3

    receiver.fail_always = False  # recovered; the circuit half-opens after its cool-down
    await asyncio.sleep(0.35)
    retried = await webhooks.dlq("retry")
    assert retried["delivered"] == 4 and retried["left"] == 0
    assert len(receiver.accepted) == 4 and receiver.bad_signatures == 0
    assert len({a["event_id"] for a in receiver.accepted}) == 4
    assert (await webhooks.status())["circuits"][0]["state"] == "closed"


async def test_a_refused_delivery_is_not_retried_and_can_be_dropped(
    tmp_path: Path, receiver: Receiver
) -> None:
    from session_buddy.adapters.storage._base import StorageBase

    settings = settings_for(tmp_path, [receiver.url])
    di.configure(settings)
    await di.startup()
    try:
        receiver.fail_always, receiver.fail_status = True, 422
        bus = di.get(ev.EventBus)
        bus.emit(ev.SYNC_FAILED, remote="akosha", error="boom")
        webhooks = di.get(WebhookService)
        await webhooks.flush()
        assert len(receiver.attempts) == 1  # a 4xx is the receiver's no: not retried
        listed = await webhooks.dlq("list")
        assert listed["size"] == 1 and "HTTP 422" in listed["entries"][0]["last_error"]
        assert (await webhooks.dlq("drop"))["dropped"] == 1
        assert await di.get(StorageBase).list_records("events_dlq") == []
    finally:
        await di.shutdown()


async def test_without_a_secret_nothing_is_sent(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SESSION_BUDDY_WEBHOOK_SECRET")
    di.configure(settings_for(tmp_path, [receiver.url]))
    webhooks = di.get(WebhookService)
    di.get(ev.EventBus).emit(ev.SESSION_STARTED, session_id="x")
    status = await webhooks.status()
    assert status["signing"] is False and status["queued"] == 0 and receiver.attempts == []


@pytest.mark.parametrize("session_client", [{"types": ["session.ended"]}], indirect=True)
async def test_the_client_gets_each_event_as_a_logging_notification(
    session_client: Client[Any], receiver: Receiver, logged: list[LogMessage], repo: Path
) -> None:
    started = await call(session_client, "start", working_directory=str(repo))
    checkpoint = await call(session_client, "checkpoint", name="notified")
    ours = [m for m in logged if m.logger == "session_buddy.events"]
    types = [m.data["msg"] for m in ours]
    assert types == [ev.SESSION_STARTED, ev.SESSION_CHECKPOINT]  # before each call's answer
    extra = ours[1].data["extra"]
    assert extra["type"] == ev.SESSION_CHECKPOINT
    assert extra["data"]["session_id"] == started["session"]["id"]
    assert extra["data"]["checkpoint_id"] == checkpoint["checkpoint_id"]
    await call(session_client, "end")
    await di.get(WebhookService).flush()
    # events.types filters the webhooks, not the notifications
    assert [a["type"] for a in receiver.accepted] == [ev.SESSION_ENDED]
    assert json.dumps(receiver.accepted[0]["body"]["data"]["session_id"]) == json.dumps(
        started["session"]["id"]
    )


def test_the_cli_lists_the_events_dead_letters(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from session_buddy.cli.app import app

    monkeypatch.setenv("SESSION_BUDDY_ADAPTERS__STORAGE", "duckdb")
    monkeypatch.setenv("SESSION_BUDDY_ADAPTERS__EMBEDDINGS", "none")
    monkeypatch.setenv("SESSION_BUDDY_EVENTS__WEBHOOKS", json.dumps([receiver.url]))
    monkeypatch.setenv("SESSION_BUDDY_EVENTS__MAX_ATTEMPTS", "1")

    async def park_one() -> None:
        di.configure()
        await di.startup()
        try:
            receiver.fail_always, receiver.fail_status = True, 410
            di.get(ev.EventBus).emit(ev.SESSION_ENDED, session_id="s-cli")
            await di.get(WebhookService).flush()
        finally:
            await di.shutdown()
            di.reset()

    asyncio.run(park_one())
    runner = CliRunner()
    done = runner.invoke(app, ["events", "dlq", "list", "--json"])
    assert done.exit_code == 0, done.output
    listed = json.loads(done.stdout)
    assert listed["size"] == 1
    (entry,) = listed["entries"]
    assert entry["type"] == ev.SESSION_ENDED and entry["url"] == receiver.url
    assert "HTTP 410" in entry["last_error"] and entry["attempts"] == 1
    di.reset()
    dropped = runner.invoke(app, ["events", "dlq", "drop", "--json"])
    assert dropped.exit_code == 0 and json.loads(dropped.stdout) == {"dropped": 1, "left": 0}


async def test_another_connected_client_gets_the_events_in_the_background(
    tmp_path: Path, receiver: Receiver, repo: Path
) -> None:
    from session_buddy.server.app import create_server

    server = create_server(settings_for(tmp_path, [receiver.url]))
    mine: list[LogMessage] = []
    theirs: list[LogMessage] = []

    async def on_mine(message: LogMessage) -> None:
        mine.append(message)

    async def on_theirs(message: LogMessage) -> None:
        theirs.append(message)

    async with Client(server, log_handler=on_theirs) as other:
        await other.call_tool("health", {})  # the server has seen this session
        async with Client(server, log_handler=on_mine) as client:
            started = await call(client, "start", working_directory=str(repo))
            await until(lambda: len(theirs) >= 1)
    assert [m.data["msg"] for m in mine] == [ev.SESSION_STARTED]
    assert [m.data["msg"] for m in theirs] == [ev.SESSION_STARTED]  # once, not twice
    assert theirs[0].data["extra"]["data"]["session_id"] == started["session"]["id"]


def durable_settings(tmp_path: Path, url: str) -> Any:
    """The webhook settings of ``settings_for`` on a DuckDB store (which keeps dead letters
    across runs), embeddings off."""
    from session_buddy.settings import load_settings

    settings = settings_for(tmp_path, [url])
    return load_settings(
        mode="lite",
        data_dir=tmp_path / "data",
        adapters={"embeddings": "none", "storage": "duckdb"},
        events=settings.events.model_dump(),
    ).settings


async def test_events_undelivered_at_stop_are_sent_by_the_next_run(
    tmp_path: Path, receiver: Receiver, logged: list[LogMessage], repo: Path
) -> None:
    """The service stops while the receiver hangs: the delivery under way and the queued
    events become dead letters in the (durable) store, and the next run delivers them."""
    durable = functools.partial(durable_settings, tmp_path, receiver.url)

    receiver.hold.clear()
    async with await open_client(durable(), logged) as client:
        await call(client, "start", working_directory=str(repo))
        for name in ("a", "b"):
            await call(client, "checkpoint", name=name)
    assert receiver.accepted == []  # stopped with all three undelivered
    receiver.hold.set()
    di.reset()  # the next run: a new container, as a new process would have
    async with await open_client(durable(), logged) as client:
        listed = await call(client, "events_webhooks", action="list")
        assert listed["size"] == 3
        assert {e["last_error"] for e in listed["entries"]} == {
            "not delivered before the service stopped"
        }
        retried = await call(client, "events_webhooks", action="retry")
        assert retried["left"] == 0
    sent = {a["event_id"] for a in receiver.accepted}
    assert {e["event_id"] for e in listed["entries"]} <= sent
    types = sorted(a["type"] for a in receiver.accepted if a["event_id"] in sent)
    assert types.count(ev.SESSION_CHECKPOINT) >= 2 and ev.SESSION_STARTED in types


async def test_events_of_the_hooks_applied_at_stop_are_not_lost(
    tmp_path: Path, receiver: Receiver, logged: list[LogMessage], repo: Path
) -> None:
    """A SessionEnd that Claude Code's hook spooled as it closed is applied at shutdown,
    after the webhooks stopped: its events (the final checkpoint, the session's end) started
    a new worker that nothing stopped, whose delivery hung until storage closed and the loop
    ended, and they were lost. They become dead letters the next run sends, as the queue's."""
    from session_buddy.core.sessions import spool_files

    durable = functools.partial(durable_settings, tmp_path, receiver.url)

    receiver.hold.clear()
    async with await open_client(durable(), logged) as client:
        await call(client, "events_webhooks", action="list")  # the service is up
        payload = {"session_id": "cc-closing", "cwd": str(repo)}
        spool_files.spool_event(tmp_path / "data", "SessionStart", payload)
        spool_files.spool_event(tmp_path / "data", "SessionEnd", {**payload, "reason": "exit"})
    assert receiver.accepted == []
    receiver.hold.set()
    di.reset()
    async with await open_client(durable(), logged) as client:
        listed = await call(client, "events_webhooks", action="list")
    types = [e["type"] for e in listed["entries"]]
    assert ev.SESSION_ENDED in types, listed
