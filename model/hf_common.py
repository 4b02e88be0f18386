"""Pieces shared by the native Hugging Face decoders (model/hf_gpt2.py, model/hf_llama.py).

* ``KVCache``: keys and values of every layer, sized to the generation at hand (not to block_size,
  which is 32k-128k tokens for Llama-family checkpoints).
* ``causal_attention``: SDPA over a query block that continues ``past`` cached positions, with
  grouped-query attention (fewer key/value heads than query heads).
* ``fill_parameters``: copy checkpoint tensors into a model built on the meta device, after
  checking every name, shape and on-disk dtype, so a bad folder is refused before memory is spent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.hf_folder import HFFolderError, WeightReader

# config.json ``activation_function`` / ``hidden_act`` values we implement. HF's "gelu_new" and
# "gelu_pytorch_tanh" are both the tanh approximation (Hendrycks & Gimpel, arXiv 1606.08415).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function config.json names.

    Args:
        name: e.g. ``"gelu_new"`` (GPT-2) or ``"silu"`` (Llama family).

    Returns:
        An elementwise function on tensors.

    Raises:
        HFFolderError: for a name we do not implement.
    """
    if name not in ACTIVATIONS:
        raise HFFolderError(f"activation {name!r} is not implemented natively; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class KVCache:
    """Preallocated keys and values of every layer, filled as tokens are decoded.

    Same interface as ``model.gpt.KVCache`` (``pos``, ``capacity``, ``update``); heads are the
    key/value heads, which grouped-query attention shares between several query heads.

    Args:
        n_layer: layers.
        batch_size: rows decoded together (B).
        n_kv_head: key/value heads per layer.
        head_dim: size of one head.
        capacity: most positions it can hold (prompt + new tokens, at most block_size).
        device: where the buffers live.
        dtype: buffer dtype; match the model's activations.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        head_dim: int,
        capacity: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ) -> None:
        shape = (n_layer, batch_size, n_kv_head, capacity, head_dim)  # (L, B, nkv, capacity, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0  # positions already filled (the next token's position)
        self.capacity = capacity

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys/values (B, nkv, T, hs) of ``layer``; return all so far (B, nkv, pos+T, hs)."""
        end = self.pos + k.size(2)
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions, {end} requested")
        self.k[layer, :, :, self.pos : end] = k.to(self.k.dtype)
        self.v[layer, :, :, self.pos : end] = v.to(self.v.dtype)
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    past: int = 0,
    scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal scaled-dot-product attention of T new queries over past + T keys.

    Args:
        q: (B, nh, T, hs) queries at absolute positions past..past+T-1.
        k: (B, nkv, past+T, hs) keys; nh must be a multiple of nkv (grouped-query attention, Ainslie
            et al., arXiv 2305.13245: key/value head j serves query heads j*nh/nkv .. (j+1)*nh/nkv-1).
        v: (B, nkv, past+T, hs) values.
        past: positions already cached before the new queries.
        scale: multiplies q.k; None = 1/sqrt(hs).
        attn_mask: (B, 1, T, T) bool for packed rows (``model.scoring.packed_attention_mask``), in place of
            the causal mask; only without a cache (``past`` 0).

    Returns:
        (B, nh, T, hs) attention outputs.
    """
    nh, nkv, T = q.size(1), k.size(1), q.size(2)
    if nh != nkv:
        assert nh % nkv == 0, f"{nh} query heads cannot share {nkv} key/value heads"
        k = k.repeat_interleave(nh // nkv, dim=1)  # (B, nh, past+T, hs)
        v = v.repeat_interleave(nh // nkv, dim=1)  # (B, nh, past+T, hs)
    mask, causal = None, True
    if attn_mask is not None:
        mask, causal = attn_mask, False
    elif past > 0:
        causal = False
        if T > 1:  # new query i (absolute position past+i) sees keys 0..past+i
            rows = torch.arange(T, device=q.device).unsqueeze(1) + past
            mask = torch.arange(past + T, device=q.device).unsqueeze(0) <= rows  # (T, past+T)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)


def check_sequence_length(total: int, block_size: int) -> None:
    """Refuse a forward pass longer than the model's context.

    Args:
        total: cached positions + new tokens.
        block_size: the model's context length.

    Raises:
        ValueError: when ``total > block_size``.
    """
    if total > block_size:
        raise ValueError(f"sequence of {total} tokens exceeds block_size={block_size}; truncate or chunk the input")


def fill_parameters(
    model: nn.Module,
    reader: WeightReader,
    key_of: Callable[[str], str],
    transposed: Callable[[str], bool],
    ignorable: Iterable[str],
    dtype: torch.dtype,
    device: torch.device | str,
) -> None:
    """Check the checkpoint against a meta-device model, then allocate it and copy the weights in.

    Every parameter must have a checkpoint tensor of the right shape stored as F32, BF16 or F16; every
    checkpoint tensor must be used or match an ``ignorable`` pattern. All of this is read from the
    safetensors headers, before any weight is read. Tensors are then read one at a time (memory-mapped)
    and cast to ``dtype``, so peak memory is the model plus one tensor.

    Args:
        model: built under ``torch.device("meta")``; it must provide ``tie_weights()`` (re-ties shared
            matrices after allocation; a no-op when untied).
        reader: the folder's open safetensors files.
        key_of: parameter name -> checkpoint key.
        transposed: parameter name -> True when the checkpoint stores it transposed (GPT-2's Conv1D).
        ignorable: regexes (``re.fullmatch``) of checkpoint keys that are fine to leave unused
            (causal-mask buffers, RoPE frequencies, a tied head stored twice).
        dtype: parameter dtype wanted.
        device: where the parameters live; ``"meta"`` checks the checkpoint and reads no weight.

    Raises:
        HFFolderError: naming missing, unexpected or wrongly shaped tensors, or an unsupported dtype.
    """
    params = dict(model.named_parameters())  # a tied matrix appears once, under its first name
    plan = {name: key_of(name) for name in params}
    missing = sorted(k for k in plan.values() if k not in reader.keys)
    if missing:
        raise HFFolderError(
            f"{reader.root}: checkpoint lacks {len(missing)} tensor(s) the config calls for, e.g. {missing[:5]}; "
            "config.json and the weights do not describe the same model"
        )
    patterns = [re.compile(p) for p in ignorable]
    used = set(plan.values())
    unexpected = sorted(k for k in reader.keys if k not in used and not any(p.fullmatch(k) for p in patterns))
    if unexpected:
        raise HFFolderError(
            f"{reader.root}: checkpoint has {len(unexpected)} tensor(s) this architecture does not use, e.g. "
            f"{unexpected[:5]}; config.json and the weights do not describe the same model"
        )
    for name, key in plan.items():
        want = list(params[name].shape)
        if transposed(name):
            want = want[::-1]
        found = reader.shape(key)
        if found != want:
            raise HFFolderError(
                f"{reader.root}: tensor {key!r} has shape {found} in {reader.file_of(key)}, expected {want} "
                "from config.json"
            )
        reader.check_dtype(key)
    model.to(dtype)  # still on meta: nothing is allocated yet
    if torch.device(device).type == "meta":
        return  # a check only (the driver validating a folder): no weight is read
    model.to_empty(device=device)
    model.tie_weights()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, key in plan.items():
            t = reader.get(key)
            params[name].copy_(t.t() if transposed(name) else t)
