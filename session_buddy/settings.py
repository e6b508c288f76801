"""One typed settings model, layered.

Order, lowest first (a later layer wins):

1. defaults in this module;
2. the package's settings folder (``settings/`` of a checkout, ``session_buddy/_defaults`` of
   an installed wheel): ``session-buddy.yaml``, ``adapters.yaml``, ``<mode>.yaml``,
   ``local.yaml`` (git-ignored);
3. the user's config folder (``$XDG_CONFIG_HOME/session-buddy`` or
   ``~/.config/session-buddy``): ``session-buddy.yaml``, ``local.yaml``;
4. an explicit folder or file: ``--config PATH`` or ``SESSION_BUDDY_CONFIG``;
5. environment variables ``SESSION_BUDDY_*`` (nested with ``__``, e.g.
   ``SESSION_BUDDY_ADAPTERS__STORAGE=memory``);
6. keyword overrides given to :func:`load_settings` (library use, tests).

None of this depends on the current directory, and no settings file is ever written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from session_buddy.errors import ConfigurationError

ENV_PREFIX = "SESSION_BUDDY_"
CONFIG_ENV = "SESSION_BUDDY_CONFIG"
SECRET_WORDS = ("secret", "password", "token", "api_key")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdaptersSettings(_Section):
    """Which implementation runs for each capability (a module name under `adapters/`)."""

    storage: Literal["duckdb", "memory", "postgres"] = Field(
        default="duckdb",
        description="Where memories live (memory: nothing persisted; postgres: a shared "
        "server, see storage.dsn).",
    )
    embeddings: Literal["onnx", "http", "none"] = Field(
        default="onnx", description="Vectors for semantic search (none: keyword search only)."
    )
    http: Literal["httpx"] = Field(default="httpx", description="The shared HTTP client.")
    health: Literal["default"] = Field(default="default", description="Component health checks.")
    shutdown: Literal["default"] = Field(default="default", description="Ordered cleanup.")
    sync: Literal["none", "akosha"] = Field(
        default="none",
        description="Where memories are pushed (akosha: the Akosha MCP server at sync.akosha_url; "
        "docs/sync.md).",
    )


class StorageSettings(_Section):
    path: Path | None = Field(
        default=None, description="DuckDB file; default <data_dir>/memory.duckdb."
    )
    max_content_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1,
        description="Largest item accepted, in UTF-8 bytes; larger ones are refused.",
    )
    checkpoint_on_close: bool = Field(
        default=True, description="Checkpoint the database file when closing (empties the WAL)."
    )
    memory_limit: str | None = Field(
        default=None,
        pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$",
        description="duckdb: its memory limit (default DuckDB's, 80% of RAM), which also "
        "bounds the blocks its buffer pool keeps cached. Too low fails large work: at 1M "
        "items 128MB was too little for a checkpoint.",
    )
    dsn: str | None = Field(
        default=None,
        description="postgres: connection string, e.g. postgresql://user@host:5432/db"
        "?sslmode=require (env SESSION_BUDDY_STORAGE__DSN); give the password through "
        "password_env rather than here.",
    )
    password_env: str = Field(
        default="SESSION_BUDDY_PG_PASSWORD",
        description="postgres: name of the environment variable holding the password "
        "(used when the DSN has none).",
    )
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        Field(
            default=None,
            description="postgres: TLS mode; default: the DSN's sslmode, else PGSSLMODE, else prefer.",
        )
    )
    pg_schema: str = Field(
        default="public",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="postgres: schema holding the tables (created if missing); several "
        "stores can share one database in different schemas.",
    )
    pool_min_size: int = Field(
        default=1, ge=0, description="postgres: connections kept open in the pool."
    )
    pool_max_size: int = Field(
        default=10, ge=1, description="postgres: most connections the pool opens."
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="postgres: timeout of a connection attempt, seconds."
    )
    vector_index: Literal["none", "ivfflat"] = Field(
        default="none",
        description="postgres: pgvector index (none: exact search; ivfflat: approximate, "
        "faster past ~50k items; built when the service starts with at least 10 vectors per "
        "list). HNSW is not offered: it crashed on some CPUs.",
    )
    ivfflat_lists: int = Field(
        default=0,
        ge=0,
        description="postgres: ivfflat lists; 0 = automatic (rows / 1000, at least 10).",
    )
    ivfflat_probes: int = Field(
        default=10, ge=1, description="postgres: ivfflat lists searched per query."
    )
    encryption: Literal["off", "aes-gcm"] = Field(
        default="off",
        description="Encrypt memories at rest (duckdb, postgres): content, metadata and record "
        "data sealed with AES-256-GCM, dedup hashes and PostgreSQL keyword terms keyed; the key "
        "comes from $SESSION_BUDDY_KEY or key_file, never from a settings file "
        "(docs/security.md).",
    )
    key_file: Path | None = Field(
        default=None,
        description="aes-gcm: file holding the base64 32-byte key, owner-only (mode 0600, "
        "refused otherwise); $SESSION_BUDDY_KEY wins when set. `session-buddy key generate` "
        "writes one.",
    )


class EmbeddingsSettings(_Section):
    model_path: Path | None = Field(
        default=None, description="ONNX file; default: the packaged model."
    )
    tokenizer_path: Path | None = Field(
        default=None, description="tokenizer.json; default: the packaged one."
    )
    model_name: str = Field(default="all-MiniLM-L6-v2", description="Name shown in health.")
    dimension: int = Field(default=384, description="Vector size; stored vectors must match.")
    max_tokens: int = Field(
        default=256,
        ge=8,
        le=512,
        description="Longer texts are truncated for embedding (stored whole).",
    )
    batch_size: int = Field(
        default=32, ge=1, le=1024, description="Texts per model call in bulk work."
    )
    cache_size: int = Field(default=2048, ge=0, description="Query vectors kept in an LRU cache.")
    context_chars: int = Field(
        default=150,
        ge=0,
        description="A short conversation turn is embedded with this much of the end of the "
        "turn before it in its session; 0 embeds each turn alone.",
    )
    context_max_turn_chars: int = Field(
        default=400,
        ge=0,
        description="Turns at least this long are embedded alone (they carry their own context).",
    )
    threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads; 0 = automatic."
    )
    memory_arena: bool = Field(
        default=False,
        description="onnxruntime's CPU memory arena (keeps each batch shape's peak; off "
        "bounds the model's memory).",
    )
    preload: bool = Field(
        default=True,
        description="Load the model in the background after the handshake (else on first use).",
    )
    url: str = Field(default="http://127.0.0.1:11434", description="http adapter: server URL.")
    api: Literal["ollama", "openai"] = Field(
        default="ollama", description="http adapter: API style."
    )
    remote_model: str = Field(default="all-minilm", description="http adapter: model name.")


class HttpSettings(_Section):
    timeout_s: float = Field(default=10.0, gt=0, description="Read/write timeout of a request.")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Connect timeout.")
    retries: int = Field(
        default=3, ge=0, le=10, description="Retries on connection errors, 429 and 5xx."
    )
    backoff_s: float = Field(
        default=0.25, ge=0, description="First retry delay; doubles each retry."
    )
    max_connections: int = Field(default=20, ge=1, description="Connection pool size.")


class SearchSettings(_Section):
    fusion: Literal["weighted", "rrf"] = Field(
        default="weighted",
        description="How hybrid search fuses the keyword and vector rankings (docs/search.md).",
    )
    keyword_weight: float = Field(
        default=0.6, ge=0.0, le=1.0, description="weighted fusion: share of the keyword score."
    )
    rrf_k: int = Field(default=60, ge=1, description="rrf fusion: reciprocal rank fusion constant.")
    candidates: int = Field(
        default=100, ge=10, description="Hits taken from each ranker before fusion."
    )
    decay_half_life_days: float = Field(
        default=0.0,
        ge=0.0,
        description="Half-life of scores by age, in days; 0 turns time decay off.",
    )
    prf_terms: int = Field(
        default=10,
        ge=0,
        le=50,
        description="hybrid search: words of the best first hits added to the keyword query "
        "(pseudo-relevance feedback); 0 turns it off (docs/search.md).",
    )
    prf_docs: int = Field(
        default=3, ge=1, le=20, description="hybrid search: first hits the added words come from."
    )
    prf_weight: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="hybrid search: weight of the added words' BM25 against the query's.",
    )
    session_smoothing: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="hybrid search: a hit gains this share of the score of the hit next to it "
        "in time in its session (among the best refine_depth); 0 turns it off.",
    )
    reply_lift: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description="hybrid search: a hit that asks a question gives this share of its score "
        "to the next hit of its session in time (its reply, among the best refine_depth); "
        "0 turns it off (docs/search.md).",
    )
    temporal_boost: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description="hybrid search: for a question about when, hits that say when gain this "
        "share of their score; for one naming a date or month, hits of that day or month do; "
        "0 turns it off (docs/search.md).",
    )
    refine_depth: int = Field(
        default=100,
        ge=5,
        le=500,
        description="hybrid search: best fused hits that feedback and smoothing look at.",
    )
    snippet_chars: int = Field(
        default=2000,
        ge=80,
        description="Longer contents are returned as a snippet (full length given).",
    )


class ResponsesSettings(_Section):
    max_chars: int = Field(
        default=8000,
        ge=500,
        description="The longest answer of any tool, in characters of its JSON text; longer "
        "ones are cut from the end of their lists, with a note of what was left out.",
    )


class ServerSettings(_Section):
    host: str = Field(default="127.0.0.1", description="HTTP mode: address to listen on.")
    port: int = Field(default=8678, ge=1, le=65535, description="HTTP mode: port.")
    allow_remote: bool = Field(
        default=False, description="Allow listening beyond loopback (never without auth)."
    )
    auth: bool = Field(
        default=True,
        description="Require a bearer token (JWT, HS256) on HTTP; may be off only on loopback.",
    )
    shared: bool = Field(
        default=True,
        description="stdio: bridge to the one shared service of the data dir (false: run the "
        "server inside the stdio process; one session per DuckDB file).",
    )
    idle_timeout_s: float = Field(
        default=900.0, ge=1.0, description="The shared service exits after this long unused."
    )
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Larger HTTP requests get 413."
    )
    max_concurrent_requests: int = Field(
        default=64, ge=1, description="More requests at once get 503 (retry later)."
    )
    call_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="stdio bridge: a call without an answer after this long gets an error.",
    )
    probe_after_s: float = Field(
        default=10.0,
        gt=0,
        description="stdio bridge: when a call has waited this long, check (every as long) "
        "that the service still answers; one that does not is restarted if it is ours.",
    )
    probe_timeout_s: float = Field(
        default=3.0, gt=0, description="stdio bridge: how long a health probe may take."
    )


class SessionsSettings(_Section):
    handoff_dir: str | None = Field(
        default=None,
        description="Handoff folder, relative to the project root (default .claude/handoff); "
        "must stay inside the project or the data dir.",
    )
    git_commit: bool = Field(
        default=False,
        description="Make a git checkpoint commit at every checkpoint without being asked "
        "(tracked files only).",
    )


class _Resilience(_Section):
    """Retry, circuit breaker and dead letters of calls to a remote (core/resilience.py)."""

    max_attempts: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Tries of one unit of work (a batch, a delivery) before it goes to the dead-letter queue.",
    )
    backoff_base_s: float = Field(
        default=0.5,
        ge=0.0,
        description="Retry delay cap of the first retry; doubles each retry (full jitter).",
    )
    backoff_max_s: float = Field(default=30.0, ge=0.0, description="Largest retry delay cap.")
    breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failed calls that open the circuit to the remote."
    )
    breaker_cooldown_s: float = Field(
        default=30.0, ge=0.0, description="Open circuit: wait this long before one half-open probe."
    )
    dlq_backoff_base_s: float = Field(
        default=60.0,
        ge=0.0,
        description="Dead letters: first automatic retry after up to this long.",
    )
    dlq_backoff_max_s: float = Field(
        default=3600.0, ge=0.0, description="Dead letters: longest wait between automatic retries."
    )


class SyncSettings(_Resilience):
    akosha_url: str = Field(
        default="http://localhost:8682/mcp",
        description="akosha: the MCP endpoint (streamable HTTP).",
    )
    token_env: str = Field(
        default="AKOSHA_TOKEN",
        description="Name of the environment variable holding Akosha's bearer token (none: no "
        "Authorization header).",
    )
    interval_s: float = Field(
        default=300.0, ge=0.0, description="Seconds between background syncs; 0: only sync-now."
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        le=1000,
        description="Memories per batch call (Akosha takes 1,000 at most).",
    )
    records: bool = Field(
        default=True, description="Also push session and quality-checkpoint records."
    )
    settle_s: float = Field(
        default=2.0,
        ge=0.0,
        description="Changes younger than this are left for the next round (a write stamped "
        "before a sync read but committed after it is not skipped).",
    )
    source: str | None = Field(
        default=None,
        description="metadata.source of pushed memories and the prefix of their memory_ids; "
        "default: session-buddy@<hostname>.",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one call to the remote.")


#: the event types (core/events.py emits them)
EventType = Literal[
    "session.started", "session.checkpoint", "session.ended", "insight.captured", "sync.failed"
]


class EventsSettings(_Resilience):
    """Events (session started / checkpoint / ended, insight captured, sync failed): POSTed
    to webhooks, signed with HMAC-SHA256, and sent to connected MCP clients as log messages."""

    webhooks: list[str] = Field(
        default_factory=list,
        description="URLs each event is POSTed to as JSON (none: no webhook delivery).",
    )
    types: list[EventType] = Field(
        default_factory=list,
        description="Event types delivered to webhooks (none: all of them).",
    )
    secret_env: str = Field(
        default="SESSION_BUDDY_WEBHOOK_SECRET",
        description="Name of the environment variable holding the HMAC key of the signature.",
    )
    secret_file: Path | None = Field(
        default=None,
        description="A file holding the HMAC key (used when the environment variable is unset).",
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one webhook POST.")
    queue_size: int = Field(
        default=1000,
        ge=1,
        description="Events waiting for delivery, at most (more are dropped and counted).",
    )
    mcp_notifications: bool = Field(
        default=True,
        description="Send each event to connected MCP clients as a logging notification.",
    )


class TelemetrySettings(_Section):
    """OpenTelemetry traces and the Prometheus /metrics endpoint."""

    traces: bool = Field(
        default=False,
        description="Record OpenTelemetry traces (tool calls, storage, embedding, sync).",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="traces: export spans over OTLP/HTTP to this URL (e.g. "
        "http://localhost:4318/v1/traces); none: spans are recorded but not exported.",
    )
    service_name: str = Field(default="session-buddy", description="traces: service.name.")
    metrics: bool = Field(
        default=True, description="Serve Prometheus metrics at /metrics on the HTTP service."
    )
    metrics_auth: bool = Field(
        default=False,
        description="/metrics needs the bearer token too (server.auth); default: open, it "
        "holds counts only, no content.",
    )


class GraphSettings(_Section):
    """The knowledge graph."""

    extract: bool = Field(
        default=True,
        description="Link every stored item to the entities it mentions (files, functions, "
        "packages, errors, projects, people); off: stores skip the extraction and the graph "
        "keeps only what is already in it and what the graph tools add.",
    )


class HooksSettings(_Section):
    recall: bool = Field(
        default=True,
        description="UserPromptSubmit: inject memories relevant to each prompt (high confidence "
        "only, each at most once per Claude Code session).",
    )
    recall_limit: int = Field(default=3, ge=1, le=10, description="Memories per prompt, at most.")
    recall_max_chars: int = Field(
        default=1500, ge=200, le=20_000, description="Size bound of what one prompt gets."
    )
    brief_max_chars: int = Field(
        default=2500, ge=200, le=20_000, description="Size bound of the SessionStart brief."
    )
    brief_memories: int = Field(
        default=5, ge=0, le=50, description="Recent reflections and insights in the brief."
    )
    service_timeout_ms: int = Field(
        default=1500,
        ge=50,
        le=10_000,
        description="How long a hook waits for the running service's answer before it falls "
        "back (the brief to the last handoff file, a prompt to nothing).",
    )


class PermissionsSettings(_Section):
    enabled: bool = Field(
        default=False,
        description="Learned permissions: approve low-risk shell commands automatically once "
        "approved `threshold` times in a project (never destructive ones).",
    )
    threshold: int = Field(
        default=3, ge=1, le=100, description="Approvals of a pattern before it is automatic."
    )
    expiry_days: int = Field(
        default=30, ge=1, le=3650, description="Approvals older than this no longer count."
    )


class SessionBuddySettings(BaseSettings):
    """The effective settings of one session-buddy process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    mode: Literal["lite", "standard"] = Field(
        default="standard", description="lite: in-memory storage, nothing persisted (tests, CI)."
    )
    data_dir: Path | None = Field(
        default=None, description="Data folder; default ~/.claude/data/session-buddy."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", description="Log level (logs go to stderr or log_file, never stdout)."
    )
    log_file: Path | None = Field(
        default=None,
        description="Write logs to this file instead of stderr (the shared service: "
        "default <data_dir>/logs/service.log).",
    )
    log_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=4096,
        description="A log file is rotated when it reaches this size (log_backups kept).",
    )
    log_backups: int = Field(default=3, ge=0, description="Rotated log files kept.")
    user: str | None = Field(
        default=None, description="Who stores memories; default: the login name."
    )
    adapters: AdaptersSettings = Field(default_factory=AdaptersSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    embeddings: EmbeddingsSettings = Field(default_factory=EmbeddingsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    responses: ResponsesSettings = Field(default_factory=ResponsesSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    sessions: SessionsSettings = Field(default_factory=SessionsSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    hooks: HooksSettings = Field(default_factory=HooksSettings)
    permissions: PermissionsSettings = Field(default_factory=PermissionsSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        # Layering is done by load_settings(); the model itself only takes its arguments.
        return (init_settings,)


@dataclass
class LoadedSettings:
    settings: SessionBuddySettings
    #: dotted key -> where its value came from
    sources: dict[str, str] = field(default_factory=dict)
    #: the settings files that were read, in order
    files: list[Path] = field(default_factory=list)


def package_settings_dir() -> Path | None:
    """The settings folder that ships with the code (independent of the current directory)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_defaults", here.parent / "settings"):
        if (candidate / "session-buddy.yaml").is_file():
            return candidate
    return None


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "session-buddy"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"Cannot read settings file {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"Settings file {path} must hold a mapping, not {type(data).__name__}"
        )
    return data


def _merge(
    target: dict[str, Any],
    layer: dict[str, Any],
    label: str,
    sources: dict[str, str],
    prefix: str = "",
) -> None:
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, label, sources, dotted + ".")
        elif isinstance(value, dict):
            target[key] = {}
            _merge(target[key], value, label, sources, dotted + ".")
        else:
            target[key] = value
            sources[dotted] = label


def _env_layer() -> dict[str, Any]:
    source = EnvSettingsSource(
        SessionBuddySettings, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
    )
    data = source()
    return {k: v for k, v in data.items() if v is not None}


def _folder_layers(folder: Path, names: list[str], origin: str) -> list[tuple[str, Path]]:
    return [(f"{origin}:{folder / n}", folder / n) for n in names if (folder / n).is_file()]


def load_settings(config: Path | str | None = None, **overrides: Any) -> LoadedSettings:
    """Read every layer and return the validated settings with the source of each value."""
    explicit = (
        Path(config)
        if config
        else (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    )
    if explicit is not None and not explicit.exists():
        raise ConfigurationError(
            f"Settings path {explicit} does not exist (from --config or {CONFIG_ENV})"
        )
    env = _env_layer()

    def file_layers(mode: str) -> list[tuple[str, Path]]:
        layers: list[tuple[str, Path]] = []
        pkg = package_settings_dir()
        if pkg is not None:
            layers += _folder_layers(
                pkg,
                ["session-buddy.yaml", "adapters.yaml", f"{mode}.yaml", "local.yaml"],
                "package",
            )
        layers += _folder_layers(user_config_dir(), ["session-buddy.yaml", "local.yaml"], "user")
        if explicit is not None:
            if explicit.is_dir():
                layers += _folder_layers(explicit, ["session-buddy.yaml", "local.yaml"], "config")
            else:
                layers.append((f"config:{explicit}", explicit))
        return layers

    # The mode decides which <mode>.yaml is read, so find it first from every other layer.
    mode = "standard"
    for _, path in file_layers("standard"):
        mode = _read_yaml(path).get("mode", mode)
    mode = env.get("mode", overrides.get("mode", mode))
    if mode not in ("lite", "standard"):
        raise ConfigurationError(f"mode must be 'lite' or 'standard', not {mode!r}")

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    files: list[Path] = []
    for label, path in file_layers(mode):
        _merge(merged, _read_yaml(path), label, sources)
        files.append(path)
    _merge(merged, env, "env", sources)
    _merge(merged, overrides, "override", sources)
    try:
        settings = SessionBuddySettings(**merged)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (from {sources.get('.'.join(str(p) for p in err['loc']), 'default')})"
            for err in exc.errors()
        )
        raise ConfigurationError(f"Invalid settings: {problems}") from exc
    return LoadedSettings(settings=settings, sources=sources, files=files)


def _is_secret(key: str) -> bool:
    # a key ending in _env names an environment variable: the name is no secret
    return any(word in key.lower() for word in SECRET_WORDS) and not key.endswith("_env")


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password masked (URL ``user:pw@`` and ``password=`` forms)."""
    masked = re.sub(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", r"\1********", dsn)
    scheme, sep, rest = masked.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        authority, slash, tail = rest.partition("/")
        creds, _, host = authority.rpartition("@")
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":********"
        masked = f"{scheme}://{creds}@{host}{slash}{tail}"
    return masked


def explain(loaded: LoadedSettings) -> list[dict[str, str]]:
    """Every effective value, its source, with secrets masked (for `session-buddy config`)."""
    rows: list[dict[str, str]] = []

    def walk(obj: Any, prefix: str) -> None:
        for key, value in obj.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, dotted + ".")
                continue
            shown = (
                "********"
                if (_is_secret(dotted) and value)
                else ("" if value is None else str(value))
            )
            if dotted.endswith("dsn") and value:
                shown = mask_dsn(str(value))
            rows.append(
                {"key": dotted, "value": shown, "source": loaded.sources.get(dotted, "default")}
            )

    walk(loaded.settings.model_dump(mode="json"), "")
    return rows
