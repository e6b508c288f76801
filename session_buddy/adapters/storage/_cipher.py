"""Encryption at rest for the SQL backends (setting ``storage.encryption: aes-gcm``).

A :class:`Cipher` is made from one 32-byte key (env ``SESSION_BUDDY_KEY`` or the owner-only
file ``storage.key_file``, both base64; never a settings value) and used where a row is
encoded or decoded, nowhere else:

* **sealed** (AES-256-GCM, a random 96-bit nonce per value, the row's id and field as the
  associated data, so a value moved to another row or field does not open): an item's
  ``content`` and ``metadata``, a record's ``data`` (session names, summaries, notes...);
* **keyed** (HMAC-SHA-256, so equal values still meet but nothing can be guessed and checked
  without the key): the ``content_hash`` dedup column and, on PostgreSQL, the keyword terms
  the server ranks with (BM25 needs equal terms to be equal);
* **plain**: ids, kinds, roles, times, project, session id, author, tags, record
  collection/project/status (SQL filters need them) and the embeddings (vector search runs
  on them; see docs/security.md for what they reveal).

Three subkeys are derived from the key with HKDF-SHA-256 (one per use). The store keeps a key
check in its meta table (:data:`META_KEY`): the key's id and a sealed known text, so a
wrong key is refused at start with a clear error instead of failing on the first read.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from session_buddy.adapters.storage._base import (
    DedupKey,
    ItemChange,
    MemoryItem,
    Record,
    RecordValues,
    content_hash,
    record_values,
)
from session_buddy.errors import ConfigurationError

if TYPE_CHECKING:
    from session_buddy.settings import SessionBuddySettings

KEY_ENV = "SESSION_BUDDY_KEY"
KEY_BYTES = 32
#: the prefix of a sealed value (version 1: AES-256-GCM, nonce || ciphertext || tag, base64url)
PREFIX = "sbx1:"
#: the meta key of the key check
META_KEY = "encryption"
#: SQL (both backends): the store's key check, and whether it holds any memory or record
KEY_CHECK = "SELECT value FROM meta WHERE key = 'encryption'"
IN_USE = "SELECT EXISTS (SELECT 1 FROM items) OR EXISTS (SELECT 1 FROM records)"
_CHECK_TEXT = "session-buddy key check"
_NONCE_BYTES = 12
_KEY_HELP = (
    f"set the key in ${KEY_ENV} or in the file named by storage.key_file "
    "(env SESSION_BUDDY_STORAGE__KEY_FILE); `session-buddy key generate` makes one"
)


def _subkey(key: bytes, use: str) -> bytes:
    # cryptography (~7 MB resident) is imported by the first key, not by every store.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=use.encode()).derive(
        key
    )


class DecryptionError(ConfigurationError):
    """A sealed value that does not open with the configured key."""


class Cipher:
    """AES-GCM sealing and keyed hashing with subkeys of one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigurationError(
                f"an encryption key must be {KEY_BYTES} bytes (base64 of them), not "
                f"{len(key)}; {_KEY_HELP}"
            )
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(_subkey(key, "session-buddy/content/v1"))
        self._invalid_tag = InvalidTag
        self._hash_key = _subkey(key, "session-buddy/hash/v1")
        self._terms_key = _subkey(key, "session-buddy/terms/v1")
        #: a short public name of the key (not a secret: a keyed hash of nothing)
        self.key_id = hmac.new(_subkey(key, "session-buddy/id/v1"), b"", "sha256").hexdigest()[:16]

    # -- sealing --------------------------------------------------------------------------

    def seal(self, text: str, aad: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8"), aad.encode("utf-8"))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, value: str, aad: str) -> str:
        """The text of a sealed value; a value without the prefix is refused (a plaintext
        row in an encrypted store is not silently accepted)."""
        if not value.startswith(PREFIX):
            raise DecryptionError(
                f"a stored value of {aad.split(':')[-1]} is not encrypted in an encrypted "
                "store (written by a session-buddy without the key?)"
            )
        try:
            raw = base64.urlsafe_b64decode(value[len(PREFIX) :])
            data = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad.encode())
        except (self._invalid_tag, binascii.Error, ValueError):
            raise DecryptionError(
                f"a stored value ({aad}) does not decrypt with the configured key: the key is "
                "wrong or the row was altered"
            ) from None
        return data.decode("utf-8")

    def seal_json(self, text: str, aad: str) -> str:
        """A JSON text sealed as a JSON string (it still fits a JSON column)."""
        return json.dumps(self.seal(text, aad))

    def open_json(self, value: Any, aad: str) -> Any:
        """The value of a JSON column written by :meth:`seal_json`, given as read (the column
        parsed: a sealed string)."""
        if not isinstance(value, str):
            raise DecryptionError(f"a stored value ({aad}) is not encrypted in an encrypted store")
        return json.loads(self.open(value, aad))

    # -- keyed hashes ---------------------------------------------------------------------

    def keyed_hash(self, digest: str) -> str:
        """The dedup column's value for a content hash."""
        return hmac.new(self._hash_key, digest.encode(), hashlib.sha256).hexdigest()

    def term(self, term: str) -> str:
        """A keyword term as the server stores it (PostgreSQL's postings)."""
        mac = hmac.new(self._terms_key, term.encode("utf-8"), hashlib.sha256).digest()
        return base64.b32encode(mac[:15]).decode("ascii").lower()

    # -- the key check --------------------------------------------------------------------

    def check_value(self) -> str:
        return json.dumps(
            {
                "scheme": "aes-gcm",
                "key_id": self.key_id,
                "check": self.seal(_CHECK_TEXT, f"meta:{META_KEY}"),
            }
        )

    def verify(self, stored: str, store: str) -> None:
        """Refuse a key that is not the store's (``stored`` is its :data:`META_KEY` value)."""
        info: dict[str, Any] = {}
        try:
            info = dict(json.loads(stored))
            ok = info.get("key_id") == self.key_id and (
                self.open(str(info.get("check")), f"meta:{META_KEY}") == _CHECK_TEXT
            )
        except (ValueError, TypeError, DecryptionError):
            ok = False
        if not ok:
            raise ConfigurationError(
                f"{store} is encrypted with another key (key id "
                f"{info.get('key_id', '?')}, the configured key has id {self.key_id}): "
                f"{_KEY_HELP.replace('set the key', 'set the right key')}"
            )


