"""Read a local Hugging Face model folder: config, safetensors weights, tokenizer, special ids, hash.

A folder in the Hugging Face layout holds::

    config.json                   model_type and shape (required)
    model.safetensors             weights, or shards listed in model.safetensors.index.json
    tokenizer.json                the ``tokenizers`` serialisation (required)
    generation_config.json        optional: bos/eos/pad ids used for generation
    tokenizer_config.json         optional: bos/eos/pad tokens as strings
    special_tokens_map.json       optional

Nothing is downloaded and no pickle is ever loaded: a folder with only ``pytorch_model.bin`` is
refused with the command that converts it. Every refusal is an ``HFFolderError`` (a ``ValueError``)
whose message names the file or tensor at fault, so a job can turn it into exit 2 before any row.

Lineage hash (``folder_hash``): hex sha256 over the files in this fixed order, each present file fed as
``name + b"\\0" + size (8 bytes, big-endian) + contents``:
``config.json``, ``generation_config.json``, ``model.safetensors.index.json``, the weight files sorted by
name, ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``. Optional files that are
absent are skipped; other files in the folder (README, pickles) are not part of the model's identity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer

log = logging.getLogger(__name__)

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER = "tokenizer.json"
GENERATION_CONFIG = "generation_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")
DISK_DTYPES = ("F32", "BF16", "F16")  # safetensors dtype codes we cast from
CONVERT_HINT = (
    "convert it once with transformers: AutoModelForCausalLM.from_pretrained(DIR)"
    ".save_pretrained(DIR, safe_serialization=True)"
)


class HFFolderError(ValueError):
    """A Hugging Face folder that cannot be loaded natively; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class HFFolder:
    """The files of a Hugging Face model folder, checked to exist; nothing heavy is read yet.

    Attributes:
        root: the folder.
        config: parsed config.json.
        model_type: ``config["model_type"]`` (e.g. ``"gpt2"``, ``"llama"``).
        weight_files: safetensors files, sorted by name (one, or the shards of the index).
        index_file: model.safetensors.index.json, or None for a single file.
        weight_map: tensor name -> file name from the index; empty for a single file.
        generation_config: parsed generation_config.json, or {} when absent.
        tokenizer_config: parsed tokenizer_config.json, or {} when absent.
    """

    root: Path
    config: dict[str, Any]
    model_type: str
    weight_files: tuple[Path, ...]
    index_file: Path | None
    weight_map: dict[str, str] = field(default_factory=dict)
    generation_config: dict[str, Any] = field(default_factory=dict)
    tokenizer_config: dict[str, Any] = field(default_factory=dict)

    @property
    def tokenizer_file(self) -> Path:
        """Path of tokenizer.json."""
        return self.root / TOKENIZER

    def hashed_files(self) -> list[Path]:
        """The files ``folder_hash`` covers, in its fixed order."""
        names = [CONFIG, GENERATION_CONFIG, WEIGHTS_INDEX]
        files = [self.root / n for n in names if (self.root / n).is_file()]
        files += list(self.weight_files)
        tail = (TOKENIZER, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP)
        files += [self.root / n for n in tail if (self.root / n).is_file()]
        return files


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise HFFolderError(f"{path} is not readable JSON: {e}") from e
    if not isinstance(data, dict):
        raise HFFolderError(f"{path} must hold a JSON object, found {type(data).__name__}")
    return data


