"""A GPT-2 style decoder-only transformer in plain PyTorch (scoring and embedding over it: model/scoring.py).

Architecture as in GPT-2 (Radford et al. 2019) and nanoGPT: learned position embeddings, pre-norm
blocks, GELU MLP, tied input/output embeddings. Attention uses ``F.scaled_dot_product_attention``
(flash / memory-efficient kernels where available). A ``KVCache`` makes generation O(T) per token;
``packed_hidden_states`` reads several sequences that share a prefix in one row (shared-context scoring).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.config import GPTConfig
from model.decoding import GenerateMixin

log = logging.getLogger(__name__)


class KVCache:
    """Preallocated keys and values of every layer, filled as tokens are decoded.

    Args:
        cfg: the model's config (layers, heads, head size, block_size).
        batch_size: rows decoded together (B).
        device: where the buffers live.
        dtype: buffer dtype; match the model's activations (float32, or bfloat16 under autocast).
    """

    def __init__(self, cfg: GPTConfig, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> None:
        hs = cfg.n_embd // cfg.n_head
        shape = (cfg.n_layer, batch_size, cfg.n_head, cfg.block_size, hs)  # (L, B, nh, block_size, hs)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0  # positions already filled (the next token's position)
        self.capacity = cfg.block_size

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys/values (B, nh, T, hs) of ``layer``; return all of them so far (B, nh, pos+T, hs)."""
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos : end] = k.to(self.k.dtype)
        self.v[layer, :, :, self.pos : end] = v.to(self.v.dtype)
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a fused QKV projection."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0, attn_mask: torch.Tensor | None = None
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
        mask, causal = None, True
        if attn_mask is not None:  # packed rows (see GPT.packed_hidden_states): the caller's (B, 1, T, T) mask
            mask, causal = attn_mask, False
        elif past > 0:
            causal = False
            if T > 1:  # new query i (absolute position past+i) sees keys 0..past+i
                rows = torch.arange(T, device=x.device).unsqueeze(1) + past
                mask = torch.arange(past + T, device=x.device).unsqueeze(0) <= rows  # (T, past+T)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU -> C."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(
        self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache, layer, attn_mask)
        return x + self.mlp(self.ln_2(x))


class GPT(GenerateMixin, nn.Module):
    """GPT-2 style language model.

    Args:
        cfg: model shape. Module names match GPT-2 checkpoint keys (``transformer.h.0.attn.c_attn``).

    Example:
        >>> m = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32))
        >>> logits, loss = m(torch.zeros(1, 8, dtype=torch.long))
        >>> tuple(logits.shape), loss is None
        ((1, 8, 65), True)
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
                ln_f=nn.LayerNorm(cfg.n_embd, bias=cfg.bias),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        # Weight tying (Press & Wolf, arXiv 1608.05859): one matrix embeds tokens and scores them.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2: scale residual output projections by 1/sqrt(2 * n_layer), since each block adds two.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; ``non_embedding`` leaves out position embeddings (token ones are tied to lm_head)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def hidden_states(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """Final-layer hidden states after the last LayerNorm.

        Args:
            idx: token ids (B, T), int64; T + positions already in ``kv_cache`` <= block_size.
            kv_cache: when given, ``idx`` continues the cached sequence and the cache is advanced.

        Returns:
            (B, T, n_embd) hidden states.
        """
        B, T = idx.shape
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens exceeds block_size={self.config.block_size}; "
                "truncate or chunk the input"
            )
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, layer)
        if kv_cache is not None:
            kv_cache.pos += T
        return self.transformer.ln_f(x)  # (B, T, C)

    def packed_hidden_states(self, idx: torch.Tensor, positions: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """Final hidden states of rows that each hold several sequences side by side (``model.scoring.pack_shared``).

        Args:
            idx: token ids (B, T), int64.
            positions: (B, T) int64 position of each token within its own sequence, < block_size.
            attn_mask: (B, T, T) bool, True where query i may read key j (``model.scoring.packed_attention_mask``;
                every query row needs at least one True).

        Returns:
            (B, T, n_embd) hidden states; a token's equal its sequence's unpacked ones up to float rounding.
        """
        from model.scoring import check_positions

        check_positions(positions, self.config.block_size)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))  # (B, T, C)
        mask = attn_mask.unsqueeze(1)  # (B, 1, T, T): the same for every head
        for block in self.transformer.h:
            x = block(x, None, 0, mask)
        return self.transformer.ln_f(x)  # (B, T, C)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, kv_cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits for every position, and the mean cross-entropy when targets are given.

        Args:
            idx: token ids (B, T), int64, T <= block_size.
            targets: next-token ids (B, T), int64; -1 marks positions left out of the loss. None = no loss.
            kv_cache: optional cache that ``idx`` continues (see ``hidden_states``).

        Returns:
            ``(logits, loss)``: logits (B, T, vocab_size); loss is a scalar in nats per token, or None.
        """
        x = self.hidden_states(idx, kv_cache)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float], device_type: str
    ) -> torch.optim.AdamW:
        """AdamW that decays matrices (embeddings, Linear weights) but not biases or LayerNorm weights.

        Args:
            weight_decay: decoupled decay applied to >=2-D parameters.
            learning_rate: initial learning rate (the trainer overwrites it every step).
            betas: Adam (beta1, beta2).
            device_type: ``"cuda"`` and ``"cpu"`` select the fused kernel (one pass over all tensors; on
                the CPU baby GPT it saves about 1.2 ms of a 52 ms step); anything else uses the default one.

        Returns:
            The optimizer, with two parameter groups (decayed first).
        """
        params = [p for p in self.parameters() if p.requires_grad]  # tied weight appears once
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        log.info(
            "optimizer: %d decayed tensors (%d params), %d undecayed (%d params)",
            len(decay),
            sum(p.numel() for p in decay),
            len(no_decay),
            sum(p.numel() for p in no_decay),
        )
        extra = {"fused": True} if device_type in ("cuda", "cpu") else {}  # fused CPU AdamW needs torch >= 2.4
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **extra)

    def new_kv_cache(self, batch_size: int, capacity: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        """A cache for ``model.decoding.generate``: always block_size positions (``capacity`` is not needed)."""
        return KVCache(self.config, batch_size, device, dtype)


__all__ = ["GPT", "KVCache"]
