"""Configs for the model and its trainer: one frozen dataclass each, built from dicts that must not
carry unknown keys (a typo in a config file is an error, as in nanoGPT's configurator)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def config_from_dict(cls: type[T], values: Mapping[str, Any] | None) -> T:
    """Builds a frozen config dataclass from a dict, recursively, refusing keys it does not have.

    The one loader for every config in the project (model, trainer, curation). Nested dataclass fields
    accept a dict (or an instance); lists become tuples so the config stays hashable; absent keys keep
    the dataclass default.

    Args:
        cls: a dataclass type such as ``GPTConfig``, ``TrainConfig`` or ``CurationConfig``.
        values: field name -> value; None or {} gives the defaults.

    Returns:
        An instance of ``cls`` (its ``__post_init__`` checks the values).

    Raises:
        ValueError: a key is not a field of ``cls`` (the message lists the allowed keys), or a nested value
            has the wrong type.

    Example:
        >>> config_from_dict(GPTConfig, {"n_layer": 2}).n_layer
        2
    """
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"{cls!r} is not a dataclass; pass the config class, e.g. GPTConfig")
    values = dict(values or {})
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; allowed keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{name: _coerce(hints.get(name), v, f"{cls.__name__}.{name}") for name, v in values.items()})


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a JSON-ready dict (nested configs become dicts, tuples lists): ``config_from_dict``'s inverse."""

    def _plain(v: Any) -> Any:
        return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    return {k: _plain(v) for k, v in dataclasses.asdict(cfg).items()}


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Turns a JSON value into what the field expects: nested dataclass from a dict, tuple from a list."""
    nested = _dataclass_in(hint)
    if nested is not None and isinstance(value, Mapping):
        return config_from_dict(nested, value)
    if nested is not None and not isinstance(value, nested) and value is not None:
        raise ValueError(f"{where} expects a dict or {nested.__name__}, got {type(value).__name__}")
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type named by a (possibly Optional) type hint, else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT-2 style decoder-only transformer.

    Defaults are nanoGPT's shakespeare_char model (10.7M parameters at vocab 65).
    """

    vocab_size: int = 50304  # GPT-2's 50257 rounded up to a multiple of 64 for faster matmuls
    block_size: int = 256  # maximum context length in tokens (learned position embeddings)
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0  # 0 for pretraining on much data; 0.1-0.2 for small-data finetunes
    bias: bool = True  # bias in Linear and LayerNorm, like GPT-2; False is slightly faster and better

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GPTConfig:
        """``GPTConfig`` from a dict; unknown keys raise ``ValueError``."""
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what ``config.json`` of an artifact holds)."""
        return config_to_dict(self)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimisation, evaluation, checkpointing and resources.

    Defaults follow nanoGPT's CPU "baby GPT" recipe for shakespeare_char.
    """

    batch_size: int = 12  # windows per micro-batch on each rank
    block_size: int | None = None  # None = the model's block_size; data windows hold block_size + 1 tokens
    max_steps: int = 2000  # optimizer steps; training may stop and resume with a larger value
    lr: float = 1e-3  # peak learning rate; small models tolerate a high one (nanoGPT shakespeare_char)
    min_lr: float = 1e-4  # floor of the cosine decay, lr / 10 as in Chinchilla (arXiv 2203.15556)
    warmup_steps: int = 100  # linear warmup from ~0 to lr
    lr_decay_steps: int | None = None  # step where the cosine reaches min_lr; None = max_steps
    weight_decay: float = 0.1  # AdamW decay on matrices only (never norms, biases)
    beta1: float = 0.9
    beta2: float = 0.99  # nanoGPT uses 0.99 for small batches (few tokens per step)
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimizer step (global batch = batch_size * grad_accum * world)
    eval_every: int = 250  # steps between validation runs (also run at the last step)
    eval_steps: int = 20  # validation micro-batches per evaluation (the same ones every time)
    ckpt_every: int = 250  # steps between checkpoints (also saved at the last step)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk; older ones are deleted
    log_every: int = 10  # steps between train-loss lines in metrics.jsonl
    seed: int = 1337  # seeds init, dropout and the data order; same seed + data = same run
    threads: int = 1  # torch CPU threads; set explicitly: oversubscribed cores train 7-15x slower
    shuffle_buffer: int = 16384  # windows mixed together when shuffling (memory bound of the reader)
    device: str = "auto"  # "auto" = cuda when available, else cpu
    # Matmul precision. Master weights, optimizer state, the loss and gradient clipping stay float32
    # in every mode; "bf16" runs forward/backward under bf16 autocast, "fp32" runs everything in
    # float32. "auto" = bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX; about 1.3x
    # faster per step on the CPU baby GPT, bench/train_speed/RESULTS.md), else fp32.
    precision: str = "auto"
    compile: bool = False  # torch.compile the training model (CUDA or CPU: needs a C++ compiler); a minute of start-up

    def __post_init__(self) -> None:
        positive = (
            "batch_size",
            "max_steps",
            "grad_accum",
            "eval_every",
            "eval_steps",
            "ckpt_every",
            "keep_checkpoints",
            "log_every",
            "threads",
            "shuffle_buffer",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        if self.block_size is not None and self.block_size <= 0:
            raise ValueError(f"block_size must be positive or None, got {self.block_size}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr_decay_steps is not None and self.lr_decay_steps < self.warmup_steps:
            raise ValueError(f"lr_decay_steps={self.lr_decay_steps} must be >= warmup_steps={self.warmup_steps}")
        if not 0.0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def decay_steps(self) -> int:
        """The step at which the cosine schedule reaches ``min_lr``."""
        return self.max_steps if self.lr_decay_steps is None else self.lr_decay_steps

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """``TrainConfig`` from a dict; unknown keys raise ``ValueError``."""
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (written to ``train_config.json`` next to the outputs)."""
        return config_to_dict(self)
