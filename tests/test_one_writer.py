"""One writer for every entry point: with the shared service running (it holds the DuckDB
file), the CLI commands that use the store go through it instead of opening the file, and
start it when none runs. Real processes: a stdio bridge, the service, the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.claude_fixtures import RICH_TURNS, rich_session
from tests.conftest import session_buddy_cmd
from tests.mcp_peers import StdioPeer, bridge_and_service, stop_service


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*session_buddy_cmd(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def service_pid(data_dir: Path) -> int:
    from session_buddy.server.discovery import live_service

    info = live_service(data_dir)
    assert info is not None, "no service runs"
    return int(info["pid"])


def found(peer: StdioPeer, query: str) -> list[dict[str, Any]]:
    answer = peer.call("search", {"query": query, "limit": 5})
    assert not answer.get("isError"), answer
    return list(answer["structuredContent"]["hits"])


def test_import_report_and_migrate_out_while_the_service_runs(tmp_path: Path) -> None:
    """`import claude-code` while the service runs (the case that failed with "no other
    session-buddy process holds the file"): stored by the service, searchable through the
    bridge at once; its progress reaches the caller; `report`, `health` and a `migrate` out
    of the service's own store work too, all in that one service."""
    projects = tmp_path / "projects"
    rich_session(projects)
    data = tmp_path / "data"
    with bridge_and_service(tmp_path) as (peer, env):
        peer.call("health", {})  # the bridge started the service
        pid = service_pid(data)
        done = cli(
            env, tmp_path, "import", "claude-code", "--projects-dir", str(projects), "--json"
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["stored"] == RICH_TURNS and report["insights"] == 1, report
        hits = found(peer, "random.uniform jitter exceeds the budget")
        assert any("random.uniform" in h["snippet"] for h in hits), hits

        # progress reaches the client while it works (the CLI draws it on stderr)
        from session_buddy.server.cli_link import run_command

        rich_session(projects, cwd="/home/dev/work/other")
        steps: list[dict[str, Any]] = []
        again = run_command(data, None, "tester", "import", {"path": str(projects)}, steps.append)
        assert again["stored"] == RICH_TURNS and again["duplicates"] == 0
        assert steps and steps[-1]["done"] == steps[-1]["total"] > 0

        shown = cli(env, tmp_path, "report", "--all-projects", "--format", "json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["sessions"] == 0
        health = cli(env, tmp_path, "health", "--json")
        assert health.returncode == 0, health.stderr
        storage = next(c for c in json.loads(health.stdout)["components"] if c["name"] == "storage")
        assert storage["status"] == "healthy", storage

        copy = tmp_path / "copy.duckdb"
        moved = cli(
            env, tmp_path, "migrate", "--from", f"duckdb:{data / 'memory.duckdb'}",
            "--to", f"duckdb:{copy}", "--json",
        )  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        assert (
            json.loads(moved.stdout)["items"] == 2 * RICH_TURNS + 1
        )  # + the insight (the same in both)
        assert service_pid(data) == pid  # every command ran in the one service


def test_migrate_into_the_running_services_store(tmp_path: Path) -> None:
    """With no service running, `import` starts one (as a bridge would) rather than opening
    the file; a bad argument comes back as the command's error (exit 2). Then `migrate --to`
    the store another running service holds: the copy is made by that service, and the
    memories are searchable through its bridge at once (embeddings off: this is about who
    opens the files)."""
    from session_buddy.server.discovery import live_service
    from tests.mcp_peers import server_env

    off = {"SESSION_BUDDY_ADAPTERS__EMBEDDINGS": "none"}
    source = tmp_path / "source"
    source.mkdir()
    projects = tmp_path / "projects"
    rich_session(projects)
    env = server_env(source, **off)
    done = cli(env, source, "import", "claude-code", "--projects-dir", str(projects), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stored"] == RICH_TURNS
    assert live_service(source / "data") is not None
    missing = cli(env, source, "import", "claude-code", "--projects-dir", str(tmp_path / "no"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    stop_service(source / "data")

    with bridge_and_service(tmp_path, **off) as (peer, env):
        peer.call("health", {})
        pid = service_pid(tmp_path / "data")
        target = tmp_path / "data" / "memory.duckdb"
        moved = cli(
            env, tmp_path, "migrate", "--from", f"duckdb:{source / 'data' / 'memory.duckdb'}",
            "--to", f"duckdb:{target}", "--json",
        )  # fmt: skip
        assert moved.returncode == 0, moved.stderr
        assert json.loads(moved.stdout)["items"] == RICH_TURNS + 1
        assert service_pid(tmp_path / "data") == pid
        hits = found(peer, "RetryPolicy")
        assert any("RetryPolicy" in h["snippet"] for h in hits), hits
        # into a store that is no longer empty: refused, by the service, nothing merged
        refused = cli(
            env, tmp_path, "migrate", "--from", f"duckdb:{source / 'data' / 'memory.duckdb'}",
            "--to", f"duckdb:{target}",
        )  # fmt: skip
        assert refused.returncode == 1 and "not empty" in refused.stderr


def test_an_interrupted_import_stops_at_a_batch_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the CLI (KeyboardInterrupt while it reads the service's progress) closes
    the connection: the service stops the import at its next batch boundary instead of
    finishing it behind the user's back, and the same command resumes where it stopped,
    with nothing stored twice."""
    from session_buddy.server.cli_link import run_command
    from tests.claude_fixtures import filler_session, project_dir

    monkeypatch.setenv("SESSION_BUDDY_ADAPTERS__EMBEDDINGS", "none")
    projects = tmp_path / "projects"
    session = filler_session(1200)
    session.write(project_dir(projects, session.cwd) / f"{session.session_id}.jsonl")
    data = tmp_path / "data"
    arguments = {"path": str(projects), "batch_size": 10}

    def interrupt(step: dict[str, Any]) -> None:
        if step["done"] > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_command(data, None, "tester", "import", arguments, interrupt)
    rest = run_command(data, None, "tester", "import", arguments)
    assert rest["duplicates"] == 0 and rest["rejected"] == 0
    assert 0 < rest["stored"] < 1200, rest  # the first run stored some, and then stopped
    again = run_command(data, None, "tester", "import", arguments)
    assert again["stored"] == 0 and again["files_unchanged"] == 1
    stats = run_command(data, None, "tester", "health", {})
    storage = next(c for c in stats["components"] if c["name"] == "storage")
    assert "1200 items" in storage["message"], storage


def test_a_starter_that_loses_the_race_waits_for_the_service_that_won(tmp_path: Path) -> None:
    """Two starters at once (a hook and a bridge): the winner's service takes the service
    lock first and writes its file only after its imports, so the service the loser spawned
    exits at once with no file to find; the loser waits for the winner instead of failing
    with "stopped while starting"."""
    import time

    from session_buddy.server.discovery import (
        ensure_service,
        read_service,
        service_lock_held,
        spawn_service,
    )

    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    winner = spawn_service(data, None)
    try:
        deadline = time.monotonic() + 60
        while not service_lock_held(data) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service_lock_held(data)
        assert read_service(data) is None  # inside the window: locked, not yet announced
        info = ensure_service(data, timeout=90)
        assert int(info["pid"]) == winner
        assert "another session-buddy service owns" in (data / "logs" / "service.log").read_text()
    finally:
        stop_service(data)


def test_a_service_started_while_the_old_one_stops_takes_over(tmp_path: Path) -> None:
    """A service that is stopping still holds the service lock for a moment after it removed
    its file: a service spawned in that moment waits for the lock (``take_service_lock``)
    and starts, instead of exiting at once (its bridge then failed with "stopped while
    starting" or started yet another one). Here this test process holds the lock, as the
    stopping service would, and lets it go 0.1 s after the new service opened the lock file."""
    import contextlib
    import fcntl
    import os
    import time

    from session_buddy.server.discovery import SERVICE_LOCK, live_service, pid_alive, spawn_service

    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    lock_path = data / SERVICE_LOCK
    with open(lock_path, "a+") as old:
        fcntl.flock(old.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        pid = spawn_service(data, None)
        try:
            deadline = time.monotonic() + 60
            opened = False
            while not opened and pid_alive(pid) and time.monotonic() < deadline:
                fds = Path(f"/proc/{pid}/fd")
                with contextlib.suppress(OSError):  # a descriptor closed while listing
                    opened = any(os.readlink(fd) == str(lock_path) for fd in fds.iterdir())
                time.sleep(0.005)
            time.sleep(0.1)
        finally:
            fcntl.flock(old.fileno(), fcntl.LOCK_UN)
    try:
        deadline = time.monotonic() + 90
        while (info := live_service(data)) is None and pid_alive(pid):
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.02)
        assert info is not None, (data / "logs" / "service.log").read_text()
        assert int(info["pid"]) == pid
    finally:
        stop_service(data)


def test_a_starter_whose_service_outwaited_a_slow_stop_starts_another(tmp_path: Path) -> None:
    """A service that stops slowly (its storage closing, a snapshot written) holds the lock
    for longer than a new service retries it (LOCK_WAIT_S), then exits without a service
    file: the starter waited while the lock was held and then failed with "stopped while
    starting" although nothing ran any more. It starts the service again instead. Here this
    test process holds the lock, as the stopping service would, for 2 s."""
    import fcntl
    import threading

    from session_buddy.server.discovery import SERVICE_LOCK, ensure_service, pid_alive

    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    old = open(data / SERVICE_LOCK, "a+")  # noqa: SIM115 - released by the timer below
    fcntl.flock(old.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    timer = threading.Timer(2.0, old.close)  # the old service exits, its file long gone
    timer.start()
    try:
        info = ensure_service(data, timeout=90)
        assert pid_alive(int(info["pid"]))
        assert "another session-buddy service owns" in (data / "logs" / "service.log").read_text()
    finally:
        timer.join()
        stop_service(data)
