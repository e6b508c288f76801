"""Embeddings adapters against the real model and a real local HTTP server (no mocks)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from session_buddy.adapters.embeddings import http as http_embeddings
from session_buddy.adapters.embeddings import none as none_embeddings
from session_buddy.adapters.embeddings import onnx as onnx_embeddings
from session_buddy.adapters.embeddings._base import EmbeddingsBase
from session_buddy.adapters.http._base import HttpBase
from session_buddy.adapters.http.httpx import Http
from session_buddy.errors import DimensionMismatch, EmbeddingError
from session_buddy.paths import SessionPaths
from session_buddy.settings import EmbeddingsSettings, HttpSettings, SessionBuddySettings

PARAPHRASE = (
    "How do I reset my password?",
    "I forgot my login credentials and need to change them",
)
UNRELATED = "The recipe needs two cups of flour and an egg."


def settings(**embeddings: Any) -> SessionBuddySettings:
    return SessionBuddySettings(
        embeddings=EmbeddingsSettings(**embeddings), http=HttpSettings(retries=0, timeout_s=10)
    )


@pytest.fixture(scope="module")
def model() -> onnx_embeddings.Embeddings:
    """One loaded ONNX adapter shared by the tests that do not watch its state."""
    adapter = onnx_embeddings.Embeddings.from_settings(settings(), None, None)
    adapter.encode(["warm up"])
    return adapter


def new_onnx(**embeddings: Any) -> onnx_embeddings.Embeddings:
    return onnx_embeddings.Embeddings.from_settings(settings(**embeddings), None, None)


# -- onnx ------------------------------------------------------------------------------------


async def test_onnx_shape_dtype_and_unit_norm(model: onnx_embeddings.Embeddings) -> None:
    vectors = await model.embed(["hello world", "a second, longer text about databases", "x"])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.dimension == 384
    assert model.model_id == "all-MiniLM-L6-v2-onnx-int8"
    assert model.available
    empty = await model.embed([])
    assert empty.shape == (0, 384)


async def test_onnx_paraphrase_scores_above_unrelated(model: onnx_embeddings.Embeddings) -> None:
    a, b, c = await model.embed([*PARAPHRASE, UNRELATED])
    paraphrase = float(a @ b)
    assert paraphrase > 0.5
    assert paraphrase > float(a @ c) + 0.3
    assert paraphrase > float(b @ c) + 0.3


def test_onnx_batch_equals_one_by_one_and_keeps_order(model: onnx_embeddings.Embeddings) -> None:
    # Lengths deliberately out of order, and more texts than one batch, so length sorting
    # and batching both happen and the order must be restored.
    texts = [
        "A much longer sentence about database migrations and the schema version table.",
        "short",
        "",
        "medium length text about caching",
        "x " * 40,
        "the quick brown fox jumps over the lazy dog",
        "ERR_CONN_4021",
    ]
    adapter = new_onnx(batch_size=2)
    batched = adapter.encode(texts)
    single = np.stack([model.encode([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    # Every row is its own text's vector (not a neighbour's after sorting).
    assert np.argmax(batched @ single.T, axis=1).tolist() == list(range(len(texts)))


async def test_onnx_lazy_then_ready() -> None:
    adapter = new_onnx()
    assert adapter.state == "lazy"
    assert adapter._session is None  # nothing loaded at construction
    assert adapter.error is None
    vector = await adapter.embed_query("first use loads the model")
    assert adapter.state == "ready"
    assert vector.shape == (384,)
    await adapter.close()


def test_onnx_background_load() -> None:
    adapter = new_onnx()
    adapter.start_background_load()
    assert adapter.state in ("loading", "ready", "lazy")  # the thread may not have begun yet
    adapter.start_background_load()  # a second call does not start a second load
    assert adapter.wait_loaded(timeout=60) == "ready"
    assert adapter._thread is not None and adapter._thread.daemon
    assert adapter.encode(["works after a background load"]).shape == (1, 384)


def test_onnx_concurrent_first_use_loads_once() -> None:
    adapter = new_onnx()
    sessions: list[Any] = []

    def use() -> None:
        adapter.encode(["concurrent first use"])
        sessions.append(adapter._session)

    threads = [threading.Thread(target=use) for _ in range(3)]
    adapter.start_background_load()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(sessions) == 3
    assert all(s is sessions[0] for s in sessions)
    assert adapter.state == "ready"


async def test_onnx_query_cache_is_hit(model: onnx_embeddings.Embeddings) -> None:
    model.cache_clear()
    before = model.texts_encoded
    first = await model.embed_query("what did we decide about caching?")
    second = await model.embed_query("what did we decide about caching?")
    np.testing.assert_array_equal(first, second)
    assert model.texts_encoded == before + 1  # the second answer came from the cache
    info = model.cache_info()
    assert info["hits"] == 1 and info["misses"] == 1 and info["size"] == 1
    second[:] = 0  # callers cannot corrupt the cache
    third = await model.embed_query("what did we decide about caching?")
    np.testing.assert_array_equal(first, third)


async def test_onnx_query_cache_is_bounded() -> None:
    adapter = new_onnx(cache_size=2)
    for text in ("one", "two", "three"):
        await adapter.embed_query(text)
    assert adapter.cache_info()["size"] == 2
    encoded = adapter.texts_encoded
    await adapter.embed_query("three")
    await adapter.embed_query("one")  # evicted: encoded again
    assert adapter.texts_encoded == encoded + 1


async def test_onnx_long_text_is_truncated(model: onnx_embeddings.Embeddings) -> None:
    words = " ".join(f"word{i}" for i in range(10_000))
    vector = (await model.embed([words]))[0]
    assert vector.shape == (384,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    # Only the first max_tokens tokens count: the start of the text decides the vector.
    start = (await model.embed([" ".join(f"word{i}" for i in range(2_000))]))[0]
    assert float(vector @ start) > 0.999


async def test_onnx_empty_and_invalid_unicode(model: onnx_embeddings.Embeddings) -> None:
    texts = ["", "lone surrogate \ud800 here", "\udcff", "emoji 🚀 and ünïcödé", "   "]
    vectors = await model.embed(texts)
    assert vectors.shape == (len(texts), 384)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (await model.embed_query("\ud83d")).shape == (384,)


async def test_onnx_missing_model_fails_clearly(tmp_path: Any) -> None:
    adapter = new_onnx(model_path=tmp_path / "missing.onnx")
    assert adapter.state == "lazy"
    with pytest.raises(EmbeddingError, match=r"missing\.onnx"):
        await adapter.embed(["x"])
    assert adapter.state == "failed"
    assert adapter.available is False
    assert adapter.error is not None and "embeddings.model_path" in adapter.error
    with pytest.raises(EmbeddingError, match=r"missing\.onnx"):
        await adapter.embed(["x"])


def test_onnx_custom_model_id_hashes_the_file(tmp_path: Any) -> None:
    packaged, packaged_id = onnx_embeddings.packaged_model()
    assert new_onnx(model_path=packaged).model_id == packaged_id
    copy = tmp_path / "model.onnx"
    copy.write_bytes(b"not really a model")
    model_id = new_onnx(model_path=copy).model_id
    assert model_id.startswith("all-MiniLM-L6-v2-onnx-") and model_id != packaged_id


def fixed_texts() -> list[str]:
    words = [
        "index",
        "vector",
        "keyword",
        "session",
        "memory",
        "recall",
        "graph",
        "deploy",
        "cache",
        "token",
    ]
    texts = [
        " ".join(words[(i * 7 + j) % len(words)] for j in range(3 + i * 11)) for i in range(30)
    ]
    texts += [
        "x",
        "Grüße aus Köln — naïve café",
        "def f(x):\n    return x * 2  # 🚀",
        "",
        "a " * 400,
    ]
    return texts


def test_onnx_int8_lookup_gives_the_vectors_of_the_plain_session(
    model: onnx_embeddings.Embeddings,
) -> None:
    """The loaded graph looks the word and position rows up in int8 (``_graph.py``); the
    vectors equal those of a session on the unmodified file with the same options."""
    import onnxruntime as ort

    assert model.int8_lookups == 2
    reference = new_onnx()
    reference.encode(["load"])
    reference._session = ort.InferenceSession(
        str(onnx_embeddings.packaged_model()[0]),
        sess_options=reference.session_options(ort),
        providers=["CPUExecutionProvider"],
    )
    texts = fixed_texts()
    np.testing.assert_allclose(model.encode(texts), reference.encode(texts), rtol=0, atol=1e-6)
    one = [reference.encode([t])[0] for t in texts[:5]]
    np.testing.assert_allclose(model.encode(texts[:5]), np.stack(one), rtol=0, atol=1e-6)


def test_int8_lookup_rewrite_is_idempotent_and_leaves_other_bytes() -> None:
    from session_buddy.adapters.embeddings._graph import gather_before_dequantize

    original = onnx_embeddings.packaged_model()[0].read_bytes()
    rewritten, count = gather_before_dequantize(original)
    assert count == 2 and rewritten != original
    again, count_again = gather_before_dequantize(rewritten)
    assert count_again == 0 and again is rewritten
    for junk in (b"", b"not really a model", b"\x0a\xff\xff\xff"):
        assert gather_before_dequantize(junk) == (junk, 0)


# -- a real local embeddings server -----------------------------------------------------------


class EmbeddingServer:
    """Ollama's /api/embed and OpenAI's /v1/embeddings on 127.0.0.1, vectors from the ONNX
    model (scaled, so the client must normalise). Model "wrong-dim" answers 100 dims."""

    def __init__(self, model: onnx_embeddings.Embeddings) -> None:
        self.model = model
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.fail_with: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body))
                if outer.fail_with is not None:
                    return self.reply(outer.fail_with, {"error": "server is unhappy"})
                if body.get("model") == "missing":
                    return self.reply(404, {"error": 'model "missing" not found'})
                vectors = outer.model.encode(body["input"]) * 3.0
                if body.get("model") == "wrong-dim":
                    vectors = vectors[:, :100]
                rows = vectors.tolist()
                if self.path == "/api/embed":
                    return self.reply(200, {"model": body["model"], "embeddings": rows})
                if self.path == "/v1/embeddings":
                    # Out of order on purpose: clients must sort by index.
                    data = [
                        {"object": "embedding", "index": i, "embedding": row}
                        for i, row in enumerate(rows)
                    ][::-1]
                    return self.reply(200, {"object": "list", "data": data})
                return self.reply(404, {"error": "no such endpoint"})

            def reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server(model: onnx_embeddings.Embeddings) -> Iterator[EmbeddingServer]:
    running = EmbeddingServer(model)
    yield running
    running.stop()


@pytest.fixture
async def http_client() -> AsyncIterator[Http]:
    client = Http(HttpSettings(retries=0, timeout_s=10, connect_timeout_s=2))
    yield client
    await client.close()


def new_http(client: Http, **embeddings: Any) -> http_embeddings.Embeddings:
    def resolve(key: type) -> Any:
        assert key is HttpBase
        return client

    return http_embeddings.Embeddings.from_settings(settings(**embeddings), None, resolve)


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_http_both_apis_match_local_model(
    api: str, server: EmbeddingServer, http_client: Http, model: onnx_embeddings.Embeddings
) -> None:
    adapter = new_http(http_client, url=server.url, api=api, remote_model="all-minilm")
    assert adapter.state == "lazy"
    assert adapter.model_id == f"http:{api}:all-minilm"
    texts = [*PARAPHRASE, UNRELATED]
    vectors = await adapter.embed(texts)
    assert adapter.state == "ready" and adapter.error is None
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, model.encode(texts), atol=1e-5)
    path, body = server.requests[-1]
    assert path == ("/api/embed" if api == "ollama" else "/v1/embeddings")
    assert body == {"model": "all-minilm", "input": texts}


async def test_http_openai_url_with_v1_suffix(server: EmbeddingServer, http_client: Http) -> None:
    adapter = new_http(http_client, url=server.url + "/v1/", api="openai")
    assert (await adapter.embed(["x"])).shape == (1, 384)
    assert server.requests[-1][0] == "/v1/embeddings"


async def test_http_batches_and_caches(server: EmbeddingServer, http_client: Http) -> None:
    adapter = new_http(http_client, url=server.url, batch_size=2)
    before = len(server.requests)
    vectors = await adapter.embed([f"text number {i}" for i in range(5)])
    assert vectors.shape == (5, 384)
    assert [len(b["input"]) for _, b in server.requests[before:]] == [2, 2, 1]
    before = len(server.requests)
    first = await adapter.embed_query("cached query")
    second = await adapter.embed_query("cached query")
    np.testing.assert_array_equal(first, second)
    assert len(server.requests) == before + 1


async def test_http_invalid_unicode_is_sent_as_valid_json(
    server: EmbeddingServer, http_client: Http
) -> None:
    adapter = new_http(http_client, url=server.url)
    vectors = await adapter.embed(["", "lone \ud800 surrogate"])
    assert vectors.shape == (2, 384)
    assert server.requests[-1][1]["input"] == ["", "lone ? surrogate"]


async def test_http_dimension_mismatch(server: EmbeddingServer, http_client: Http) -> None:
    adapter = new_http(http_client, url=server.url, remote_model="wrong-dim")
    with pytest.raises(DimensionMismatch) as caught:
        await adapter.embed(["x"])
    message = str(caught.value)
    assert "100" in message and "384" in message and "embeddings.dimension" in message
    assert adapter.state == "failed"


async def test_http_missing_model_says_what_to_do(
    server: EmbeddingServer, http_client: Http
) -> None:
    adapter = new_http(http_client, url=server.url, remote_model="missing")
    with pytest.raises(EmbeddingError, match="ollama pull missing"):
        await adapter.embed(["x"])


async def test_http_failure_then_recovery(server: EmbeddingServer, http_client: Http) -> None:
    adapter = new_http(http_client, url=server.url)
    server.fail_with = 500
    try:
        with pytest.raises(EmbeddingError, match="HTTP 500"):
            await adapter.embed(["x"])
        assert adapter.state == "failed" and adapter.error is not None
        assert adapter.available  # a later call tries again
    finally:
        server.fail_with = None
    assert (await adapter.embed(["x"])).shape == (1, 384)
    assert adapter.state == "ready" and adapter.error is None


async def test_http_server_down(http_client: Http) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    adapter = new_http(http_client, url=url)
    with pytest.raises(EmbeddingError) as caught:
        await adapter.embed(["x"])
    message = str(caught.value)
    assert f"{url}/api/embed" in message
    assert "embeddings.url" in message
    assert adapter.state == "failed" and adapter.error == message


# -- none ------------------------------------------------------------------------------------


async def test_none_adapter() -> None:
    adapter = none_embeddings.Embeddings.from_settings(
        settings(), SessionPaths.from_settings("/tmp/unused"), lambda key: None
    )
    assert isinstance(adapter, EmbeddingsBase)
    assert adapter.available is False
    assert adapter.state == "disabled"
    assert adapter.dimension == 384
    with pytest.raises(EmbeddingError, match="keyword search still works"):
        await adapter.embed(["x"])
    with pytest.raises(EmbeddingError, match=r"adapters\.embeddings = none"):
        await adapter.embed_query("x")


def test_adapter_registry_and_metadata() -> None:
    from session_buddy.adapters import adapter_class

    for name, module in (
        ("onnx", onnx_embeddings),
        ("http", http_embeddings),
        ("none", none_embeddings),
    ):
        cls = adapter_class("embeddings", name)
        assert cls is module.Embeddings and cls.name == name
        assert issubclass(cls, EmbeddingsBase)
        assert module.MODULE_METADATA.category == "embeddings"
        assert module.MODULE_METADATA.name == name


def test_onnx_loads_without_a_writable_temporary_folder(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, model: onnx_embeddings.Embeddings
) -> None:
    """The rewritten graph goes through a temporary file; without one it loads from the
    bytes (the same vectors, ~22 MB more resident)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing" / "folder"))
    adapter = new_onnx()
    texts = fixed_texts()[:8]
    np.testing.assert_allclose(adapter.encode(texts), model.encode(texts), rtol=0, atol=1e-6)
    assert adapter.int8_lookups == 2
