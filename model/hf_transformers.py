"""Any other Hugging Face architecture, through ``transformers`` (the optional extra ``lakelm[hf]``).

Folders whose ``model_type`` has no native implementation (model/hf_load.py) load here, from the local
folder only (``local_files_only=True``: nothing is downloaded) and from safetensors only (the folder
checks of ``model.hf_folder.read_hf_folder`` refuse pickle weights before transformers is called).
Two adapters give them the inference interface the task cores (``udfs.tasks``) drive:

- ``TransformersCausalLM`` wraps ``AutoModelForCausalLM``: ``hidden_states(idx, kv_cache=None)`` is the
  base model's last hidden state, the exact tensor the checkpoint's head reads (after the final norm);
  ``lm_head`` is the model's output embeddings; ``generate`` is ``model.decoding.generate`` with
  transformers' own ``past_key_values`` as the cache. Score, embed (mean) and generate all work.
- ``TransformersEncoder`` wraps ``AutoModel`` for bidirectional encoders (BERT, MiniLM, BGE, E5:
  ``bert``, ``roberta``, ``xlm-roberta`` ...), for embed only: ``embed(idx, mask, pooling)`` pools the
  last hidden state by the attention mask (``mean``) or takes the first token (``cls``), as
  sentence-transformers does. It has no ``lm_head`` and no ``generate``: score and generate are refused.

Special tokens of encoders: the tokenizer encodes texts without special tokens (as for every model,
``HFTokenizer``), and the encoder adds its tokenizer.json post-processor's specials itself around each
row (``[CLS] text [SEP]`` for BERT, ``<s> text </s>`` for RoBERTa), after truncation, so a truncated
text still ends with ``[SEP]``. ``config.block_size`` of an encoder counts text tokens only (the
position table less the specials).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model.decoding import GenerateMixin
from model.hf_common import check_sequence_length
from model.hf_folder import (
    HFFolder,
    HFFolderError,
    HFTokenizer,
    WeightReader,
    checked_folder_hash,
    load_hf_tokenizer,
    read_hf_folder,
)

log = logging.getLogger(__name__)

CAUSAL_LM, ENCODER = "causal_lm", "encoder"  # Artifact.metadata["kind"]
INSTALL_HINT = "pip install lakelm[hf]"
# bidirectional encoders embedded with AutoModel; their configs also map to a *LMHeadModel, so model_type
# alone cannot tell them from a causal LM
ENCODER_MODEL_TYPES = (
    "bert",
    "camembert",
    "deberta",
    "deberta-v2",
    "distilbert",
    "electra",
    "mpnet",
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
)
# RoBERTa-style position ids start after the padding index, so padding_idx + 1 rows of the table are unused
_OFFSET_POSITIONS = ("camembert", "roberta", "xlm-roberta", "xlm-roberta-xl")
POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class TransformersConfig:
    """What the task cores read from a transformers-backed model's config.

    Attributes:
        model_type: config.json ``model_type``.
        kind: ``"causal_lm"`` or ``"encoder"``.
        block_size: most tokens per forward pass (an encoder's counts text tokens, specials excluded).
        vocab_size: rows of the token embedding.
        n_embd: hidden size (the embedding width).
    """

    model_type: str
    kind: str
    block_size: int
    vocab_size: int
    n_embd: int


def require_transformers() -> Any:
    """The ``transformers`` module.

    Raises:
        HFFolderError: when it is not installed, with the command that installs it.
    """
    try:
        import transformers
    except ImportError as e:
        raise HFFolderError(
            f"this model_type runs through the transformers library, which is not installed: {INSTALL_HINT}"
        ) from e
    return transformers


def model_kind(config: dict[str, Any]) -> str:
    """Whether a config.json describes a causal LM or an encoder.

    A ``*ForCausalLM`` / ``*LMHeadModel`` architecture is a causal LM; else a model_type in
    ``ENCODER_MODEL_TYPES`` is an encoder; else a model_type transformers maps to a causal LM is one.

    Args:
        config: parsed config.json.

    Returns:
        ``"causal_lm"`` or ``"encoder"``.

    Raises:
        HFFolderError: neither (e.g. a vision or seq2seq model), or transformers is missing.
    """
    model_type = config.get("model_type")
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return CAUSAL_LM
    if model_type in ENCODER_MODEL_TYPES:
        return ENCODER
    require_transformers()
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return CAUSAL_LM
    raise HFFolderError(
        f"model_type {model_type!r} (architectures {archs}) is neither a causal language model nor a text "
        f"encoder we embed with (encoders: {', '.join(ENCODER_MODEL_TYPES)})"
    )


def _hf_config(folder: HFFolder) -> Any:
    transformers = require_transformers()
    try:
        return transformers.AutoConfig.from_pretrained(str(folder.root), local_files_only=True)
    except (ValueError, KeyError, OSError) as e:
        raise HFFolderError(
            f"{folder.root}: model_type {folder.model_type!r} has no native implementation and transformers "
            f"{transformers.__version__} cannot read its config either: {e}"
        ) from e


def _positions(cfg: Any, folder: HFFolder) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            if cfg.model_type in _OFFSET_POSITIONS:
                value -= (getattr(cfg, "pad_token_id", None) or 0) + 1
            return value
    raise HFFolderError(f"{folder.root}: config.json gives no context length (max_position_embeddings or n_positions)")


def _check_head(cfg: Any, folder: HFFolder) -> None:
    """Refuse heads that transform logits after the output embeddings (``lm_head(h)`` would not be the logits)."""
    if getattr(cfg, "final_logit_softcapping", None) is not None or getattr(cfg, "logit_scale", None) not in (
        None,
        1,
        1.0,
    ):
        raise HFFolderError(
            f"{folder.root}: model_type {folder.model_type!r} scales or soft-caps its logits after the output "
            "layer, which lakelm's scoring does not apply; it is not supported"
        )


def _specials(tok: HFTokenizer) -> tuple[list[int], list[int]]:
    """Ids the tokenizer.json post-processor puts before and after a single text ([CLS], [SEP])."""
    enc = tok.backend.encode("a", add_special_tokens=True)
    mask, ids = enc.special_tokens_mask, enc.ids
    head = next((i for i, m in enumerate(mask) if not m), len(mask))
    tail = next((i for i, m in enumerate(reversed(mask)) if not m), 0)
    return ids[:head], ids[len(ids) - tail :]


def _unused_ok(kind: str, name: str) -> bool:
    """Parameters an embedding never reads, so a checkpoint may lack them (BERT's pooler: sentence
    encoders are often saved from a masked-LM head that has none; transformers then initialises it)."""
    return kind == ENCODER and name.startswith("pooler.")


def check_transformers_folder(folder: HFFolder) -> tuple[TransformersConfig, HFTokenizer]:
    """Check a non-native folder without reading its weights: config, kind, tokenizer, on-disk dtypes.

    Tensor names and shapes are checked when transformers loads the weights (`load_transformers_model`),
    not here: transformers renames and merges checkpoint tensors per architecture and version.

    Args:
        folder: from ``read_hf_folder``.

    Returns:
        The model's ``TransformersConfig`` and its tokenizer.

    Raises:
        HFFolderError: transformers is missing or cannot read the config, the model is neither a causal
            LM nor an encoder, its logits are post-processed, the tokenizer does not fit the embedding, or
            a tensor is stored quantised.
    """
    cfg = _hf_config(folder)
    kind = model_kind(folder.config)
    tok = load_hf_tokenizer(folder, cfg.vocab_size)
    block = _positions(cfg, folder)
    if kind == CAUSAL_LM:
        _check_head(cfg, folder)
    else:
        head, tail = _specials(tok)
        block -= len(head) + len(tail)
    with WeightReader(folder) as reader:
        for key in sorted(reader.keys):
            reader.check_dtype(key)
    n_embd = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or getattr(cfg, "d_model", 0)
    return TransformersConfig(folder.model_type, kind, block, cfg.vocab_size, int(n_embd)), tok


class _PastKeyValues:
    """The ``KVCache`` role for ``model.decoding.generate``: transformers' own cache object, filled on first use."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.past: Any = None  # a transformers Cache after the prefill
        self.pos = 0


class TransformersCausalLM(GenerateMixin, nn.Module):
    """An ``AutoModelForCausalLM`` with ``GPT``'s inference interface.

    Args:
        hf: the loaded transformers model (eval mode).
        config: its ``TransformersConfig``.
    """

    kind = CAUSAL_LM

    def __init__(self, hf: nn.Module, config: TransformersConfig) -> None:
        super().__init__()
        self.hf = hf
        self.config = config
        head = hf.get_output_embeddings()  # (V, C) projection the checkpoint's logits come from
        if not isinstance(head, nn.Linear):
            raise HFFolderError(f"{config.model_type}: the model exposes no linear output layer to score with")
        self.lm_head = head

    def new_kv_cache(self, batch_size: int, capacity: int, device: torch.device, dtype: torch.dtype) -> _PastKeyValues:
        """An empty cache for up to ``capacity`` positions (transformers allocates as it decodes)."""
        return _PastKeyValues(capacity)

    def hidden_states(self, idx: torch.Tensor, kv_cache: _PastKeyValues | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C) of ``idx`` (B, T): what ``lm_head`` turns into logits.

        With ``kv_cache`` the tokens continue the cached positions, and the cache is extended.
        """
        past = 0 if kv_cache is None else kv_cache.pos
        check_sequence_length(past + idx.size(1), self.config.block_size)
        if kv_cache is None:
            return self.hf.base_model(input_ids=idx, use_cache=False).last_hidden_state
        out = self.hf.base_model(input_ids=idx, past_key_values=kv_cache.past, use_cache=True)
        kv_cache.past, kv_cache.pos = out.past_key_values, past + idx.size(1)
        return out.last_hidden_state

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) of ``idx`` (B, T)."""
        return self.lm_head(self.hidden_states(idx))


class TransformersEncoder(nn.Module):
    """An ``AutoModel`` text encoder, for embeddings only (no ``lm_head``, no ``generate``).

    Args:
        hf: the loaded transformers encoder (eval mode).
        config: its ``TransformersConfig`` (``block_size`` = text tokens, specials excluded).
        head_ids: ids the post-processor puts before a text (``[CLS]``).
        tail_ids: ids it puts after (``[SEP]``).
        pad_id: id of the padding positions (the config's ``pad_token_id``: RoBERTa derives positions from it).
    """

    kind = ENCODER

    def __init__(
        self, hf: nn.Module, config: TransformersConfig, head_ids: list[int], tail_ids: list[int], pad_id: int
    ) -> None:
        super().__init__()
        self.hf = hf
        self.config = config
        self.head_ids, self.tail_ids, self.pad_id = list(head_ids), list(tail_ids), pad_id

    @property
    def lm_head(self) -> nn.Module:
        raise TypeError(
            f"{self.config.model_type} is an encoder: it embeds text (task embed) but has no language-model head "
            "to score or generate with"
        )

    def generate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Refused: an encoder does not generate."""
        raise TypeError(f"{self.config.model_type} is an encoder: it cannot generate text; use task embed")

    def _with_specials(self, idx: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``head + text + tail`` per row, right-padded with ``pad_id``: ids and attention mask (B, T + n_special)."""
        B, T = idx.shape
        nh, nt = len(self.head_ids), len(self.tail_ids)
        lengths = mask.sum(dim=1)  # (B,) text tokens per row
        out = torch.full((B, nh + T + nt), self.pad_id, dtype=idx.dtype, device=idx.device)  # (B, T')
        out[:, nh : nh + T] = torch.where(mask, idx, torch.full_like(idx, self.pad_id))
        if nh:
            out[:, :nh] = torch.tensor(self.head_ids, dtype=idx.dtype, device=idx.device)
        if nt:
            cols = nh + lengths.unsqueeze(1) + torch.arange(nt, device=idx.device).unsqueeze(0)  # (B, nt)
            out.scatter_(1, cols, torch.tensor(self.tail_ids, dtype=idx.dtype, device=idx.device).expand(B, nt))
        total = (nh + lengths + nt).unsqueeze(1)  # (B, 1)
        attn = torch.arange(nh + T + nt, device=idx.device).unsqueeze(0) < total  # (B, T')
        return out, attn

    @torch.no_grad()
    def embed(self, idx: torch.Tensor, mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
        """Pooled embeddings of right-padded texts.

        Args:
            idx: (B, T) text ids without special tokens, right-padded; T <= block_size.
            mask: (B, T) True for real tokens.
            pooling: ``"mean"`` (last hidden states averaged over the attention mask, specials included,
                as sentence-transformers does) or ``"cls"`` (the first position's hidden state).

        Returns:
            (B, hidden_size) float32 embeddings, not normalised.
        """
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        check_sequence_length(idx.size(1), self.config.block_size)
        ids, attn = self._with_specials(idx, mask.to(torch.bool))
        h = self.hf(input_ids=ids, attention_mask=attn.long()).last_hidden_state.float()  # (B, T', C)
        if pooling == "cls":
            return h[:, 0]
        w = attn.unsqueeze(-1).float()  # (B, T', 1)
        return (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9)  # (B, C)

    def hidden_states(self, idx: torch.Tensor, kv_cache: None = None) -> torch.Tensor:
        """Last hidden states (B, T', C) of unpadded rows ``idx`` (B, T), specials added (T' = T + specials)."""
        ids, attn = self._with_specials(idx, torch.ones_like(idx, dtype=torch.bool))
        return self.hf(input_ids=ids, attention_mask=attn.long()).last_hidden_state


def load_transformers_model(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    expected_hash: str | None = None,
) -> tuple[nn.Module, HFTokenizer, str]:
    """Load a local non-native Hugging Face folder through transformers.

    Args:
        path: the folder (config.json, safetensors weights, tokenizer.json); never a hub name.
        dtype: parameter dtype (``torch.float32``, ``torch.bfloat16``, ``torch.float16``).
        device: where the model lives.
        expected_hash: refuse unless ``folder_hash`` equals this; None = any.

    Returns:
        ``(model, tokenizer, folder_hash)``; the model is a ``TransformersCausalLM`` or a
        ``TransformersEncoder`` (its ``kind`` says which) in eval mode.

    Raises:
        HFFolderError: the checks of `check_transformers_folder`, a hash mismatch, a tensor the
            architecture needs that the checkpoint lacks (transformers would initialise it at random), a
            tensor of another shape, or another load failure.
    """
    folder = read_hf_folder(path)
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise HFFolderError(f"dtype {dtype} is not supported; use torch.float32, torch.bfloat16 or torch.float16")
    digest = checked_folder_hash(folder, expected_hash)
    cfg, tok = check_transformers_folder(folder)
    transformers = require_transformers()
    auto = transformers.AutoModelForCausalLM if cfg.kind == CAUSAL_LM else transformers.AutoModel
    try:
        hf, info = auto.from_pretrained(
            str(folder.root), local_files_only=True, use_safetensors=True, dtype=dtype, output_loading_info=True
        )
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        raise HFFolderError(f"{folder.root}: transformers cannot load this {folder.model_type!r} model: {e}") from e
    # transformers initialises missing weights at random and only warns: a model that would score noise
    missing = sorted(k for k in info.get("missing_keys") or () if not _unused_ok(cfg.kind, k))
    if missing:
        raise HFFolderError(
            f"{folder.root}: checkpoint lacks {len(missing)} tensor(s) the config calls for, e.g. {missing[:5]}; "
            "config.json and the weights do not describe the same model"
        )
    hf = hf.to(device).eval()
    if cfg.kind == CAUSAL_LM:
        model: nn.Module = TransformersCausalLM(hf, cfg)
    else:
        head, tail = _specials(tok)
        pad = getattr(hf.config, "pad_token_id", None)
        model = TransformersEncoder(hf, cfg, head, tail, tok.pad_id if pad is None else pad)
    log.info(
        "loaded %s (%s, transformers) from %s: %s on %s, hash %s",
        folder.model_type,
        cfg.kind,
        folder.root,
        dtype,
        device,
        digest[:12],
    )
    return model.eval(), tok, digest
