"""Inference over a language model at the torch level: per-token log-probs, mean-pooled embeddings,
right padding and batched decoding. What the inference task cores (``udfs.tasks``) call per micro-batch.

Model inputs are right-padded (B, T) id tensors with a (B, T) mask (1 = real token); padding on the
right never changes the results for real tokens, because attention is causal. The model is any module
with ``GPT``'s inference interface: ``hidden_states(idx)``, ``lm_head``, ``generate(...)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from model.gpt import GPT


def _check_mask(idx: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A (B, T) bool mask of real tokens; padding must be on the right (causal attention then ignores it)."""
    if mask is None:
        return torch.ones_like(idx, dtype=torch.bool)
    if mask.shape != idx.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal idx shape {tuple(idx.shape)}")
    mask = mask.to(torch.bool)
    if mask.size(1) > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError("padding must be on the right: every mask row must be 1...1 0...0")
    return mask


HEAD_CHUNK_TOKENS = 2048  # positions per lm_head + logsumexp chunk: (chunk, V) float32 logits stay cache-sized


@torch.no_grad()
def token_logprobs(
    model: GPT, idx: torch.Tensor, mask: torch.Tensor | None = None, chunk_tokens: int = HEAD_CHUNK_TOKENS
) -> torch.Tensor:
    """Log-probability the model gives each actual next token (for scoring text).

    Position t scores token t+1 given tokens 0..t, so the first token is never scored: prepend the
    EOS id (GPT-2's document separator) to score a document's first token too.

    Only real positions go through the output layer: the final hidden states of scored positions are
    gathered (padding skipped), then ``lm_head`` and a log-sum-exp run over ``chunk_tokens`` of them at
    a time. ``log p(y) = logit_y - logsumexp(logits)`` is what ``log_softmax`` computes, without ever
    materialising a (B, T, V) tensor (512 MB for 32 x 1024 positions and 4096 ids).

    Args:
        model: a GPT in eval mode.
        idx: (B, T) int64 token ids, right-padded, T <= block_size (chunk longer texts).
        mask: (B, T) 1 for real tokens, 0 for right padding; None = no padding.
        chunk_tokens: scored positions per output-layer chunk (bounds memory; >= 1).

    Returns:
        (B, T-1) float32 log-probs (natural log, <= 0); 0.0 where the scored token is padding.

    Example:
        >>> lp = token_logprobs(model, idx, mask)          # (B, T-1)
        >>> summarize_logprobs(lp, mask[:, 1:], n_bytes)   # sums, mean NLL, perplexity, bits/byte
    """
    mask = _check_mask(idx, mask)
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    target_mask = mask[:, 1:]  # (B, T-1): position t is scored when token t+1 is real
    out = torch.zeros(target_mask.shape, dtype=torch.float32, device=idx.device)  # (B, T-1)
    if out.numel() == 0:
        return out
    h = model.hidden_states(idx)[:, :-1][target_mask]  # (N, C), scored positions only
    targets = idx[:, 1:][target_mask]  # (N,)
    lp = torch.empty(targets.shape, dtype=torch.float32, device=idx.device)  # (N,)
    for s in range(0, targets.numel(), chunk_tokens):
        logits = model.lm_head(h[s : s + chunk_tokens]).float()  # (n, V)
        picked = logits.gather(-1, targets[s : s + chunk_tokens].unsqueeze(-1)).squeeze(-1)  # (n,)
        lp[s : s + chunk_tokens] = picked - torch.logsumexp(logits, dim=-1)
    out[target_mask] = lp
    return out


