"""Tokenizers: a thin wrapper over HF ``tokenizers`` and two ways to build one.

* ``train_bpe``: byte-level BPE (GPT-2 style) trained on any text iterator. Every byte has a token,
  no normalizer touches the text and no prefix space is added, so ``decode(encode(s)) == s`` for all
  Unicode strings.
* ``char_level_tokenizer``: one token per character, ids in sorted-character order as in nanoGPT's
  shakespeare_char, then ``<|endoftext|>`` and ``<|pad|>``.

Both produce a standard ``tokenizer.json`` that plain ``tokenizers.Tokenizer.from_file`` loads.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"  # GPT-2's document separator
PAD_TOKEN = "<|pad|>"
# texts per Rust batch call in ``encode_batch``: with ids-only encoding, slices of a few hundred texts
# took ~20% less CPU than one call over 10,000 (the batch's working set stays in cache)
ENCODE_SLICE = 512
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN)


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with the two special tokens this project relies on.

    The JSON it was built from is kept verbatim, so ``sha256`` is the hash of the ``tokenizer.json``
    bytes that ``save`` writes (and that an artifact's manifest records).

    Args:
        tokenizer_json: the serialised tokenizer (contents of a ``tokenizer.json``).

    Raises:
        ValueError: if the tokenizer lacks ``<|endoftext|>`` or ``<|pad|>``.

    Example:
        >>> tok = char_level_tokenizer("hello")
        >>> tok.encode("hell"), tok.decode(tok.encode("hell"))
        ([1, 0, 2, 2], 'hell')
    """

    def __init__(self, tokenizer_json: str) -> None:
        self._json = tokenizer_json
        self._tok = Tokenizer.from_str(tokenizer_json)
        ids = {t: self._tok.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(
                f"tokenizer lacks special tokens {missing}; build it with train_bpe or char_level_tokenizer"
            )
        self.eos_id: int = ids[EOS_TOKEN]
        self.pad_id: int = ids[PAD_TOKEN]
        # encode_batch_fast (tokenizers >= 0.20) skips the character offsets we never use: the same
        # ids, ~8-10% less CPU on byte-level BPE
        self._encode_batch = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TextTokenizer:
        """Load a ``tokenizer.json`` file."""
        with open(path, encoding="utf-8") as f:
            return cls(f.read())

    @classmethod
    def from_tokenizer(cls, tok: Tokenizer) -> TextTokenizer:
        """Wrap an in-memory ``tokenizers.Tokenizer`` (serialised once, to fix its JSON and hash)."""
        return cls(tok.to_str())

    def save(self, path: str | os.PathLike) -> None:
        """Write ``tokenizer.json`` (the exact bytes ``sha256`` hashes)."""
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(self._json)

    def to_json(self) -> str:
        """The serialised tokenizer."""
        return self._json

    @property
    def sha256(self) -> str:
        """Hex sha256 of the ``tokenizer.json`` bytes: the tokenizer's identity in lineage metadata."""
        return hashlib.sha256(self._json.encode("utf-8")).hexdigest()

    @property
    def prefix_id(self) -> int:
        """The context token before a text so its first token is scored: EOS, the document separator
        the GPT is trained with (the same rule as ``model.hf_folder.HFTokenizer.prefix_id``)."""
        return self.eos_id

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (the smallest valid ``GPTConfig.vocab_size``)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def backend(self) -> Tokenizer:
        """The wrapped ``tokenizers.Tokenizer``."""
        return self._tok

    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        """Token ids of ``text``.

        Literal ``<|endoftext|>`` / ``<|pad|>`` strings inside the text become the special ids (as in
        GPT-2 training data); clean them upstream if that is not wanted.

        Args:
            text: any Unicode string (char-level tokenizers accept only their own characters).
            add_eos: append ``eos_id`` (marks a document end when packing windows).

        Returns:
            List of int ids.

        Raises:
            ValueError: if a char-level tokenizer meets a character outside its vocabulary.
        """
        try:
            ids = self._tok.encode(text, add_special_tokens=False).ids
        except Exception as e:  # tokenizers raises a bare Exception for unknown chars in WordLevel
            raise ValueError(
                f"cannot encode text with this tokenizer ({e}); a char-level tokenizer only "
                "knows the characters of the text it was built from"
            ) from e
        return ids + [self.eos_id] if add_eos else ids

    def encode_batch(self, texts: Sequence[str], add_eos: bool = False) -> list[list[int]]:
        """``encode`` for many texts, in parallel inside the Rust library (ids only, no offsets).

        Args:
            texts: the strings to encode, in order.
            add_eos: append ``eos_id`` to each.

        Returns:
            One list of ids per text, in input order.
        """
        texts = list(texts)
        tail = [self.eos_id] if add_eos else []
        out: list[list[int]] = []
        for i in range(0, len(texts), ENCODE_SLICE):
            try:
                encs = self._encode_batch(texts[i : i + ENCODE_SLICE], add_special_tokens=False)
            except Exception as e:
                raise ValueError(f"cannot encode texts with this tokenizer ({e})") from e
            out += [enc.ids + tail for enc in encs]
        return out

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        """Text of ``ids``.

        Args:
            ids: token ids.
            skip_special: drop ``<|endoftext|>``/``<|pad|>``; False keeps them so decode inverts encode.

        Returns:
            The decoded string. Byte-level ids that split a UTF-8 character decode to U+FFFD.
        """
        return self._tok.decode(list(ids), skip_special_tokens=skip_special)

    def decode_batch(self, batch: Sequence[Sequence[int]], skip_special: bool = False) -> list[str]:
        """``decode`` for many id lists."""
        return self._tok.decode_batch([list(ids) for ids in batch], skip_special_tokens=skip_special)


def _special_added_tokens() -> list[AddedToken]:
    # normalized=False: match the literal string in raw text; special=True: skip_special drops them
    return [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]


def train_bpe(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2, show_progress: bool = False
) -> TextTokenizer:
    """Train a byte-level BPE tokenizer (GPT-2 scheme) whose decode inverts encode exactly.

    Ids 0 and 1 are ``<|endoftext|>`` and ``<|pad|>``; the next 256 are the byte alphabet, then merges.

    Args:
        texts: training text, streamed once (an iterator of documents is fine).
        vocab_size: final size, specials and the 256 bytes included; must be >= 258. The result can be
            smaller when the text offers too few merges.
        min_frequency: a pair must occur this often to be merged.
        show_progress: show the Rust progress bar.

    Returns:
        The trained tokenizer.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} is too small: byte-level BPE needs >= 258 (256 bytes + 2 specials)")
    tok = Tokenizer(models.BPE())
    # GPT-2 regex split, bytes mapped to printable chars; no prefix space, so " x" and "x" stay distinct
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=_special_added_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, so nothing is unknown
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer)
    log.info("trained byte-level BPE with %d tokens", tok.get_vocab_size())
    return TextTokenizer.from_tokenizer(tok)


def char_level_tokenizer(text: str) -> TextTokenizer:
    """One token per character of ``text``: nanoGPT shakespeare_char ids plus two specials.

    Ids ``0..n-1`` are ``sorted(set(text))`` (so tinyshakespeare gives nanoGPT's 65 ids exactly), then
    ``<|endoftext|>`` = n and ``<|pad|>`` = n+1. Text with other characters fails to encode.

    Args:
        text: the corpus whose characters make the vocabulary.

    Returns:
        The tokenizer (a WordLevel model over single characters, concatenating decoder).
    """
    chars = sorted(set(text))
    vocab = {ch: i for i, ch in enumerate(chars)}
    for special in SPECIAL_TOKENS:
        if special in vocab:  # impossible for single characters; guards future edits
            raise ValueError(f"special token {special!r} collides with a character")
        vocab[special] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab))  # no unk token: unknown characters raise
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every char, newlines too
    tok.decoder = decoders.Fuse()  # join tokens with no separator
    tok.add_special_tokens(_special_added_tokens())
    return TextTokenizer.from_tokenizer(tok)


def load_tokenizer(path: str | os.PathLike) -> TextTokenizer:
    """Load a ``tokenizer.json`` written by ``TextTokenizer.save`` (or any compatible one)."""
    return TextTokenizer.from_file(path)
