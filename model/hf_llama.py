"""The Llama family (``llama``, ``mistral``, ``qwen2``) from a Hugging Face folder, in plain PyTorch.

Touvron et al. 2023 (arXiv 2302.13971): RMSNorm before attention and MLP, rotary position embeddings
(RoPE, Su et al., arXiv 2104.09864) with the checkpoint's ``rope_theta``, SwiGLU MLP (Shazeer, arXiv
2002.05202), grouped-query attention, and a head that is tied to the embedding or not. Mistral adds a
sliding attention window, Qwen2 biases on q/k/v. Module names match the checkpoint keys
(``model.layers.0.self_attn.q_proj``).

What is refused rather than approximated: RoPE scaling (``linear``, ``dynamic``, ``yarn``, ``llama3``...),
partial rotary dimensions, and unknown activations. A sliding window shorter than
``max_position_embeddings`` becomes the model's ``block_size``: within the window sliding and full
attention agree exactly, so longer inputs are refused (``hidden_states``) or cropped to the window
(``generate``), never computed wrongly.

The model has the duck-typed interface of ``model.gpt.GPT`` that model/scoring.py drives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from model.decoding import GenerateMixin
from model.hf_common import KVCache, activation, causal_attention, check_sequence_length, fill_parameters
from model.hf_folder import HFFolderError, WeightReader

log = logging.getLogger(__name__)

MODEL_TYPES = ("llama", "mistral", "qwen2")
IGNORABLE = (r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq",)  # a buffer some old exports saved


@dataclass(frozen=True)
class HFLlamaConfig:
    """Shape of a Llama-family checkpoint, from its config.json.

    Attributes:
        model_type: ``llama``, ``mistral`` or ``qwen2``.
        vocab_size: rows of the token embedding.
        block_size: longest sequence we compute exactly: ``max_position_embeddings``, or the sliding
            window when that is shorter.
        n_layer: decoder layers.
        n_head: query heads.
        n_kv_head: key/value heads (< n_head for grouped-query attention).
        n_embd: model width (``hidden_size``).
        head_dim: size of one head (``head_dim``, or n_embd / n_head).
        intermediate_size: SwiGLU hidden width.
        rms_norm_eps: RMSNorm epsilon.
        rope_theta: RoPE base.
        qkv_bias: biases on q/k/v projections (Qwen2; Llama's ``attention_bias``).
        o_bias: bias on the output projection (Llama's ``attention_bias``).
        mlp_bias: biases in the MLP (Llama's ``mlp_bias``).
        tie_word_embeddings: the head reuses the embedding matrix.
        hidden_act: MLP gate activation (``silu``).
    """

    model_type: str
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_kv_head: int
    n_embd: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> HFLlamaConfig:
        """Read config.json of a ``llama``, ``mistral`` or ``qwen2`` checkpoint.

        Both layouts are read: transformers 5's ``rope_parameters`` and 4's ``rope_theta``/``rope_scaling``.

        Args:
            cfg: parsed config.json.

        Returns:
            The config.

        Raises:
            HFFolderError: another model_type, RoPE scaling or partial rotary, an unknown activation,
                or missing shape keys.
        """
        mt = cfg.get("model_type")
        if mt not in MODEL_TYPES:
            raise HFFolderError(f"model_type {mt!r} is not in the Llama family {MODEL_TYPES}")
        theta = _rope_theta(cfg)
        try:
            n_embd, n_head = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
            n_kv_head = int(cfg.get("num_key_value_heads") or n_head)
            max_pos = int(cfg["max_position_embeddings"])
            attention_bias = bool(cfg.get("attention_bias", False))
            out = cls(
                model_type=mt,
                vocab_size=int(cfg["vocab_size"]),
                block_size=_exact_context(cfg, mt, max_pos),
                n_layer=int(cfg["num_hidden_layers"]),
                n_head=n_head,
                n_kv_head=n_kv_head,
                n_embd=n_embd,
                head_dim=int(cfg.get("head_dim") or n_embd // n_head),
                intermediate_size=int(cfg["intermediate_size"]),
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                rope_theta=theta,
                qkv_bias=True if mt == "qwen2" else attention_bias if mt == "llama" else False,
                o_bias=attention_bias if mt == "llama" else False,
                mlp_bias=bool(cfg.get("mlp_bias", False)) if mt == "llama" else False,
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                hidden_act=cfg.get("hidden_act", "silu"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise HFFolderError(f"{mt} config.json lacks or mangles a shape key: {e}") from e
        if n_head % n_kv_head:
            raise HFFolderError(f"{mt} config: {n_head} attention heads cannot share {n_kv_head} key/value heads")
        activation(out.hidden_act)
        return out


def _rope_theta(cfg: dict[str, Any]) -> float:
    """The RoPE base, refusing every scaled or partial variant we do not implement."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    if not isinstance(params, dict) or not isinstance(scaling, dict):
        raise HFFolderError("config.json rope_parameters / rope_scaling must be JSON objects")
    if params and "rope_theta" not in params:  # per-layer-type RoPE (a dict of dicts)
        raise HFFolderError(f"per-layer rope_parameters {sorted(params)} are not supported natively")
    for source in (params, scaling):
        kind = source.get("rope_type", source.get("type", "default"))
        if kind != "default":
            raise HFFolderError(
                f"RoPE scaling type {kind!r} is not implemented natively (only unscaled RoPE is); "
                "use a checkpoint without rope_scaling"
            )
    partial = params.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
    if float(partial) != 1.0:
        raise HFFolderError(f"partial_rotary_factor={partial} is not supported natively (only full-width RoPE)")
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def _exact_context(cfg: dict[str, Any], model_type: str, max_pos: int) -> int:
    """max_position_embeddings, or the sliding window when some layer uses a shorter one."""
    window = cfg.get("sliding_window")
    if "layer_types" in cfg:  # transformers 5 spells out each layer's attention
        sliding = "sliding_attention" in (cfg.get("layer_types") or [])
    elif model_type == "qwen2":  # transformers 4: the window is off unless use_sliding_window
        sliding = bool(cfg.get("use_sliding_window", False))
    else:
        sliding = window is not None
    if sliding and window is not None and int(window) < max_pos:
        log.info(
            "%s: sliding window %d < max_position_embeddings %d: block_size %d", model_type, window, max_pos, window
        )
        return int(window)
    return max_pos


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich, arXiv 1910.07467), computed in float32 as the reference does."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE rotation tables for the given positions, in the half-split layout Llama checkpoints use.

    Args:
        positions: (T,) int64 absolute positions, or (B, T) for packed rows.
        head_dim: size of one head (even).
        theta: the RoPE base.
        dtype: dtype of the returned tables (the activations').

    Returns:
        ``(cos, sin)``, each (..., T, head_dim): frequencies computed in float32, repeated for both halves.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))  # (hs/2,)
    freqs = positions.float().unsqueeze(-1) * inv_freq  # (..., T, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hs)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, h, T, hs) queries or keys by position: x*cos + rotate_half(x)*sin."""
    half = x.size(-1) // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # (B, h, T, hs)
    return x * cos + rotated * sin


class Attention(nn.Module):
    """Grouped-query causal self-attention with RoPE."""

    def __init__(self, cfg: HFLlamaConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.q_proj = nn.Linear(cfg.n_embd, cfg.n_head * cfg.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.n_embd, cfg.n_kv_head * cfg.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=cfg.o_bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: KVCache | None,
        layer: int,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        hs = self.head_dim
        q = self.q_proj(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, self.n_kv_head, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.v_proj(x).view(B, T, self.n_kv_head, hs).transpose(1, 2)  # (B, nkv, T, hs)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        past = 0
        if kv_cache is not None:
            past = kv_cache.pos
            k, v = kv_cache.update(layer, k, v)  # (B, nkv, past+T, hs)
            k, v = k.to(q.dtype), v.to(q.dtype)
        y = causal_attention(q, k, v, past, attn_mask=attn_mask)  # (B, nh, T, hs)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * hs))  # (B, T, C)


class MLP(nn.Module):
    """SwiGLU: down(act(gate(x)) * up(x))."""

    def __init__(self, cfg: HFLlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.n_embd, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.n_embd, bias=cfg.mlp_bias)
        self.act = activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: HFLlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.n_embd, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.n_embd, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: KVCache | None,
        layer: int,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv_cache, layer, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class HFLlama(GenerateMixin, nn.Module):
    """Llama / Mistral / Qwen2 causal language model with a checkpoint's weights.

    Args:
        cfg: the checkpoint's shape (``HFLlamaConfig.from_hf``).

    Example:
        >>> cfg = HFLlamaConfig("llama", vocab_size=50, block_size=16, n_layer=1, n_head=4, n_kv_head=2,
        ...                     n_embd=16, head_dim=4, intermediate_size=32)
        >>> m = HFLlama(cfg)
        >>> tuple(m.lm_head(m.hidden_states(torch.zeros(1, 4, dtype=torch.long))).shape)
        (1, 4, 50)
    """

    def __init__(self, cfg: HFLlamaConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = nn.ModuleDict(
            dict(
                embed_tokens=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                layers=nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.n_layer)]),
                norm=RMSNorm(cfg.n_embd, cfg.rms_norm_eps),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the embedding with the head when the checkpoint says so (``tie_word_embeddings``)."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def hidden_states(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """Final hidden states after the last RMSNorm.

        Args:
            idx: token ids (B, T), int64; T + positions already in ``kv_cache`` <= block_size.
            kv_cache: when given, ``idx`` continues the cached sequence and the cache is advanced.

        Returns:
            (B, T, n_embd) hidden states.
        """
        T = idx.size(1)
        start = kv_cache.pos if kv_cache is not None else 0
        check_sequence_length(start + T, self.config.block_size)
        x = self.model.embed_tokens(idx)  # (B, T, C)
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        cos, sin = rope_cos_sin(pos, self.config.head_dim, self.config.rope_theta, x.dtype)  # (T, hs) each
        for layer, block in enumerate(self.model.layers):
            x = block(x, cos, sin, kv_cache, layer)
        if kv_cache is not None:
            kv_cache.pos += T
        return self.model.norm(x)  # (B, T, C)

    def packed_hidden_states(self, idx: torch.Tensor, positions: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states of packed rows, as ``model.gpt.GPT.packed_hidden_states`` (RoPE per token position)."""
        from model.scoring import check_positions

        check_positions(positions, self.config.block_size)
        x = self.model.embed_tokens(idx)  # (B, T, C)
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta, x.dtype)  # (B, T, hs)
        cos, sin, mask = cos.unsqueeze(1), sin.unsqueeze(1), attn_mask.unsqueeze(1)  # broadcast over heads
        for block in self.model.layers:
            x = block(x, cos, sin, None, 0, mask)
        return self.model.norm(x)  # (B, T, C)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size) of ``idx`` (B, T)."""
        return self.lm_head(self.hidden_states(idx))

    def new_kv_cache(self, batch_size: int, capacity: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        """An empty cache for ``batch_size`` rows and up to ``capacity`` positions (key/value heads only)."""
        c = self.config
        return KVCache(c.n_layer, batch_size, c.n_kv_head, c.head_dim, capacity, device, dtype)

    @classmethod
    def from_weights(
        cls, cfg: HFLlamaConfig, reader: WeightReader, dtype: torch.dtype, device: torch.device | str
    ) -> HFLlama:
        """Build the model and load a checkpoint into it (checked before anything is allocated).

        Args:
            cfg: the checkpoint's shape.
            reader: its open safetensors files.
            dtype: parameter dtype.
            device: where the model lives.

        Returns:
            The model in eval mode.

        Raises:
            HFFolderError: missing, unexpected or wrongly shaped tensors.
        """
        with torch.device("meta"):
            model = cls(cfg)
        ignorable = IGNORABLE + ((r"lm_head\.weight",) if cfg.tie_word_embeddings else ())
        fill_parameters(model, reader, lambda name: name, lambda name: False, ignorable, dtype, device)
        return model.eval()