def is_hf_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a Hugging Face model folder: its config.json has a ``model_type``.

    A lakelm artifact's config.json is a ``GPTConfig`` and has no ``model_type``, so this tells the two
    apart without touching the weights.

    Args:
        path: a folder.

    Returns:
        True when ``path/config.json`` is a JSON object with a ``model_type`` key.
    """
    cfg = Path(path) / CONFIG
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" in data


def read_hf_folder(path: str | os.PathLike) -> HFFolder:
    """Check that a folder has what a native load needs and parse its small JSON files.

    Args:
        path: a local folder in the Hugging Face layout (never a hub name: nothing is downloaded).

    Returns:
        The ``HFFolder``.

    Raises:
        HFFolderError: the folder or config.json is missing, config.json has no ``model_type``, there
            are only pickle weights (with the conversion command), a shard the index lists is missing,
            or tokenizer.json is missing.
    """
    root = Path(path)
    if not root.is_dir():
        raise HFFolderError(f"model folder {root} does not exist (give a local folder; nothing is downloaded)")
    if not (root / CONFIG).is_file():
        raise HFFolderError(f"{root} has no {CONFIG}; a Hugging Face model folder needs config.json")
    config = _read_json(root / CONFIG)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise HFFolderError(f"{root / CONFIG} has no model_type; it does not describe a Hugging Face model")
    index_file, weight_map = None, {}
    if (root / WEIGHTS_INDEX).is_file():
        index_file = root / WEIGHTS_INDEX
        weight_map = _read_json(index_file).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise HFFolderError(f"{index_file} has no weight_map")
        names = sorted(set(weight_map.values()))
        bad = [n for n in names if not isinstance(n, str) or Path(n).name != n]
        if bad:
            raise HFFolderError(f"{index_file} names shards outside the folder: {bad[:3]}")
        absent = [n for n in names if not (root / n).is_file()]
        if absent:
            raise HFFolderError(
                f"{root}: shard(s) {absent} listed in {WEIGHTS_INDEX} are missing; copy the whole folder"
            )
        weight_files = tuple(root / n for n in names)
    elif (root / WEIGHTS).is_file():
        weight_files = (root / WEIGHTS,)
    else:
        pickles = [n for n in PICKLE_WEIGHTS if (root / n).is_file()]
        if pickles:
            raise HFFolderError(
                f"{root} has only pickle weights ({', '.join(pickles)}), which we never load because unpickling "
                f"runs arbitrary code; {CONVERT_HINT}"
            )
        raise HFFolderError(f"{root} has no {WEIGHTS} and no {WEIGHTS_INDEX}; safetensors weights are required")
    if not (root / TOKENIZER).is_file():
        raise HFFolderError(
            f"{root} has no {TOKENIZER}; save the tokenizer with the model "
            "(AutoTokenizer.from_pretrained(...).save_pretrained(DIR) writes it)"
        )
    optional = {n: _read_json(root / n) if (root / n).is_file() else {} for n in (GENERATION_CONFIG, TOKENIZER_CONFIG)}
    return HFFolder(
        root=root,
        config=config,
        model_type=model_type,
        weight_files=weight_files,
        index_file=index_file,
        weight_map=dict(weight_map),
        generation_config=optional[GENERATION_CONFIG],
        tokenizer_config=optional[TOKENIZER_CONFIG],
    )


def folder_hash(folder: HFFolder) -> str:
    """The folder's identity for caches and lineage (the recipe is in the module docstring).

    Args:
        folder: from ``read_hf_folder``.

    Returns:
        64 hex characters.
    """
    h = hashlib.sha256()
    for path in folder.hashed_files():
        h.update(path.name.encode("utf-8") + b"\0" + path.stat().st_size.to_bytes(8, "big"))
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def checked_folder_hash(folder: HFFolder, expected_hash: str | None) -> str:
    """``folder_hash(folder)``, refused unless it equals ``expected_hash`` (case and spaces ignored; None = any).

    Raises:
        HFFolderError: the folder is another model than the one expected.
    """
    digest = folder_hash(folder)
    if expected_hash is not None and digest != expected_hash.strip().lower():
        raise HFFolderError(
            f"model folder {folder.root} has hash {digest}, but {expected_hash.strip()} was expected; "
            "it is another model: check the path, or the hash recorded when it was scored"
        )
    return digest


class WeightReader:
    """The folder's safetensors files, open and memory-mapped; a context manager.

    Headers (names, shapes, dtypes) are read on open; tensor data only by ``get``.

    Args:
        folder: from ``read_hf_folder``.

    Raises:
        HFFolderError: a file that is not valid safetensors, a tensor in two files, or an index entry
            whose tensor is not in the shard it names.
    """

    def __init__(self, folder: HFFolder) -> None:
        self.root = folder.root
        self._files: dict[str, Any] = {}
        self._where: dict[str, str] = {}  # tensor name -> file name
        try:
            for path in folder.weight_files:
                try:
                    handle = safe_open(str(path), framework="pt", device="cpu")
                except (SafetensorError, OSError) as e:
                    raise HFFolderError(f"{path} is not a valid safetensors file: {e}") from e
                self._files[path.name] = handle
                for key in handle.keys():
                    if key in self._where:
                        raise HFFolderError(
                            f"{self.root}: tensor {key!r} is in both {self._where[key]} and {path.name}"
                        )
                    self._where[key] = path.name
            for key, name in folder.weight_map.items():
                if self._where.get(key) != name:
                    raise HFFolderError(f"{folder.index_file} puts {key!r} in {name}, but that shard does not hold it")
        except HFFolderError:
            self.close()
            raise
        self.keys = frozenset(self._where)

    def file_of(self, key: str) -> str:
        """Name of the file that holds tensor ``key``."""
        return self._where[key]

    def shape(self, key: str) -> list[int]:
        """Shape of ``key`` from the header (no data read)."""
        return list(self._files[self._where[key]].get_slice(key).get_shape())

    def check_dtype(self, key: str) -> None:
        """Refuse a tensor stored in a dtype we do not cast from (quantised int8, fp8, ...).

        Raises:
            HFFolderError: naming the tensor and its dtype.
        """
        found = self._files[self._where[key]].get_slice(key).get_dtype()
        if found not in DISK_DTYPES:
            raise HFFolderError(
                f"{self.root}: tensor {key!r} is stored as {found}; native loading reads {list(DISK_DTYPES)} "
                "(quantised checkpoints are not supported)"
            )

    def get(self, key: str) -> torch.Tensor:
        """The tensor ``key`` as stored (CPU, on-disk dtype)."""
        return self._files[self._where[key]].get_tensor(key)

    def close(self) -> None:
        """Drop the file handles (and their memory maps)."""
        self._files.clear()

    def __enter__(self) -> WeightReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _token_id(value: Any, tok: Tokenizer) -> int | None:
    """An id from a config value: an int, a list of ints (first), a token string, or an AddedToken dict."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list):
        ids = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
        return ids[0] if ids else None
    if isinstance(value, dict):
        value = value.get("content")
    if isinstance(value, str):
        return tok.token_to_id(value)
    return None


