"""Tokenization: one vocabulary shared by the corpus statistics and the model.

Why this module exists: corpus statistics (bigrams, PPMI) and the trained
model must index the *same* vocabulary, so the tokenizer is trained once
(HF ``tokenizers``), saved, and every id array comes from :func:`encode`.
The token-shuffled control (:func:`shuffle_tokens`) keeps unigram
frequencies but destroys bigram structure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

__all__ = [
    "UNK_TOKEN",
    "train_tokenizer",
    "load_tokenizer",
    "encode",
    "text_blocks",
    "encode_file",
    "split_train_val",
    "vocab_table",
    "shuffle_tokens",
]

log = logging.getLogger(__name__)

UNK_TOKEN = "[UNK]"
_ENCODE_CHUNK_LINES = 20_000
#: Characters per block when a corpus file is streamed (blocks end at a line break, so no word is cut).
BLOCK_BYTES = 4_000_000


def _pre_tokenizer():
    # Split on whitespace, then isolate every punctuation character
    # ("woo'd," -> "woo", "'", "d", ",").
    return pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])


def _lines(text: str):
    return text.splitlines()


def text_blocks(path: str | os.PathLike, block_bytes: int = BLOCK_BYTES) -> Iterator[str]:
    """The UTF-8 text of ``path`` in blocks of about ``block_bytes`` that end at a line break (the last block may
    not), so a corpus of any size is read with bounded memory and no word is split between blocks."""
    rest = b""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(block_bytes)
            if not chunk:
                break
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:  # no line break yet: keep reading
                rest = chunk
                continue
            rest = chunk[cut:]
            yield chunk[:cut].decode("utf-8")
    if rest:
        yield rest.decode("utf-8")


def _pieces(block: str, n: int) -> list[str]:
    """``block`` cut at line breaks into about ``n`` pieces (one per core for a parallel batch call)."""
    size = max(1, len(block) // n)
    pieces, start = [], 0
    while start < len(block):
        end = block.find("\n", start + size)
        end = len(block) if end < 0 else end + 1
        pieces.append(block[start:end])
        start = end
    return pieces


def train_tokenizer(
    text: str | Iterable[str], kind: str, vocab_size: int, lowercase: bool = False
) -> tuple[Tokenizer, dict]:
    """Train a word-level or BPE tokenizer on ``text`` (a string, or an iterable of blocks such as
    :func:`text_blocks` yields; line breaks only separate words, so both give the same tokenizer).

    ``kind="word"``: WordLevel model keeping the ``vocab_size - 1`` most
    frequent words plus ``[UNK]`` (id 0). ``kind="bpe"``: BPE with
    ``BpeTrainer(vocab_size)`` and ``[UNK]`` as id 0. If the corpus cannot fill
    the requested vocabulary (fewer distinct words than ``vocab_size``), the
    vocabulary shrinks to what exists and a warning is logged.

    Returns ``(tokenizer, info)`` with ``info = {requested_vocab_size,
    vocab_size, shrunk, kind}``.
    """
    if kind not in ("word", "bpe"):
        raise ValueError(f"tokenizer.kind must be 'word' or 'bpe', got {kind!r}")
    if int(vocab_size) < 2:
        raise ValueError(f"tokenizer.vocab_size must be >= 2, got {vocab_size!r}")
    vocab_size = int(vocab_size)
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=0, special_tokens=[UNK_TOKEN], show_progress=False
        )
    else:
        tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=0, special_tokens=[UNK_TOKEN], show_progress=False
        )
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = _pre_tokenizer()
    if isinstance(text, str):
        tok.train_from_iterator(_lines(text), trainer=trainer)
    else:  # blocks, each cut into pieces so the trainer's batches keep every core busy
        tok.train_from_iterator((piece for block in text for piece in _pieces(block, 64)), trainer=trainer)
    if tok.token_to_id(UNK_TOKEN) != 0:  # pragma: no cover - guards a tokenizers behaviour change
        raise RuntimeError(f"{UNK_TOKEN} did not get id 0")
    actual = tok.get_vocab_size()
    if actual > vocab_size:  # pragma: no cover
        raise RuntimeError(f"tokenizer produced {actual} > requested {vocab_size} tokens")
    shrunk = actual < vocab_size
    if shrunk:
        log.warning(
            "tokenizer.vocab_size=%d requested but the corpus only supports %d tokens (%s); "
            "using vocab_size=%d",
            vocab_size, actual, kind, actual,
        )
    info = {"requested_vocab_size": vocab_size, "vocab_size": actual, "shrunk": shrunk, "kind": kind}
    return tok, info


def load_tokenizer(files: dict[str, str]) -> tuple[Tokenizer, dict]:
    """A model's own tokenizer (no training): ``{"tokenizer_json": path}`` (Hugging Face ``tokenizers``) or
    ``{"vocab": vocab.json, "merges": merges.txt}`` (GPT-2's byte-level BPE: byte-level pre-tokenizer without a
    prefix space, byte-level decoder, ``<|endoftext|>`` a special token when the vocabulary has it).
    Returns ``(tokenizer, info)`` like :func:`train_tokenizer` (kind "model's own", the file it came from)."""
    if "tokenizer_json" in files:
        tok = Tokenizer.from_file(str(files["tokenizer_json"]))
        source = str(files["tokenizer_json"])
    else:
        from tokenizers import AddedToken, decoders

        tok = Tokenizer(models.BPE.from_file(str(files["vocab"]), str(files["merges"])))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if tok.token_to_id(GPT2_EOS) is not None:
            tok.add_special_tokens([AddedToken(GPT2_EOS, special=True)])
        source = f"{files['vocab']} + {files['merges']}"
    V = tok.get_vocab_size()
    return tok, {"requested_vocab_size": V, "vocab_size": V, "shrunk": False, "kind": "model's own",
                 "source": source}


def encode(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """Encode ``text`` to an int32 id array (line breaks act as separators only).

    Lines are encoded in chunks with ``encode_batch`` (parallel in Rust), which is
    much faster than one ``encode`` call on the whole text.
    """
    lines = _lines(text)
    out: list[np.ndarray] = []
    for start in range(0, len(lines), _ENCODE_CHUNK_LINES):
        for enc in tokenizer.encode_batch(lines[start : start + _ENCODE_CHUNK_LINES], add_special_tokens=False):
            if enc.ids:
                out.append(np.asarray(enc.ids, dtype=np.int32))
    if not out:
        return np.zeros(0, dtype=np.int32)
    return np.concatenate(out).astype(np.int32, copy=False)


def encode_file(tokenizer: Tokenizer, path: str | os.PathLike, out: str | os.PathLike,
                block_bytes: int = BLOCK_BYTES) -> int:
    """Encode a text file block by block into ``out`` (raw int32, written incrementally); returns the token count.
    The same ids as :func:`encode` on the whole text, with memory bounded by the block size."""
    n = 0
    with open(out, "wb") as fh:
        for block in text_blocks(path, block_bytes):
            for enc in tokenizer.encode_batch_fast(_pieces(block, 16), add_special_tokens=False):
                ids = np.asarray(enc.ids, dtype=np.int32)
                fh.write(ids.tobytes())
                n += ids.size
    return n


def write_split(raw: str | os.PathLike, n: int, val_fraction: float, train_path, val_path) -> tuple[int, int]:
    """Split the raw int32 stream of :func:`encode_file` like :func:`split_train_val` into two ``.npy`` files,
    copying through memory maps (no copy of the whole stream in memory); returns (n_train, n_val)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    stream = np.memmap(raw, dtype=np.int32, mode="r", shape=(n,)) if n else np.zeros(0, dtype=np.int32)
    cut = n - int(round(n * val_fraction))
    for path, part in ((train_path, stream[:cut]), (val_path, stream[cut:])):
        dest = np.lib.format.open_memmap(path, mode="w+", dtype=np.int32, shape=(part.size,))
        for start in range(0, part.size, 16_000_000):
            dest[start:start + 16_000_000] = part[start:start + 16_000_000]
        dest.flush()
        del dest
    return cut, n - cut


