"""One entry point for native Hugging Face models: ``load_hf_model(path) -> (model, tokenizer, hash)``.

Native architectures (``NATIVE_MODEL_TYPES``): ``gpt2`` (model/hf_gpt2.py) and the Llama family
``llama``, ``mistral``, ``qwen2`` (model/hf_llama.py). Everything is checked before weights are read:
the folder's files (model/hf_folder.py), the config, the tokenizer against the embedding matrix, and
every tensor's name, shape and dtype from the safetensors headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from model.hf_folder import (
    HFFolderError,
    HFTokenizer,
    WeightReader,
    checked_folder_hash,
    load_hf_tokenizer,
    read_hf_folder,
)
from model.hf_gpt2 import HFGPT2, HFGPT2Config
from model.hf_llama import MODEL_TYPES as LLAMA_TYPES
from model.hf_llama import HFLlama, HFLlamaConfig

log = logging.getLogger(__name__)

# model_type -> (config reader, model class)
_NATIVE: dict[str, tuple[Callable[[dict[str, Any]], Any], Any]] = {
    "gpt2": (HFGPT2Config.from_hf, HFGPT2),
    **{t: (HFLlamaConfig.from_hf, HFLlama) for t in LLAMA_TYPES},
}
NATIVE_MODEL_TYPES = tuple(sorted(_NATIVE))


def load_hf_model(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    expected_hash: str | None = None,
) -> tuple[nn.Module, HFTokenizer, str]:
    """Load a local Hugging Face folder into a native model, refusing anything it cannot run exactly.

    The model has ``model.gpt.GPT``'s inference interface (``hidden_states``, ``lm_head``,
    ``config.block_size``, ``generate``), so ``model.scoring.token_logprobs`` and
    ``mean_pooled_embeddings`` work on it unchanged.

    Args:
        path: the folder (config.json, model.safetensors or a sharded index, tokenizer.json).
        dtype: parameter dtype (``torch.float32``, ``torch.bfloat16``, ``torch.float16``); weights stored
            in any of these are cast on load.
        device: where the model lives (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        expected_hash: refuse the folder unless ``folder_hash`` equals this hex digest (case and
            surrounding spaces ignored), checked before the weights are parsed; None = any.

    Returns:
        ``(model, tokenizer, folder_hash)``: the model in eval mode, its ``HFTokenizer`` (special ids
        from the checkpoint), and the folder's sha256 (see model/hf_folder.py for the recipe).

    Raises:
        HFFolderError: missing files, pickle-only weights (with the conversion command), a model_type
            without a native implementation, unsupported options, shape or vocabulary mismatches, or a
            hash that is not ``expected_hash``.

    Example:
        >>> model, tok, digest = load_hf_model("/models/SmolLM-135M")       # doctest: +SKIP
        >>> ids = torch.tensor([[tok.prefix_id] + tok.encode("Hello world")])  # doctest: +SKIP
        >>> token_logprobs(model, ids).sum()                                 # doctest: +SKIP
    """
    folder = read_hf_folder(path)
    if folder.model_type not in _NATIVE:
        raise HFFolderError(
            f"{folder.root}: model_type {folder.model_type!r} has no native implementation "
            f"(native: {', '.join(NATIVE_MODEL_TYPES)})"
        )
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise HFFolderError(f"dtype {dtype} is not supported; use torch.float32, torch.bfloat16 or torch.float16")
    digest = checked_folder_hash(folder, expected_hash)
    read_config, model_cls = _NATIVE[folder.model_type]
    cfg = read_config(folder.config)
    tokenizer = load_hf_tokenizer(folder, cfg.vocab_size)
    with WeightReader(folder) as reader:
        model = model_cls.from_weights(cfg, reader, dtype, device)
    log.info(
        "loaded %s from %s: %d parameters, %s on %s, hash %s",
        folder.model_type,
        folder.root,
        sum(p.numel() for p in model.parameters()),
        dtype,
        device,
        digest[:12],
    )
    return model, tokenizer, digest