def _all_ids(value: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, int) and not isinstance(v, bool))
    return ()


def resolve_special_ids(
    config: Mapping[str, Any],
    generation_config: Mapping[str, Any],
    tokenizer_config: Mapping[str, Any],
    tok: Tokenizer,
) -> dict[str, Any]:
    """BOS, EOS and PAD ids of a checkpoint.

    For each of bos/eos/pad the first value found wins, in this order: generation_config.json's
    ``<x>_token_id``, config.json's ``<x>_token_id``, tokenizer_config.json's ``<x>_token`` (a string
    looked up in the tokenizer). Llama-3 style lists of EOS ids keep the first as ``eos_id`` and all in
    ``eos_ids``.

    Args:
        config: parsed config.json.
        generation_config: parsed generation_config.json ({} when absent).
        tokenizer_config: parsed tokenizer_config.json ({} when absent).
        tok: the tokenizer, to look up token strings.

    Returns:
        ``{"bos_id": int | None, "eos_id": int | None, "eos_ids": tuple[int, ...], "pad_id": int | None}``.
    """
    out: dict[str, Any] = {}
    for kind in ("bos", "eos", "pad"):
        sources = (generation_config.get(f"{kind}_token_id"), config.get(f"{kind}_token_id"))
        value = next((v for v in sources if v is not None), None)
        found = _token_id(value, tok) if value is not None else None
        if found is None and tokenizer_config.get(f"{kind}_token") is not None:
            found = _token_id(tokenizer_config[f"{kind}_token"], tok)
        out[f"{kind}_id"] = found
        if kind == "eos":
            out["eos_ids"] = _all_ids(value) or ((found,) if found is not None else ())
    return out