def summarize_logprobs(
    logprobs: torch.Tensor, target_mask: torch.Tensor | None = None, n_bytes: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Per-row scores from ``token_logprobs``.

    Args:
        logprobs: (B, N) log-probs of scored tokens, 0 at padding.
        target_mask: (B, N) 1 where a token was scored (``mask[:, 1:]``); None = all.
        n_bytes: (B,) UTF-8 bytes of the scored text, for bits per byte; None leaves that key out.

    Returns:
        Dict of (B,) float64 tensors: ``sum_logprob`` (nats), ``n_tokens``, ``mean_nll`` (nats/token),
        ``perplexity`` (exp of mean_nll), and ``bits_per_byte`` when n_bytes is given. Rows with no
        scored token get NaN means.
    """
    lp = logprobs.double()
    m = torch.ones_like(lp, dtype=torch.bool) if target_mask is None else target_mask.to(torch.bool)
    total = (lp * m).sum(dim=1)  # (B,)
    n = m.sum(dim=1).double()  # (B,)
    mean_nll = torch.where(n > 0, -total / n.clamp(min=1), torch.full_like(total, float("nan")))
    out = {"sum_logprob": total, "n_tokens": n, "mean_nll": mean_nll, "perplexity": torch.exp(mean_nll)}
    if n_bytes is not None:
        nb = n_bytes.double()
        out["bits_per_byte"] = torch.where(
            nb > 0, -total / nb.clamp(min=1) / math.log(2), torch.full_like(nb, float("nan"))
        )
    return out


@torch.no_grad()
def mean_pooled_embeddings(model: GPT, idx: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Text embeddings: the mean of the final hidden states over real (unpadded) tokens.

    Args:
        model: a GPT in eval mode.
        idx: (B, T) int64 token ids, right-padded, T <= block_size.
        mask: (B, T) 1 for real tokens, 0 for right padding; None = no padding.

    Returns:
        (B, n_embd) float32 embeddings (not normalised; L2-normalise for cosine similarity).
    """
    mask = _check_mask(idx, mask)
    h = model.hidden_states(idx).float()  # (B, T, C)
    w = mask.unsqueeze(-1).float()  # (B, T, 1)
    return (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)  # (B, C)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's parameters."""
    return next(model.parameters()).device


def pad_right(seqs: Sequence[np.ndarray], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) int64 ids and bool mask, right-padded to the longest sequence (the layout every function here takes).

    Args:
        seqs: token id arrays, any lengths >= 1.
        pad_id: id written in the padding (never attended to: attention is causal, padding is on the right).
        device: where the tensors go.
    """
    B, T = len(seqs), max(len(s) for s in seqs)
    idx = np.full((B, T), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((B, T), dtype=bool)  # (B, T)
    for r, s in enumerate(seqs):
        idx[r, : len(s)] = s
        mask[r, : len(s)] = True
    return torch.from_numpy(idx).to(device), torch.from_numpy(mask).to(device)


def check_positions(positions: torch.Tensor, block_size: int) -> None:
    """Refuse packed positions the position table (or the model's context) does not cover."""
    if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= block_size):
        raise ValueError(f"positions must lie in [0, {block_size}); got {int(positions.min())}..{int(positions.max())}")


def packed_attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """Attention mask of packed rows: a shared prefix (segment 0) followed by sequences 1, 2, ... that all continue it.

    A token reads the tokens before it in its row that belong to the prefix or to its own segment, so
    each sequence sees exactly ``prefix + itself``, as if it were alone. Padding (segment -1) reads
    only itself, which keeps its softmax finite; no real token reads padding.

    Args:
        segments: (B, T) int64: 0 = shared prefix, s >= 1 = sequence s, -1 = padding.

    Returns:
        (B, T, T) bool, True where query i may read key j.

    Example:
        >>> packed_attention_mask(torch.tensor([[0, 0, 1, 2]]))[0].int().tolist()
        [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1]]
    """
    T = segments.size(1)
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()  # (T, T)
    query, key = segments.unsqueeze(2), segments.unsqueeze(1)  # (B, T, 1), (B, 1, T)
    mask = causal & ((key == 0) | (key == query)) & (key >= 0) & (query >= 0)  # (B, T, T)
    return mask | torch.eye(T, dtype=torch.bool, device=segments.device)


def decode_batch(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """``GPT.generate`` with one random generator per row (``per_row_seed``), so a row's sample does not
    depend on its batch.

    Same KV-cache and cropping behaviour as ``GPT.generate``; with a ``seed`` each row draws from its
    own generator seeded with it, so a row gives the same tokens as ``model.generate(row, seed=seed)``
    alone, whatever else is in the micro-batch (retries and new rows never change old outputs).

    Args:
        model: a GPT in eval mode.
        idx: (B, T) prompt ids, int64, T >= 1, all rows the same length (no padding).
        max_new_tokens: most tokens to add (>= 0).
        temperature: 0 = greedy; else softmax temperature.
        top_k: keep the k most likely tokens; None = all.
        top_p: nucleus mass in (0, 1]; None = all.
        seed: per-row generator seed; None = torch's global RNG.
        eos_id: a row stops after emitting it (later positions hold it); None = never stop early.

    Returns:
        (B, T + n) ids, prompt included, n <= max_new_tokens.
    """
    return model.generate(
        idx,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        eos_id=eos_id,
        per_row_seed=True,
    )
