"""Export core (CLI: jobs/export.py): our models as a Hugging Face GPT-2 folder or an ONNX graph (all logits).

``export_hf`` writes a lakelm model as the folder ``transformers.GPT2LMHeadModel.from_pretrained`` and
``transformers.AutoTokenizer.from_pretrained`` load with no missing or unexpected keys, and with the same
math: our GPT is GPT-2's architecture (learned positions, pre-norm blocks, tied head) with exact GELU
(``activation_function="gelu"``, not GPT-2's tanh ``gelu_new``), optional biases (zeros are written when
the model has none) and ``nn.Linear`` layout (GPT-2's ``Conv1D`` stores the transpose). The folder also
loads back through our own ``model.hf_load.load_hf_model``. ``export_artifact`` does it for a verified
artifact and names the artifact's hash in ``lakelm_export.json``.

ONNX needs the optional packages ``onnx``, ``onnxscript`` (the dynamo exporter) and ``onnxruntime``
(the check); they are imported only inside these functions.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.artifact import Artifact, code_version
from model.config import GPTConfig
from model.gpt import GPT
from model.tokenizer import EOS_TOKEN, PAD_TOKEN, TextTokenizer

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "idx", "logits"
FORMATS = ("hf", "onnx")
EXPORT_FORMAT = "lakelm-export/1"
LINEAGE_FILE = "lakelm_export.json"  # names the source artifact; not part of the Hugging Face folder hash
ONNX_FILE = "model.onnx"
ONNX_TOLERANCE = 1e-4  # largest |logit difference| onnxruntime may show against PyTorch in fp32
# GPT-2 keeps these four projections as Conv1D, weight (in, out); ours are nn.Linear, weight (out, in)
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


class ExportError(ValueError):
    """A model or output folder that cannot be exported as asked; the message says what to do."""


def hf_gpt2_config(model: GPT, eos_id: int, pad_id: int) -> dict[str, Any]:
    """The config.json of a ``GPT2LMHeadModel`` that computes what ``model`` computes.

    Args:
        model: our GPT (its config and LayerNorm epsilon are read).
        eos_id: our ``<|endoftext|>`` id; GPT-2 uses the document separator as BOS and EOS, as we do.
        pad_id: our ``<|pad|>`` id.

    Returns:
        The config as a JSON-able dict (``model_type`` ``gpt2``).
    """
    cfg: GPTConfig = model.config
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": 4 * cfg.n_embd,
        "activation_function": "gelu",  # nn.GELU() is the exact erf GELU; GPT-2's default gelu_new is tanh
        "layer_norm_epsilon": model.transformer.ln_f.eps,
        "scale_attn_weights": True,  # q.k / sqrt(head size), as F.scaled_dot_product_attention does
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "dtype": str(model.lm_head.weight.dtype).removeprefix("torch."),
    }


def hf_gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """``model``'s weights under GPT2LMHeadModel's names and layouts, ready for ``safetensors.torch.save_file``.

    The Conv1D projections are transposed to (in, out); a model built with ``bias=False`` gets zero
    biases (adding zero changes nothing); the tied head is stored once, as ``transformer.wte.weight``.

    Args:
        model: our GPT, on any device.

    Returns:
        name -> contiguous CPU tensor (no two share memory), in the model's dtype.
    """
    cfg: GPTConfig = model.config
    ours = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    C, dtype = cfg.n_embd, ours["transformer.wte.weight"].dtype
    out = {name: ours[name] for name in ("transformer.wte.weight", "transformer.wpe.weight")}
    widths = {"ln_1": C, "ln_2": C, "attn.c_attn": 3 * C, "attn.c_proj": C, "mlp.c_fc": 4 * C, "mlp.c_proj": C}
    prefixes = [f"transformer.h.{i}.{m}" for i in range(cfg.n_layer) for m in widths] + ["transformer.ln_f"]
    for prefix in prefixes:
        weight = ours[f"{prefix}.weight"]
        out[f"{prefix}.weight"] = weight.t() if prefix.endswith(_CONV1D) else weight
        width = widths.get(prefix.split(".", 3)[-1], C)
        bias = ours.get(f"{prefix}.bias")
        out[f"{prefix}.bias"] = bias if bias is not None else torch.zeros(width, dtype=dtype)
    return {k: v.clone().contiguous() for k, v in out.items()}


def hf_tokenizer_files(tokenizer: TextTokenizer, block_size: int) -> dict[str, dict[str, Any]]:
    """tokenizer_config.json and special_tokens_map.json for ``AutoTokenizer`` over our tokenizer.json.

    ``PreTrainedTokenizerFast`` wraps tokenizer.json as it is (no vocab/merges rebuild, so char-level
    tokenizers work too); our tokenizer.json has no post-processor, so ``encode`` adds no special token.

    Args:
        tokenizer: our tokenizer.
        block_size: the model's context length (``model_max_length``).

    Returns:
        file name -> JSON-able dict.
    """
    special = {"bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN}
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "single_word": False,
            "special": True,
        }
        for t, i in ((EOS_TOKEN, tokenizer.eos_id), (PAD_TOKEN, tokenizer.pad_id))
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "added_tokens_decoder": added,
        "model_max_length": block_size,
        "clean_up_tokenization_spaces": False,  # decode must invert encode, as ours does
        "add_bos_token": False,
        "add_eos_token": False,
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": special}


def _json_dump(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    """Refuse an output folder that already holds something (exports never overwrite or mix).

    Args:
        out_dir: the folder to create; it may exist only as an empty folder.

    Returns:
        ``Path(out_dir)``.

    Raises:
        ExportError: if it is a file or a non-empty folder.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"output {out} exists and is not an empty folder; give a new folder")
    return out


