"""GPT-2 (``model_type`` ``gpt2``) from a Hugging Face folder, in plain PyTorch.

Radford et al. 2019: learned position embeddings, pre-norm blocks, GELU MLP, head tied to the token
embedding. The checkpoint stores its projections as ``Conv1D`` weights of shape (in, out); they are
transposed on load into ``nn.Linear`` (out, in). Module names match the checkpoint keys
(``transformer.h.0.attn.c_attn``), so ``model.state_dict()`` reads like the folder.

The model has the duck-typed interface of ``model.gpt.GPT`` that model/scoring.py drives:
``hidden_states(idx, kv_cache)``, ``lm_head(h)``, ``config.block_size`` and ``generate(...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from model.decoding import GenerateMixin
from model.hf_common import KVCache, activation, causal_attention, check_sequence_length, fill_parameters
from model.hf_folder import HFFolderError, WeightReader

# checkpoint keys that carry no weights: old transformers saved the causal mask as buffers
IGNORABLE = (r"(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)", r"lm_head\.weight")


@dataclass(frozen=True)
class HFGPT2Config:
    """Shape of a GPT-2 checkpoint, from its config.json.

    Attributes:
        vocab_size: rows of the token embedding (and of the tied head).
        block_size: context length (``n_positions``: learned positions exist for this many tokens).
        n_layer: blocks.
        n_head: attention heads.
        n_embd: model width.
        n_inner: MLP width (``n_inner``, 4 * n_embd when null).
        activation: ``activation_function`` (``gelu_new`` is GPT-2's tanh-approximate GELU).
        layer_norm_eps: LayerNorm epsilon.
        attn_scale_by_head: divide q.k by sqrt(head size) (``scale_attn_weights``).
        attn_scale_by_layer: also divide by layer index + 1 (``scale_attn_by_inverse_layer_idx``).
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    n_inner: int
    activation: str = "gelu_new"
    layer_norm_eps: float = 1e-5
    attn_scale_by_head: bool = True
    attn_scale_by_layer: bool = False

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> HFGPT2Config:
        """Read config.json of a ``gpt2`` checkpoint.

        Args:
            cfg: parsed config.json.

        Returns:
            The config.

        Raises:
            HFFolderError: for options we do not implement (cross-attention) or missing shape keys.
        """
        if cfg.get("add_cross_attention"):
            raise HFFolderError("GPT-2 with add_cross_attention=true (an encoder-decoder part) is not supported")
        try:
            n_embd, n_head = int(cfg["n_embd"]), int(cfg["n_head"])
            out = cls(
                vocab_size=int(cfg["vocab_size"]),
                block_size=int(cfg["n_positions"]),
                n_layer=int(cfg["n_layer"]),
                n_head=n_head,
                n_embd=n_embd,
                n_inner=int(cfg.get("n_inner") or 4 * n_embd),
                activation=cfg.get("activation_function", "gelu_new"),
                layer_norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
                attn_scale_by_head=bool(cfg.get("scale_attn_weights", True)),
                attn_scale_by_layer=bool(cfg.get("scale_attn_by_inverse_layer_idx", False)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise HFFolderError(f"GPT-2 config.json lacks or mangles a shape key: {e}") from e
        if n_embd % n_head:
            raise HFFolderError(f"GPT-2 config: n_embd={n_embd} is not a multiple of n_head={n_head}")
        activation(out.activation)  # refuse an unknown one now, not at the first forward
        return out


class Attention(nn.Module):
    """Causal self-attention with GPT-2's fused QKV projection."""

    def __init__(self, cfg: HFGPT2Config, layer: int) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        scale = 1.0 / math.sqrt(cfg.n_embd // cfg.n_head) if cfg.attn_scale_by_head else 1.0
        self.scale = scale / (layer + 1) if cfg.attn_scale_by_layer else scale

    def forward(
        self, x: torch.Tensor, kv_cache: KVCache | None, layer: int, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        past = 0
        if kv_cache is not None:
            past = kv_cache.pos
            k, v = kv_cache.update(layer, k, v)  # (B, nh, past+T, hs)
            k, v = k.to(q.dtype), v.to(q.dtype)
        y = causal_attention(q, k, v, past, self.scale, attn_mask)  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class MLP(nn.Module):
    """C -> n_inner -> activation -> C."""

    def __init__(self, cfg: HFGPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.n_inner)
        self.c_proj = nn.Linear(cfg.n_inner, cfg.n_embd)
        self.act = activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, cfg: HFGPT2Config, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self, x: torch.Tensor, kv_cache: KVCache | None, layer: int, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache, layer, attn_mask)
        return x + self.mlp(self.ln_2(x))


class HFGPT2(GenerateMixin, nn.Module):
    """GPT-2 language model with a checkpoint's weights.

    Args:
        cfg: the checkpoint's shape (``HFGPT2Config.from_hf``).

    Example:
        >>> m = HFGPT2(HFGPT2Config(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=8, n_inner=32))
        >>> tuple(m.lm_head(m.hidden_states(torch.zeros(1, 4, dtype=torch.long))).shape)
        (1, 4, 50)
    """

    def __init__(self, cfg: HFGPT2Config) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                h=nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)]),
                ln_f=nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """GPT-2 scores tokens with the embedding matrix (Press & Wolf, arXiv 1608.05859)."""
        self.lm_head.weight = self.transformer.wte.weight

    def hidden_states(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """Final hidden states after ``ln_f``.

        Args:
            idx: token ids (B, T), int64; T + positions already in ``kv_cache`` <= block_size.
            kv_cache: when given, ``idx`` continues the cached sequence and the cache is advanced.

        Returns:
            (B, T, n_embd) hidden states.
        """
        T = idx.size(1)
        start = kv_cache.pos if kv_cache is not None else 0
        check_sequence_length(start + T, self.config.block_size)
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, layer)
        if kv_cache is not None:
            kv_cache.pos += T
        return self.transformer.ln_f(x)  # (B, T, C)

    def packed_hidden_states(self, idx: torch.Tensor, positions: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states of packed rows, as ``model.gpt.GPT.packed_hidden_states``."""
        from model.scoring import check_positions

        check_positions(positions, self.config.block_size)
        x = self.transformer.wte(idx) + self.transformer.wpe(positions)  # (B, T, C)
        mask = attn_mask.unsqueeze(1)  # (B, 1, T, T)
        for block in self.transformer.h:
            x = block(x, None, 0, mask)
        return self.transformer.ln_f(x)  # (B, T, C)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size) of ``idx`` (B, T)."""
        return self.lm_head(self.hidden_states(idx))

    def new_kv_cache(self, batch_size: int, capacity: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        """An empty cache for ``batch_size`` rows and up to ``capacity`` positions."""
        c = self.config
        return KVCache(c.n_layer, batch_size, c.n_head, c.n_embd // c.n_head, capacity, device, dtype)

    @classmethod
    def from_weights(
        cls, cfg: HFGPT2Config, reader: WeightReader, dtype: torch.dtype, device: torch.device | str
    ) -> HFGPT2:
        """Build the model and load a checkpoint into it (checked before anything is allocated).

        Args:
            cfg: the checkpoint's shape.
            reader: its open safetensors files. Keys may lack the ``transformer.`` prefix (folders saved
                from ``GPT2Model``, like the original ``gpt2`` upload).
            dtype: parameter dtype.
            device: where the model lives.

        Returns:
            The model in eval mode.

        Raises:
            HFFolderError: missing, unexpected or wrongly shaped tensors.
        """
        with torch.device("meta"):
            model = cls(cfg)
        prefix = "transformer." if "transformer.wte.weight" in reader.keys or "wte.weight" not in reader.keys else ""

        def key_of(name: str) -> str:
            return prefix + name.removeprefix("transformer.")

        def transposed(name: str) -> bool:  # Conv1D stores (in, out)
            return ".h." in f".{name}" and name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))

        fill_parameters(model, reader, key_of, transposed, IGNORABLE, dtype, device)
        return model.eval()