class KeyProblem:
    """A key the settings ask for that cannot be used (not set, exposed, malformed): raised
    when the store opens, so the service still starts and every tool and ``health`` say why."""

    def __init__(self, error: ConfigurationError) -> None:
        self.error = error


def check_store(
    cipher: Cipher | KeyProblem | None,
    stored: str | None,
    has_data: bool,
    store: str,
    *,
    optional: bool,
) -> tuple[Cipher | None, str | None]:
    """What a store being opened uses: the cipher (None: plaintext) and the key check to
    write (None: nothing to write). ``stored`` is the store's :data:`META_KEY` value,
    ``has_data`` whether it holds any item or record. Refused: an encrypted store without
    a key, a wrong key, and encryption turned on over plaintext rows (unless ``optional``:
    a store only read, by ``session-buddy migrate``, is then read as plaintext)."""
    if isinstance(cipher, KeyProblem):
        raise cipher.error
    if stored is None:
        if cipher is None:
            return None, None
        if has_data:
            if optional:
                return None, None
            raise ConfigurationError(
                f"storage.encryption is aes-gcm but {store} holds unencrypted memories; "
                "encryption is not turned on in place: copy the store into a new encrypted "
                "one with `session-buddy migrate --from duckdb:OLD --to duckdb:NEW` (with the "
                "key set), then point storage.path at the new file; or set storage.encryption "
                "to off"
            )
        return cipher, cipher.check_value()
    if cipher is None:
        raise ConfigurationError(
            f"{store} is encrypted (storage.encryption: aes-gcm) but no key is configured: "
            f"set storage.encryption to aes-gcm and {_KEY_HELP}"
        )
    cipher.verify(stored, store)
    return cipher, None


# -- where the key comes from ---------------------------------------------------------------