def _write_folder(out_dir: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Run ``fill(tmp)`` in a fresh folder next to ``out_dir``, then rename it into place, so a reader never
    sees half an export and a failed one leaves nothing behind."""
    out = check_output_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fill(tmp)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; readers may be other users
        os.replace(tmp, out)  # replaces an empty folder too (POSIX rename)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _readme(lineage: dict[str, Any], body: str) -> str:
    return (
        f"# {lineage.get('model_name') or 'lakelm model'}\n\n"
        f"Exported by lakelm from artifact `{lineage.get('source_artifact_hash')}` "
        f"(sha256 of its manifest.json; `{LINEAGE_FILE}` has the full lineage).\n\n{body}\n"
    )


def export_hf(
    model: GPT, tokenizer: TextTokenizer, out_dir: str | os.PathLike, lineage: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` and ``tokenizer`` as a Hugging Face GPT-2 folder.

    Files: config.json (``hf_gpt2_config``), model.safetensors (``hf_gpt2_state_dict``),
    generation_config.json, tokenizer.json (ours, byte for byte), tokenizer_config.json and
    special_tokens_map.json (``hf_tokenizer_files``), README.md and ``lakelm_export.json`` (``lineage``).

    Args:
        model: our GPT.
        tokenizer: its tokenizer (its ids must fit ``model.config.vocab_size``).
        out_dir: folder to create; it may exist only as an empty folder.
        lineage: JSON-able facts written to ``lakelm_export.json`` (``export_artifact`` puts the source
            artifact's hash there); None = {}.

    Returns:
        The folder.

    Raises:
        ExportError: if ``out_dir`` is not new or empty, or the tokenizer has more ids than the model.

    Example:
        >>> export_hf(model, tok, "exports/gpt-v1-hf")  # doctest: +SKIP
        >>> transformers.GPT2LMHeadModel.from_pretrained("exports/gpt-v1-hf")  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    if tokenizer.vocab_size > model.config.vocab_size:
        raise ExportError(f"tokenizer has {tokenizer.vocab_size} ids but the model only {model.config.vocab_size}")
    lineage = {"format": EXPORT_FORMAT, "exported_as": "hf-gpt2", **(lineage or {})}
    ids = {"bos_token_id": tokenizer.eos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
    usage = (
        "```python\nfrom transformers import AutoTokenizer, GPT2LMHeadModel\n"
        "model = GPT2LMHeadModel.from_pretrained(DIR)\ntokenizer = AutoTokenizer.from_pretrained(DIR)\n```\n\n"
        f"Put `{EOS_TOKEN}` (id {tokenizer.eos_id}) before a text to score its first token, as lakelm does."
    )

    def fill(tmp: Path) -> None:
        _json_dump(tmp / "config.json", hf_gpt2_config(model, tokenizer.eos_id, tokenizer.pad_id))
        save_file(hf_gpt2_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _json_dump(tmp / "generation_config.json", {**ids, "max_length": model.config.block_size})
        tokenizer.save(tmp / "tokenizer.json")
        for name, data in hf_tokenizer_files(tokenizer, model.config.block_size).items():
            _json_dump(tmp / name, data)
        _json_dump(tmp / LINEAGE_FILE, lineage)
        (tmp / "README.md").write_text(_readme(lineage, usage), encoding="utf-8")

    out = _write_folder(out_dir, fill)
    log.info("exported Hugging Face GPT-2 folder %s", out)
    return out


class _LogitsOnly(nn.Module):
    """``GPT.forward`` returns (logits, loss); ONNX gets the logits alone."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)[0]  # (B, T, V)


def export_onnx(model: GPT, path: str | os.PathLike, opset: int = 18) -> str:
    """Write ``model`` as an ONNX graph ``idx (B, T) int64 -> logits (B, T, vocab) float32``.

    Batch and sequence axes are dynamic (1 <= T <= block_size). Uses the dynamo exporter; TorchScript
    scripting is deprecated and fails on this model.

    Args:
        model: a CPU GPT; it is put in eval mode.
        path: the ``.onnx`` file to write (weights embedded).
        opset: ONNX opset version.

    Returns:
        ``str(path)``.
    """
    model.eval()
    example = torch.zeros(2, min(8, model.config.block_size), dtype=torch.long)
    batch = torch.export.Dim("batch", min=1)
    seq = torch.export.Dim("seq", min=1, max=model.config.block_size)
    program = torch.onnx.export(
        _LogitsOnly(model).eval(),
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"idx": {0: batch, 1: seq}},
        opset_version=opset,
        external_data=False,
        verbose=False,
    )
    program.save(str(path))
    log.info("exported %s", path)
    return str(path)