class HFTokenizer:
    """A checkpoint's tokenizer.json plus its special ids; the same methods as ``TextTokenizer``.

    ``encode`` never adds special tokens (tokenizer.json post-processors that prepend BOS are
    bypassed): the caller decides what context precedes a text, with ``prefix_id``.

    Args:
        tok: the loaded ``tokenizers.Tokenizer``.
        tokenizer_json: the exact bytes of tokenizer.json, decoded (for ``sha256``).
        bos_id: beginning-of-sequence id, or None when the checkpoint has none (GPT-2 reuses EOS, Qwen2 has none).
        eos_id: end-of-sequence id, or None.
        eos_ids: every id that ends generation (Llama 3 lists several); () when unknown.
        pad_id: padding id; None in the checkpoint falls back to ``eos_id``, then 0 (padding sits at masked
            positions, so its value never changes a score).
    """

    def __init__(
        self,
        tok: Tokenizer,
        tokenizer_json: str,
        bos_id: int | None,
        eos_id: int | None,
        eos_ids: Sequence[int] = (),
        pad_id: int | None = None,
    ) -> None:
        self._tok = tok
        self._json = tokenizer_json
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.eos_ids = tuple(eos_ids)
        self.pad_id: int = pad_id if pad_id is not None else (eos_id if eos_id is not None else 0)
        vocab = tok.get_vocab(with_added_tokens=True)  # 150k entries for Qwen2: computed once
        self._vocab_size = max(vocab.values()) + 1 if vocab else 0

    @property
    def prefix_id(self) -> int | None:
        """Id to put before a text so its first token gets scored: BOS, else EOS (the document separator
        that GPT-2 and our own GPT use); None when the checkpoint has neither."""
        return self.bos_id if self.bos_id is not None else self.eos_id

    @property
    def vocab_size(self) -> int:
        """Largest id + 1, added tokens included (must not exceed the embedding matrix's rows)."""
        return self._vocab_size

    @property
    def sha256(self) -> str:
        """Hex sha256 of tokenizer.json's bytes."""
        return hashlib.sha256(self._json.encode("utf-8")).hexdigest()

    @property
    def backend(self) -> Tokenizer:
        """The wrapped ``tokenizers.Tokenizer``."""
        return self._tok

    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        """Token ids of ``text``, no special tokens added (``add_eos`` appends ``eos_id``).

        Raises:
            ValueError: when the tokenizer cannot encode the text (a vocabulary with no unknown token).
        """
        return self.encode_batch([text], add_eos)[0]

    def encode_batch(self, texts: Sequence[str], add_eos: bool = False) -> list[list[int]]:
        """``encode`` for many texts, in parallel inside the Rust library; one id list per text, in order."""
        tail = [self.eos_id] if add_eos and self.eos_id is not None else []
        try:
            encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        except Exception as e:  # tokenizers raises a bare Exception
            raise ValueError(f"cannot encode text with this tokenizer ({e})") from e
        return [e.ids + tail for e in encs]

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        """Text of ``ids`` (``skip_special`` drops special tokens)."""
        return self._tok.decode(list(ids), skip_special_tokens=skip_special)

    def decode_batch(self, batch: Sequence[Sequence[int]], skip_special: bool = False) -> list[str]:
        """``decode`` for many id lists."""
        return self._tok.decode_batch([list(ids) for ids in batch], skip_special_tokens=skip_special)


def load_hf_tokenizer(folder: HFFolder, embedding_rows: int) -> HFTokenizer:
    """Load tokenizer.json and the special ids, and check them against the embedding matrix.

    Args:
        folder: from ``read_hf_folder``.
        embedding_rows: rows of the token embedding (config.json ``vocab_size``).

    Returns:
        The ``HFTokenizer``.

    Raises:
        HFFolderError: tokenizer.json does not parse, it has ids beyond the embedding matrix (a
            tokenizer from another model), or a special id is out of range.
    """
    text = folder.tokenizer_file.read_text(encoding="utf-8")
    try:
        tok = Tokenizer.from_str(text)
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise HFFolderError(f"{folder.tokenizer_file} is not a tokenizers file: {e}") from e
    ids = resolve_special_ids(folder.config, folder.generation_config, folder.tokenizer_config, tok)
    out = HFTokenizer(tok, text, ids["bos_id"], ids["eos_id"], ids["eos_ids"], ids["pad_id"])
    if out.vocab_size > embedding_rows:
        raise HFFolderError(
            f"{folder.tokenizer_file} has ids up to {out.vocab_size - 1}, but the model embeds only "
            f"{embedding_rows} ids (config.json vocab_size); the tokenizer belongs to another model"
        )
    for kind in ("bos_id", "eos_id", "pad_id"):
        value = getattr(out, kind)
        if value is not None and not 0 <= value < embedding_rows:
            raise HFFolderError(f"{folder.root}: {kind} {value} is outside the vocabulary of {embedding_rows} ids")
    return out
