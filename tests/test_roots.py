"""MCP roots decide "this project": a client working in folder A whose root is project B
starts, checkpoints and ends in B. Through the stdio bridge to the shared service (the bridge
asks its client) and in-process (the server asks: in-memory client, ``--standalone``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from mcp.types import Root

from session_buddy import di
from session_buddy.core.sessions.current import root_folder
from session_buddy.server.roots import ID_PREFIX, ROOTS_WAIT_S
from tests.mcp_peers import StdioPeer
from tests.test_clients import project_repo
from tests.test_service import data_dir, shared_env
from tests.test_session_lifecycle import settings_for

__all__ = ["data_dir"]


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    return (
        project_repo(tmp_path / "alpha-repo"),
        project_repo(tmp_path / "beta-repo"),
        project_repo(tmp_path / "gamma-repo"),
    )


def test_root_folder_takes_the_first_file_root() -> None:
    assert root_folder([{"uri": "https://x/y"}, {"uri": "file:///a%20b/c/"}]) == "/a b/c"
    assert root_folder([Root(uri="file:///srv/p")]) == "/srv/p"  # type: ignore[arg-type]
    assert root_folder([{"uri": "file://otherhost/p"}, {"name": "no uri"}]) is None
    assert root_folder([{"uri": "file:relative"}, {"uri": "file:///x%00y"}]) is None
    assert root_folder({"uri": "file:///p"}) is None and root_folder(None) is None


async def _project(client: Client[Any], **args: Any) -> str:
    result = await client.call_tool("start", args)
    data = result.structured_content
    assert isinstance(data, dict)
    return str(data["project"]["path"])


def _bridge(env: dict[str, str], cwd: Path, *args: str) -> StdioTransport:
    return StdioTransport(
        sys.executable, ["-m", "session_buddy.cli", "serve", *args], env=env, cwd=str(cwd)
    )


class RootsOf:
    """A client's roots handler whose answer can change (or fail)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.asked = 0

    async def __call__(self, context: Any) -> list[Root]:
        self.asked += 1
        if self.folder is None:
            raise RuntimeError("no roots for you")
        return [Root(uri=self.folder.as_uri())]  # type: ignore[arg-type]


def roots_handler(roots: RootsOf) -> Any:
    async def handler(context: Any) -> list[Root]:  # fastmcp wants a function
        return await roots(context)

    return handler


@pytest.mark.parametrize("mode", ["shared", "standalone"])
async def test_stdio_client_root_is_this_project(
    tmp_path: Path, data_dir: Path, folders: tuple[Path, Path, Path], mode: str
) -> None:
    alpha, beta, gamma = folders
    env = shared_env(tmp_path)
    env.pop("CLAUDE_PROJECT_DIR", None)
    extra = ["--standalone"] if mode == "standalone" else []

    def env_of(n: int) -> dict[str, str]:
        # a standalone server holds its DuckDB file until its process has exited: one each
        own = {"SESSION_BUDDY_DATA_DIR": str(tmp_path / f"data-{n}")} if extra else {}
        return env | own

    roots = RootsOf(beta)
    async with Client(_bridge(env_of(1), alpha, *extra), roots=roots_handler(roots)) as client:
        assert await _project(client) == str(beta)  # in alpha, root beta: beta
        assert await _project(client, working_directory=str(alpha)) == str(alpha)  # argument
        roots.folder = gamma
        await client.send_roots_list_changed()  # asked again before the next call goes on
        assert await _project(client) == str(gamma)
        status = (await client.call_tool("status", {})).structured_content
        assert isinstance(status, dict) and status["session"]["project"] == "gamma-repo"
    async with Client(
        _bridge(env_of(2), alpha, *extra)
    ) as plain:  # no roots: the working directory
        assert await _project(plain) == str(alpha)
    failing = RootsOf(None)
    async with Client(_bridge(env_of(3), beta, *extra), roots=roots_handler(failing)) as client:
        assert await _project(client) == str(beta)  # an error answer: the working directory
        assert failing.asked >= 1


def test_a_client_that_never_answers_roots_list_is_not_waited_for(
    tmp_path: Path, data_dir: Path, folders: tuple[Path, Path, Path]
) -> None:
    alpha, beta, _ = folders
    env = shared_env(tmp_path)
    env.pop("CLAUDE_PROJECT_DIR", None)
    peer = StdioPeer(env, alpha)
    try:
        peer.initialize({"roots": {"listChanged": True}})
        asked = peer.read_message(30)  # the bridge's own request, never answered here
        assert asked["method"] == "roots/list" and str(asked["id"]).startswith(ID_PREFIX)
        began = time.monotonic()
        started = peer.call("start", {})
        assert time.monotonic() - began < ROOTS_WAIT_S + 30
        assert started["structuredContent"]["project"]["path"] == str(alpha)
        # a late answer still counts, and is not passed on to the service as a message
        peer.send(
            {"jsonrpc": "2.0", "id": asked["id"], "result": {"roots": [{"uri": beta.as_uri()}]}}
        )
        assert peer.call("start", {})["structuredContent"]["project"]["path"] == str(beta)
    finally:
        peer.proc.terminate()
        peer.proc.wait(30)


@pytest.fixture
def _container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)
    yield
    di.reset()


@pytest.mark.usefixtures("_container")
async def test_in_memory_client_roots(
    tmp_path: Path, folders: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from session_buddy.server.app import create_server

    alpha, beta, gamma = folders
    monkeypatch.chdir(alpha)
    server = create_server(settings_for(tmp_path))
    roots = RootsOf(beta)
    async with Client(server, roots=roots_handler(roots)) as client:
        assert await _project(client) == str(beta)
        assert await _project(client) == str(beta)
        assert roots.asked == 1  # the answer is kept until the client says it changed
        roots.folder = gamma
        await client.send_roots_list_changed()
        assert await _project(client) == str(gamma)
        assert roots.asked == 2
        roots.folder = None  # the client now fails: back to the working directory
        await client.send_roots_list_changed()
        assert await _project(client) == str(alpha)
        assert await _project(client) == str(alpha)
        assert roots.asked == 4  # an error is not kept: asked again on the next call
    async with Client(server) as plain:
        assert await _project(plain) == str(alpha)


def test_standalone_asks_again_a_client_that_does_not_say_when_roots_change(
    tmp_path: Path, folders: tuple[Path, Path, Path]
) -> None:
    """A client that declares roots without ``listChanged`` may change them unannounced: the
    in-process server asks it before every call instead of keeping the first answer."""
    alpha, beta, gamma = folders
    env = shared_env(tmp_path)
    env.pop("CLAUDE_PROJECT_DIR", None)
    peer = StdioPeer(env, alpha, "--standalone")

    def start_answering(folder: Path) -> str:
        rid = peer.request("tools/call", {"name": "start", "arguments": {}})
        asked = peer.read_message(60)
        assert asked.get("method") == "roots/list", asked
        peer.send(
            {"jsonrpc": "2.0", "id": asked["id"], "result": {"roots": [{"uri": folder.as_uri()}]}}
        )
        answer = peer.wait_for(rid)
        return str(answer["result"]["structuredContent"]["project"]["path"])

    try:
        peer.initialize({"roots": {}})
        assert start_answering(beta) == str(beta)
        assert start_answering(gamma) == str(gamma)  # asked again, the new root counts
    finally:
        peer.proc.terminate()
        peer.proc.wait(30)
