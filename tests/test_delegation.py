"""Delegation over HTTP: a separate MCP client with a token (as an orchestrator such as
Mahavishnu would) creates a session for a project, adds messages, checkpoints and ends it
over streamable HTTP, against a real `session-buddy serve --http` on loopback; the handoff is
written for that project. A client without a valid token gets 401 and touches nothing."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import session_buddy_cmd
from tests.mcp_peers import free_port, serve_http, server_env


def _token(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [*session_buddy_cmd(), "token", *args],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_a_token_client_runs_a_session_for_its_project_over_http(tmp_path: Path) -> None:
    from fastmcp import Client
    from fastmcp.exceptions import ToolError

    project = tmp_path / "orchestrated"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    port = free_port()
    proc = serve_http(
        server_env(tmp_path, SESSION_BUDDY_ADAPTERS__EMBEDDINGS="none"), tmp_path, port
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        token = _token(tmp_path, "--user", "mahavishnu", "--ttl", "600")
        async with Client(url, auth=token) as client:
            created = await client.call_tool(
                "create_session",
                {
                    "name": "delegated refactor",
                    "metadata": {"orchestrator": "mahavishnu"},
                    "working_directory": str(project),
                },
            )
            session = created.structured_content
            assert session is not None and session["project"] == "orchestrated", session
            sid = session["id"]
            for role, text in (
                ("user", "Split the parser module into lexer and grammar."),
                ("assistant", "Done: lexer.py and grammar.py, the tests pass."),
            ):
                await client.call_tool(
                    "add_message", {"session_id": sid, "role": role, "content": text}
                )
            checked = await client.call_tool("checkpoint", {"session_id": sid, "name": "split"})
            assert checked.structured_content is not None
            ended = await client.call_tool("end", {"session_id": sid})
            answer = ended.structured_content
            assert answer is not None and answer["session_id"] == sid
            handoff = Path(answer["handoff_path"])
            assert handoff.parent == project / ".claude" / "handoff", handoff
            text = handoff.read_text()
            assert "orchestrated" in text and "lexer and grammar" in text
            got = (await client.call_tool("get_session", {"session_id": sid})).structured_content
            assert got is not None and got["status"] == "ended" and got["message_count"] == 2
            with pytest.raises(ToolError, match="absolute"):
                await client.call_tool(
                    "create_session", {"name": "x", "working_directory": "relative/dir"}
                )

        # no token, a malformed one, one signed by another secret, an expired one: 401
        from session_buddy.server.auth import mint_token

        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = {"Accept": "application/json, text/event-stream"}
        other = mint_token(b"x" * 48, "mahavishnu")
        expired = _token(tmp_path, "--user", "mahavishnu", "--ttl", "-60")
        async with httpx.AsyncClient(timeout=30) as http:
            for bad in (None, "Bearer", "Bearer not-a-jwt", f"Bearer {other}", f"Bearer {expired}"):
                sent = headers | ({"Authorization": bad} if bad else {})
                refused = await http.post(url, json=body, headers=sent)
                assert refused.status_code == 401, (bad, refused.text)
        with pytest.raises(httpx.HTTPStatusError, match="401"):
            async with Client(url, auth=other) as client:
                await client.call_tool("create_session", {"name": "intruder"})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