def decode_key(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigurationError(
            f"{source} does not hold a base64 {KEY_BYTES}-byte key; "
            "`session-buddy key generate` makes one"
        )
    return key


def read_key_file(path: Path) -> bytes:
    """The key of an owner-only file (refused when group or others may read it)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigurationError(
            f"storage.key_file {path} cannot be read: {exc.strerror}; "
            "`session-buddy key generate` makes one"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"storage.key_file {path} is readable by other users (mode "
            f"{oct(stat.S_IMODE(mode))}): run `chmod 600 {path}`; the key is not used until then"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"storage.key_file {path} cannot be read: {exc}") from None
    return decode_key(text, f"storage.key_file {path}")


def configured_key(key_file: Path | None) -> bytes | None:
    """The key from ``$SESSION_BUDDY_KEY``, else from ``key_file``; None when neither is set."""
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return decode_key(from_env, f"${KEY_ENV}")
    if key_file is not None:
        return read_key_file(Path(key_file).expanduser())
    return None


def cipher_from_settings(settings: SessionBuddySettings) -> Cipher | None:
    """The cipher the settings ask for (None with ``storage.encryption: off``)."""
    s = settings.storage
    if s.encryption == "off":
        return None
    key = configured_key(s.key_file)
    if key is None:
        raise ConfigurationError(f"storage.encryption is aes-gcm but no key is set: {_KEY_HELP}")
    return Cipher(key)


def key_from_settings(settings: SessionBuddySettings) -> Cipher | KeyProblem | None:
    """:func:`cipher_from_settings` for a backend's ``from_settings``: a key that cannot be
    used becomes a :class:`KeyProblem`, raised when the store opens."""
    try:
        return cipher_from_settings(settings)
    except ConfigurationError as exc:
        return KeyProblem(exc)


def generate_key_file(path: Path) -> Path:
    """Write a new random key to ``path`` (created owner-only; an existing file is kept)."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(
            f"{path} exists; a key file is never overwritten (the memories encrypted with it "
            "would be lost): choose another path or delete it yourself"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii") + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path


# -- the row boundary of the SQL backends ---------------------------------------------------


class SealedRows:
    """What a SQL backend does to its rows with :attr:`cipher` set (nothing without it):
    seal what it writes, open what it reads. Mixed into :class:`._sql.SqlStorage`."""

    #: the cipher of an encrypted store (set by the backend when the key check passed)
    cipher: Cipher | None = None
    dialect: Any

    def _seal_row(self, row: Any) -> Any:
        """An :class:`._sql.ItemRow` as stored (content and metadata sealed, hash keyed)."""
        c = self.cipher
        if c is None:
            return row
        return row._replace(
            content=c.seal(row.content, f"{row.id}:content"),
            content_hash=c.keyed_hash(row.content_hash),
            metadata=c.seal_json(row.metadata, f"{row.id}:metadata"),
        )

    def _item(self, row: Sequence[Any]) -> MemoryItem:
        """The item of a row of the dialect's item columns, opened."""
        item: MemoryItem = self.dialect.item(row)
        c = self.cipher
        if c is not None:
            item.content = self._content(item.id, item.content)
            item.metadata = c.open_json(item.metadata, f"{item.id}:metadata")
            item.content_hash = content_hash(item.content)
        return item

    def _content(self, item_id: str, stored: str) -> str:
        """An item's content as read from its column."""
        return stored if self.cipher is None else self.cipher.open(stored, f"{item_id}:content")

    def _stored_hash(self, digest: str) -> str:
        """The dedup column's value of a content hash."""
        return digest if self.cipher is None else self.cipher.keyed_hash(digest)

    def _stored_key(self, item: Any) -> DedupKey:
        """:func:`._base.dedup_key` with the hash as the store holds it."""
        return (item.kind, item.project, item.author, self._stored_hash(item.content_hash))

    def _seal_change(self, item_id: str, change: ItemChange) -> ItemChange:
        """An update's change with its new content and metadata as stored."""
        c = self.cipher
        if c is None:
            return change
        return dataclasses.replace(
            change,
            content=None
            if change.content is None
            else c.seal(change.content, f"{item_id}:content"),
            content_hash=None if change.content_hash is None else c.keyed_hash(change.content_hash),
            metadata_json=None
            if change.metadata_json is None
            else c.seal_json(change.metadata_json, f"{item_id}:metadata"),
        )

    def _record(self, row: Sequence[Any]) -> Record:
        record: Record = self.dialect.record(row)
        if self.cipher is not None:
            record.data = self.cipher.open_json(
                record.data, f"record:{record.collection}/{record.id}"
            )
        return record

    def _record_values(self, record: Record) -> RecordValues:
        """:func:`._base.record_values` with the data as stored."""
        values = record_values(record)
        if self.cipher is None:
            return values
        sealed = self.cipher.seal_json(values[6], f"record:{record.collection}/{record.id}")
        return (*values[:6], sealed)

    def _term(self, term: str) -> str:
        """A keyword term as a server-side index stores it."""
        return term if self.cipher is None else self.cipher.term(term)
