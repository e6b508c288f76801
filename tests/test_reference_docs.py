"""docs/tools.md and docs/configuration.md are generated from the code: they must match."""

from __future__ import annotations

from pathlib import Path

from session_buddy.cli.reference import catalog, catalog_json, settings_markdown, tools_markdown
from session_buddy.server.catalog import CATALOG_FILE, load_catalog

DOCS = Path(__file__).resolve().parent.parent / "docs"
HINT = "regenerate with `./run docs --write`"


def test_configuration_reference_matches_code() -> None:
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == settings_markdown(), HINT


async def test_tools_reference_matches_server() -> None:
    text = await tools_markdown()
    assert (DOCS / "tools.md").read_text(encoding="utf-8") == text, HINT
    assert "## `search`" in text and "## `store_reflection`" in text


async def test_every_tool_has_a_description_and_typed_parameters(lite_settings) -> None:  # type: ignore[no-untyped-def]
    from fastmcp import Client

    from session_buddy.server.app import create_server

    async with Client(create_server(lite_settings)) as client:
        tools = await client.list_tools()
    assert tools
    from session_buddy.cli.answers_doc import ANSWERS

    assert {t.name for t in tools} == set(ANSWERS), "docs/tools.md says what each tool answers"
    for tool in tools:
        assert tool.description and len(tool.description) > 20, tool.name
        for name, prop in tool.inputSchema.get("properties", {}).items():
            assert any(k in prop for k in ("type", "anyOf", "enum", "$ref")), (tool.name, name)


async def test_the_fronts_catalog_is_what_the_server_lists() -> None:
    """The stdio front answers the list methods from catalog.json: it must be the server's
    own answer, byte for byte once parsed."""
    answers = await catalog()
    assert CATALOG_FILE.read_text(encoding="utf-8") == catalog_json(answers), HINT
    assert load_catalog() == answers
    names = {tool["name"] for tool in answers["tools/list"]["tools"]}
    assert {"start", "search", "store_reflection"} <= names