def check_onnx(
    model: GPT, path: str | os.PathLike, shapes: list[tuple[int, int]] | None = None, seed: int = 0
) -> float:
    """Run the ONNX file in onnxruntime and compare its logits with PyTorch's.

    Args:
        model: the GPT that was exported.
        path: the ``.onnx`` file.
        shapes: (B, T) input shapes to try; None = a few, up to block_size.
        seed: seeds the random token ids.

    Returns:
        The largest absolute logit difference seen.
    """
    import onnxruntime as ort

    model.eval()
    bs = model.config.block_size
    shapes = shapes or [(1, 1), (3, max(1, bs // 2)), (2, bs)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for B, T in shapes:
        idx = torch.randint(0, model.config.vocab_size, (B, T), generator=g)
        with torch.no_grad():
            expected = model(idx)[0].numpy()
        (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: idx.numpy()})
        if got.shape != expected.shape:
            raise AssertionError(f"ONNX logits shape {got.shape} != PyTorch {expected.shape} for input {(B, T)}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


class ExportCheckFailed(RuntimeError):
    """The exported model does not compute what the original computes (a bug, not a usage error)."""


def export_onnx_folder(
    model: GPT,
    tokenizer: TextTokenizer,
    out_dir: str | os.PathLike,
    lineage: dict[str, Any] | None = None,
    check: bool = True,
) -> Path:
    """Write ``model.onnx`` (``export_onnx``), tokenizer.json, README.md and ``lakelm_export.json`` into a new folder.

    Args:
        model: our GPT (put in eval mode).
        tokenizer: its tokenizer (copied byte for byte, for whoever feeds the graph ids).
        out_dir: folder to create; it may exist only as an empty folder.
        lineage: JSON-able facts for ``lakelm_export.json``; None = {}.
        check: run the graph in onnxruntime against PyTorch (``check_onnx``) and record the largest
            difference; skipped with a warning when onnxruntime is not installed.

    Returns:
        The folder.

    Raises:
        ExportError: if ``out_dir`` is not new or empty.
        ImportError: if ``onnx`` or ``onnxscript`` is missing.
        ExportCheckFailed: if onnxruntime's logits differ from PyTorch's by more than ``ONNX_TOLERANCE``.
    """
    lineage = {"format": EXPORT_FORMAT, "exported_as": "onnx", **(lineage or {})}
    check_output_dir(out_dir)
    usage = (
        f"`{ONNX_FILE}`: input `{INPUT_NAME}` int64 (batch, seq), 1 <= seq <= {model.config.block_size}; "
        f"output `{OUTPUT_NAME}` float32 (batch, seq, {model.config.vocab_size}). Token ids come from tokenizer.json."
    )

    def fill(tmp: Path) -> None:
        export_onnx(model, tmp / ONNX_FILE)
        lineage["onnx_max_abs_diff"] = None
        if check:
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                log.warning("onnxruntime is not installed: %s is not checked against PyTorch", ONNX_FILE)
            else:
                worst = check_onnx(model, tmp / ONNX_FILE)
                if worst > ONNX_TOLERANCE:
                    raise ExportCheckFailed(f"ONNX logits differ from PyTorch by {worst:.3g} > {ONNX_TOLERANCE}")
                lineage["onnx_max_abs_diff"] = worst
        tokenizer.save(tmp / "tokenizer.json")
        _json_dump(tmp / LINEAGE_FILE, lineage)
        (tmp / "README.md").write_text(_readme(lineage, usage), encoding="utf-8")

    out = _write_folder(out_dir, fill)
    log.info("exported ONNX folder %s", out)
    return out


def export_artifact(art: Artifact, out_dir: str | os.PathLike, fmt: str = "hf") -> Path:
    """Export a loaded, verified artifact (``model.artifact.load_artifact``), naming its hash in the lineage.

    Args:
        art: the ``model.artifact.Artifact``; its model is moved to CPU float32 (a no-op for one loaded on CPU).
        out_dir: folder to create; it may exist only as an empty folder.
        fmt: ``"hf"`` (``export_hf``) or ``"onnx"`` (``export_onnx_folder``).

    Returns:
        The folder.

    Raises:
        ExportError: unknown ``fmt``, or the errors of the exporter.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {FORMATS}")
    lineage = {
        "source_artifact_hash": art.hash,
        "source_artifact_path": str(art.path),
        "model_name": (art.metadata.get("lineage") or {}).get("model_name") or Path(art.path).name,
        "source_lineage": art.metadata.get("lineage") or {},
        "source_metrics": art.metadata.get("metrics") or {},
        "source_code_version": art.metadata.get("code_version"),
        "tokenizer_sha256": art.tokenizer.sha256,
        "exported_at": datetime.now(UTC).isoformat(),
        "exporter_code_version": code_version(),
    }
    model = art.model.cpu().float().eval()
    if fmt == "hf":
        return export_hf(model, art.tokenizer, out_dir, lineage)
    return export_onnx_folder(model, art.tokenizer, out_dir, lineage)
