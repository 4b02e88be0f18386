"""A tiny random GPT artifact for the inference tests (2 layers, 32 dims, block 32, char-level tokenizer)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DATA

BLOCK = 32


def corpus_text() -> str:
    """The text whose characters make the tokenizer's vocabulary (tinyshakespeare's head)."""
    return (DATA / "tinyshakespeare_head.txt").read_text(encoding="utf-8")


def save_tiny_artifact(out_dir: Path, seed: int = 0, vocab_text: str = "") -> str:
    """Save a random tiny GPT + char tokenizer with ``save_artifact``; return its hash.

    The tokenizer knows the characters of tinyshakespeare's head plus those of ``vocab_text``.
    """
    import torch

    from model.artifact import save_artifact
    from model.config import GPTConfig
    from model.gpt import GPT
    from model.tokenizer import char_level_tokenizer

    tok = char_level_tokenizer(corpus_text() + vocab_text)
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=BLOCK)
    return save_artifact(out_dir, GPT(cfg), tok, lineage={"model_name": f"tiny-{seed}"})


def mixed_texts() -> list[str | None]:
    """Texts of many lengths (1 to 4x block_size characters), a null, empty strings, a character
    the tokenizer does not know, in a scrambled length order."""
    text = corpus_text()
    out: list[str | None] = []
    for i, n in enumerate([5, 1, 140, 31, 32, 33, 0, 64, 7, 90, 17, 2, 128, 45, 3, 0]):
        out.append(text[i * 37 : i * 37 + n])
    out[6] = None
    out.insert(9, "caf\u00e9 \u2603")  # not in the char vocabulary
    return out
