"""Tokenisation for keyword (BM25) search.

Rules (the same for documents and queries):

* Words are lowercased, English stopwords are dropped, the rest are Snowball-stemmed
  (PyStemmer, ``english``).
* A *compound* token - letters/digits joined by ``_ . - / \\ : ``, or written in CamelCase, or
  mixing letters and digits - is indexed whole (lowercased, not stemmed) **and** by its parts
  (each part treated like a word). ``ERR_CONN_4021`` gives ``err_conn_4021``, ``err``, ``conn``,
  ``4021``; ``HttpServerError`` gives ``httpservererror``, ``http``, ``server``, ``error``;
  ``src/api/routes.py`` gives the path, ``routes.py`` (its last segment), ``src``, ``api``,
  ``rout``, ``py``. So an identifier is found both by its exact spelling and by its words.
* Single letters are dropped; numbers are kept.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

#: English stopwords (Snowball's list, trimmed of words that matter in code talk: "not", "no").
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself nor of off on once only or other ought our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    s t d ll m re ve let us shall may might must also
    """.split()  # noqa: SIM905 - a word list reads better as text
)

# A run of word characters, possibly joined by connector characters (kept inside only).
_COMPOUND = re.compile(r"\w+(?:(?:[.\-/\\:]+|::)\w+)*")
_SEPARATORS = re.compile(r"[_.\-/\\:]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_PLAIN = re.compile(r"[^\W\d_]+|\d+")  # only letters, or only digits

_stemmer = Stemmer.Stemmer("english")
_stemmer.maxCacheSize = 20_000


@lru_cache(maxsize=50_000)
def _word(word: str) -> str | None:
    """A lowercased plain word -> its stem, or None for a stopword / single letter."""
    if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
        return None
    stem: str = _stemmer.stemWord(word)
    return stem


@lru_cache(maxsize=50_000)
def _compound(token: str) -> tuple[str, ...]:
    """The terms of one raw token (original case), whole first."""
    if _PLAIN.fullmatch(token) and not (token.isascii() and len(_CAMEL.findall(token)) > 1):
        stem = _word(token.lower())
        return (stem,) if stem else ()
    terms: list[str] = [token.lower()]
    segments = [s for s in _SEPARATORS.split(token) if s]
    if "/" in token or "\\" in token:
        last = re.split(r"[/\\]+", token)[-1]
        if last and last != token and not _PLAIN.fullmatch(last):
            terms.append(last.lower())
    for segment in segments:
        parts = _CAMEL.findall(segment) if segment.isascii() else [segment]
        if len(parts) > 1 and segment.lower() not in terms:
            terms.append(segment.lower())  # e.g. the "HttpServer" of "HttpServer.start"
        for part in parts or [segment]:
            stem = _word(part.lower())
            if stem and stem not in terms:
                terms.append(stem)
    return tuple(terms)


#: raw token -> its terms; a plain dict lookup is cheaper than the lru_cache call per token
_TERMS: dict[str, tuple[str, ...]] = {}
_TERMS_MAX = 50_000


def tokenize(text: str) -> list[str]:
    """Index terms of ``text``, in order, with repeats (term frequency matters)."""
    out: list[str] = []
    get = _TERMS.get
    for token in _COMPOUND.findall(text):
        terms = get(token)
        if terms is None:
            terms = _remember(token)
        out.extend(terms)
    return out


def _remember(token: str) -> tuple[str, ...]:
    if len(_TERMS) >= _TERMS_MAX:
        _TERMS.clear()
    terms = _TERMS[token] = _compound(token)
    return terms


def query_terms(text: str) -> list[str]:
    """Distinct terms of a query, in order of first appearance."""
    return list(dict.fromkeys(tokenize(text)))


def query_groups(text: str) -> list[tuple[str, ...]]:
    """The query's words as term groups (whole term first, then its parts), distinct."""
    groups: dict[tuple[str, ...], None] = {}
    for token in _COMPOUND.findall(text):
        terms = _compound(token)
        if terms:
            groups[terms] = None
    return list(groups)


def word_terms(text: str) -> list[tuple[str, str]]:
    """The plain words of ``text`` that give one index term each, as (word, term) pairs in
    order (stopwords, single letters and compound tokens left out): words that, written in
    a query, search for exactly that term (query expansion, :mod:`.refine`)."""
    out: list[tuple[str, str]] = []
    for token in _COMPOUND.findall(text):
        terms = _compound(token)
        if len(terms) == 1 and _PLAIN.fullmatch(token):
            out.append((token.lower(), terms[0]))
    return out


def clear_caches() -> None:
    """Forget the token caches (after a bulk load: they hold that load's rare tokens, ~50 MB
    at 100k items, and refill with what later writes and queries use)."""
    _TERMS.clear()
    _word.cache_clear()
    _compound.cache_clear()
