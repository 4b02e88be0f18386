"""Decoding for every language model inference runs: sampling one token, and the generation loop.

``generate`` drives any model with the ``Decoder`` interface (our GPT, the native GPT-2 and Llama-family
models, the transformers adapter): greedy or sampled decoding with a KV cache while the sequence fits
in ``block_size``, the context cropped to the last ``block_size`` tokens and recomputed every step
beyond it, per-row generators for batch inference, and EOS handling.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F


class Decoder(Protocol):
    """What ``generate`` needs from a model (``GPT``, the native GPT-2 and Llama models, the transformers adapter)."""

    config: object

    def hidden_states(self, idx: torch.Tensor, kv_cache: Any = None) -> torch.Tensor: ...

    def lm_head(self, h: torch.Tensor) -> torch.Tensor: ...

    def new_kv_cache(self, batch_size: int, capacity: int, device: torch.device, dtype: torch.dtype) -> Any: ...


@torch.no_grad()
def generate(
    model: Decoder,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    per_row_seed: bool = False,
) -> torch.Tensor:
    """Continue each row of ``idx`` by up to ``max_new_tokens`` tokens (options as ``GPT.generate``).

    While prompt + new tokens fit in block_size, the KV cache makes each new token cost one position;
    beyond it the context is cropped to the last block_size tokens and recomputed every step.

    Args:
        model: a ``Decoder`` in eval mode.
        idx: prompt token ids (B, T), int64, T >= 1; rows share one length (no padding).
        max_new_tokens: most tokens to add.
        temperature: softmax temperature; 0 means greedy (argmax), ignoring top_k/top_p/seed.
        top_k: keep only the k most likely tokens before sampling; None = all.
        top_p: nucleus sampling threshold in (0, 1]; None = all.
        seed: seeds a private generator so the same call samples the same tokens; None = global RNG.
        eos_id: a row stops after emitting it, later positions are filled with it; generation ends
            when every row has stopped. None = never stop early.
        use_cache: False recomputes the whole context every step (slow; for checking the cache).
        per_row_seed: one generator per row seeded with ``seed``, so a row samples the same tokens
            whatever else is in the batch.

    Returns:
        (B, T + n) token ids, prompt included, with n <= max_new_tokens.
    """
    if idx.dim() != 2 or idx.size(1) < 1:
        raise ValueError(f"idx must be (B, T) with T >= 1, got shape {tuple(idx.shape)}")
    B, bs = idx.size(0), model.config.block_size
    gens: list[torch.Generator | None] = [None]  # one shared generator, or one per row
    if seed is not None and temperature > 0:
        gens = [torch.Generator(device=idx.device).manual_seed(seed) for _ in range(B if per_row_seed else 1)]
    done = torch.zeros(B, dtype=torch.bool, device=idx.device)
    cache, out = None, idx
    for _ in range(max_new_tokens):
        if use_cache and out.size(1) <= bs:
            if cache is None:  # prefill with the whole prompt
                dtype = model.lm_head.weight.dtype
                if torch.is_autocast_enabled(idx.device.type):
                    dtype = torch.get_autocast_dtype(idx.device.type)
                capacity = min(bs, idx.size(1) + max_new_tokens)
                cache = model.new_kv_cache(B, capacity, idx.device, dtype)
                h = model.hidden_states(out, cache)
            else:
                h = model.hidden_states(out[:, -1:], cache)
        else:
            h = model.hidden_states(out[:, -bs:])
        logits = model.lm_head(h[:, -1, :]).float()  # (B, V)
        if len(gens) == 1:
            nxt = sample_next_token(logits, temperature, top_k, top_p, gens[0])  # (B,)
        else:
            nxt = torch.cat(
                [sample_next_token(logits[i : i + 1], temperature, top_k, top_p, g) for i, g in enumerate(gens)]
            )
        if eos_id is not None:
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            done |= nxt == eos_id
        out = torch.cat([out, nxt.unsqueeze(1)], dim=1)  # (B, T + 1)
        if eos_id is not None and bool(done.all()):
            break
    return out


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row from next-token logits.

    Args:
        logits: (B, V) unnormalised scores.
        temperature: > 0 scales logits before sampling; 0 = argmax (greedy).
        top_k: keep the k highest logits; None or >= V keeps all.
        top_p: keep the smallest top set whose probability mass reaches top_p, in (0, 1]; None keeps all.
        generator: RNG for ``torch.multinomial``; None = the global one.

    Returns:
        (B,) int64 token ids.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(sorted_logits, dim=-1)
        # drop a token when the mass strictly before it already reaches top_p (the top one always stays)
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


class GenerateMixin:
    """``generate`` as a method of a ``Decoder`` (our GPT, the native GPT-2 and Llama models, the
    transformers adapter): one signature and one loop for all of them."""

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        eos_id: int | None = None,
        use_cache: bool = True,
        per_row_seed: bool = False,
    ) -> torch.Tensor:
        """Continue each row of ``idx`` by up to ``max_new_tokens`` tokens. Call ``model.eval()`` first.

        While the sequence fits in block_size the KV cache makes each new token cost one position;
        beyond it the context is cropped to the last block_size tokens and recomputed every step
        (learned absolute positions shift, so cached keys cannot be reused).

        Args:
            idx: prompt token ids (B, T), int64, T >= 1; rows share one length (no padding).
            max_new_tokens: most tokens to add.
            temperature: softmax temperature; 0 means greedy (argmax), ignoring top_k/top_p/seed.
            top_k: keep only the k most likely tokens before sampling; None = all.
            top_p: nucleus sampling, keep the smallest set with probability >= top_p; None = all.
            seed: seeds a private generator so the same call samples the same tokens; None = global RNG.
            eos_id: a row stops after emitting it, later positions are filled with it; generation ends
                when every row has stopped. None = never stop early.
            use_cache: False recomputes the whole context every step (slow; for checking the cache).
            per_row_seed: give every row its own generator seeded with ``seed``, so a row samples the
                same tokens as it would alone, whatever else is in the batch (batch inference needs
                this: retries and new rows never change old outputs).

        Returns:
            (B, T + n) token ids, prompt included, with n <= max_new_tokens.
        """
        return generate(self, idx, max_new_tokens, temperature, top_k, top_p, seed, eos_id, use_cache, per_row_seed)