def split_train_val(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split: the last ``val_fraction`` of the stream is validation.

    Contiguous (not random) so that validation text is unseen text, not
    interleaved fragments of the training stream.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    ids = np.asarray(ids)
    n_val = int(round(len(ids) * val_fraction))
    cut = len(ids) - n_val
    return ids[:cut].copy(), ids[cut:].copy()


def vocab_table(tokenizer: Tokenizer, train_ids: np.ndarray) -> pd.DataFrame:
    """Vocabulary as a DataFrame ``(id, token, count)`` sorted by id; counts from ``train_ids``."""
    V = tokenizer.get_vocab_size()
    counts = token_counts(train_ids, V)
    if len(counts) > V:
        raise ValueError(f"train_ids contain id {len(counts) - 1} >= vocab size {V}")
    return pd.DataFrame(
        {
            "id": np.arange(V, dtype=np.int64),
            "token": [tokenizer.id_to_token(i) for i in range(V)],
            "count": counts.astype(np.int64),
        }
    )


def token_counts(ids: np.ndarray, minlength: int = 0) -> np.ndarray:
    """Occurrences of every id, counted chunk by chunk (``ids`` may be a memory map of any length)."""
    counts = np.zeros(int(minlength), dtype=np.int64)
    for start in range(0, ids.shape[0], 16_000_000):
        c = np.bincount(np.asarray(ids[start:start + 16_000_000], dtype=np.int64), minlength=counts.size)
        if c.size > counts.size:
            counts = np.concatenate([counts, np.zeros(c.size - counts.size, dtype=np.int64)])
        counts += c
    return counts


def shuffle_tokens(ids: np.ndarray, seed: int) -> np.ndarray:
    """Token-shuffled control: a random permutation of the stream.

    Unigram counts are preserved exactly; bigram (and longer) structure is destroyed.
    """
    rng = np.random.default_rng(seed)
    return rng.permutation(np.asarray(ids))


GPT2_EOS = "<|endoftext|>"
SPECIAL_TOKENS = (UNK_TOKEN, "[PAD]", GPT2_EOS)


def special_token_ids(vocab: pd.DataFrame) -> list[int]:
    """Ids of the special tokens (unknown, padding; GPT-2's end of text) in a vocabulary table: excluded from token-space statistics,
    since their embeddings carry no corpus meaning."""
    return [int(i) for i in vocab.loc[vocab["token"].isin(SPECIAL_TOKENS), "id"]]
