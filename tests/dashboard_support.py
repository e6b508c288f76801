"""A real shared service with real data for the dashboard tests: a stdio bridge (an MCP
client as Claude Code runs it) stores memories and runs a session to its handoff; the
``session-buddy dashboard`` CLI prints the login link."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from session_buddy.server.discovery import read_service
from tests.conftest import session_buddy_cmd
from tests.mcp_peers import StdioPeer, server_env, stop_service

NEEDLE = "the flux capacitor needs 1.21 gigawatts to reach eighty-eight mph"
OTHER = "deploys go through the blue-green switch on the staging cluster"


@dataclass
class Live:
    peer: StdioPeer
    env: dict[str, str]
    data_dir: Path
    base: str  # http://127.0.0.1:PORT
    session_id: str
    needle_id: str
    other_id: str
    project: str

    def login_link(self) -> str:
        """A fresh one-time link, as ``session-buddy dashboard --no-browser`` prints it."""
        done = subprocess.run(
            [*session_buddy_cmd(), "dashboard", "--no-browser"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        link = done.stdout.strip()
        assert link.startswith(self.base + "/dashboard/login?code="), link
        return link

    def client(self) -> httpx.Client:
        """An HTTP client logged in through a link (it holds the cookie)."""
        c = httpx.Client(base_url=self.base, timeout=60)
        answer = c.get(self.login_link().removeprefix(self.base))
        assert answer.status_code == 303, answer.text
        return c

    def tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.peer.call(name, arguments)
        assert not result.get("isError"), result
        return dict(result["structuredContent"])

    def mcp_search_ids(self, query: str) -> list[str]:
        found = self.tool(
            "search", {"query": query, "project": self.project, "limit": 10, "fields": ["id"]}
        )
        return [h["id"] for h in found["hits"]]


def _repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "README.md").write_text("# time machine\n", encoding="utf-8")
    (path / "pyproject.toml").write_text('[project]\nname = "timemachine"\n', encoding="utf-8")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run(
            ["git", "-c", "user.email=t@e", "-c", "user.name=t", *args], cwd=path, check=True
        )
    return path


@contextlib.contextmanager
def live_dashboard(root: Path) -> Iterator[Live]:
    """The shared service of ``root/data`` (DuckDB, the real model) with two memories, a
    tagged reflection and an ended session (checkpoint, handoff)."""
    repo = _repo(root / "timemachine")
    env = server_env(root, SESSION_BUDDY_ADAPTERS__STORAGE="duckdb")
    peer = StdioPeer(env, repo)
    peer.initialize()
    try:
        live = _fill(peer, env, root / "data", repo)
        yield live
    finally:
        assert peer.proc.stdin is not None
        peer.proc.stdin.close()
        peer.proc.wait(timeout=60)
        stop_service(root / "data")


def _fill(peer: StdioPeer, env: dict[str, str], data_dir: Path, repo: Path) -> Live:
    def tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = peer.call(name, arguments)
        assert not result.get("isError"), result
        return dict(result["structuredContent"])

    started = tool("start", {"working_directory": str(repo)})
    session_id = started["session"]["id"]
    project = started["session"]["project"]
    needle = tool("store_reflection", {"content": NEEDLE, "project": project, "tags": ["physics"]})
    other = tool("store_reflection", {"content": OTHER, "project": project, "tags": ["ops"]})
    tool("checkpoint", {"name": "halfway"})
    tool(
        "add_project_dependency",
        {"source": project, "target": "fluxlib", "dependency_type": "uses"},
    )
    tool("create_project_group", {"name": "hill-valley", "projects": [project, "fluxlib"]})
    tool("create_team", {"name": "labs", "projects": [project]})
    tool("share_reflection", {"id": needle["id"], "team": "labs"})
    tool(
        "end",
        {
            "summary": "Calibrated the flux capacitor.",
            "decisions": ["Plutonium over lightning"],
            "next_steps": ["Find a DeLorean"],
        },
    )
    info = read_service(data_dir)
    assert info is not None
    return Live(
        peer=peer,
        env=env,
        data_dir=data_dir,
        base=f"http://{info['host']}:{info['port']}",
        session_id=session_id,
        needle_id=needle["id"],
        other_id=other["id"],
        project=project,
    )
