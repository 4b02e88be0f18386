"""Every model inference runs, behind one door: a lakelm artifact or a local Hugging Face folder.

``--model PATH`` anywhere (the score, nightly and streaming jobs, ``/predict``, the notebooks) goes
through this module, which tells the two apart by their files:

- a **lakelm artifact** (model/artifact.py) has ``manifest.json``; its hash is ``artifact_hash``
  (sha256 of the manifest, which lists the sha256 of every file);
- a **Hugging Face folder** has a ``config.json`` with a ``model_type``; it runs natively when that
  is ``gpt2``, ``llama``, ``mistral`` or ``qwen2`` (model/hf_load.py), any other causal LM or text
  encoder (BERT, RoBERTa, XLM-R...) runs through ``transformers`` when the ``lakelm[hf]`` extra is
  installed (model/hf_transformers.py), and its hash is ``model.hf_folder.folder_hash`` (sha256 over
  config, weights and tokenizer files).

``Artifact.metadata["kind"]`` says what the model can do: ``"causal_lm"`` (score, embed, generate) or
``"encoder"`` (embed only); `describe_model` with a ``task`` refuses an encoder for score/generate.

Either way the result is an ``Artifact`` (model in eval mode, tokenizer, hash, path, metadata with
``lineage.model_name``), and the model has ``GPT``'s inference interface, so the scoring code never
asks which kind it drives.

Which tokens a row's ``sum_logprob`` covers, for every model: the text is scored after one context
token, the tokenizer's ``prefix_id`` (BOS when the checkpoint has one, else EOS, the document
separator GPT-2 and our own GPT are trained with), so every token of the text is scored. A tokenizer
with neither scores the text from its second token.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from model.artifact import MANIFEST, Artifact, artifact_hash, load_artifact, verify_artifact

__all__ = ["ENCODER_TASKS", "ModelFolderError", "cache_key", "describe_model", "is_artifact", "load_model"]

ENCODER_TASKS = ("embed",)  # what a text encoder (no language-model head) can do


class ModelFolderError(ValueError):
    """``--model`` names something that is neither a lakelm artifact nor a Hugging Face folder."""


def is_artifact(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a lakelm artifact folder (it has manifest.json)."""
    return (Path(path) / MANIFEST).is_file()


def _kind(path: str | os.PathLike) -> str:
    from model.hf_folder import is_hf_folder

    if is_artifact(path):
        return "lakelm"
    if is_hf_folder(path):
        return "hf"
    if not Path(path).is_dir():
        raise ModelFolderError(f"model folder {path} does not exist (give a local folder; nothing is downloaded)")
    raise ModelFolderError(
        f"{path} is neither a lakelm artifact (no {MANIFEST}) nor a Hugging Face model folder "
        "(no config.json with a model_type)"
    )


def _load_hf(path: str | os.PathLike, device, expected_hash: str | None) -> tuple:
    """``(model, tokenizer, hash, kind)`` of a Hugging Face folder: native, else through transformers.

    On the ``"meta"`` device nothing is loaded (the model is None): the driver's full check of the folder.
    """
    from model.hf_folder import HFFolderError, checked_folder_hash, read_hf_folder
    from model.hf_load import NATIVE_MODEL_TYPES, load_hf_model
    from model.hf_transformers import check_transformers_folder, load_transformers_model, require_transformers

    folder = read_hf_folder(path)
    if folder.model_type in NATIVE_MODEL_TYPES:
        return (*load_hf_model(path, device=device, expected_hash=expected_hash), "causal_lm")
    try:
        require_transformers()
    except HFFolderError as e:
        raise HFFolderError(
            f"{folder.root}: model_type {folder.model_type!r} has no native implementation "
            f"(native: {', '.join(NATIVE_MODEL_TYPES)}); {e}"
        ) from e
    if torch.device(device).type != "meta":
        model, tok, digest = load_transformers_model(path, device=device, expected_hash=expected_hash)
        return model, tok, digest, model.kind
    digest = checked_folder_hash(folder, expected_hash)
    cfg, tok = check_transformers_folder(folder)
    return None, tok, digest, cfg.kind


def describe_model(
    path: str | os.PathLike, expected_hash: str | None = None, task: str | None = None
) -> tuple[str, str]:
    """Check a model folder completely, without loading its weights: ``(model_name, model_hash)``.

    What the driver runs before any row is scored. An artifact is verified against its manifest; a
    Hugging Face folder is hashed and its config, tokenizer and every tensor's name, shape and dtype
    are checked against the native architecture (no weight is read into memory).

    Args:
        path: an artifact or a Hugging Face folder.
        expected_hash: refuse unless the model's hash is this; None = any intact model.
        task: ``"score"``, ``"embed"`` or ``"generate"``: refuse a model that cannot do it (an encoder
            only embeds); None = no task check.

    Returns:
        ``model_name`` (an artifact's lineage ``model_name``, else the folder's name) and its hash.

    Raises:
        ModelFolderError: neither kind of folder.
        model.artifact.ArtifactHashMismatch: an artifact whose hash is not ``expected_hash``.
        model.artifact.ArtifactIntegrityError: an artifact that does not match its manifest.
        model.hf_folder.HFFolderError: a Hugging Face folder that cannot run (with the reason: no native
            implementation and transformers missing, pickle weights...), whose hash is not
            ``expected_hash``, or an encoder given a ``task`` other than embed.
    """
    name = os.path.basename(os.path.normpath(str(path)))
    if _kind(path) == "lakelm":
        import json

        digest = verify_artifact(path, expected_hash)
        with open(os.path.join(path, "metadata.json"), encoding="utf-8") as f:
            lineage = json.load(f).get("lineage") or {}
        return str(lineage.get("model_name") or name), digest
    _model, _tok, digest, kind = _load_hf(path, "meta", expected_hash)
    _check_task(path, kind, task)
    return name, digest


def _check_task(path, kind: str, task: str | None) -> None:
    if task is not None and kind == "encoder" and task not in ENCODER_TASKS:
        from model.hf_folder import HFFolderError

        raise HFFolderError(
            f"{path} is a text encoder (no language-model head): it can only embed, not {task}; "
            "use --task embed, or a causal language model"
        )


def cache_key(path: str | os.PathLike) -> str:
    """A cheap identity of the folder's current contents, for per-worker model caches.

    An artifact's ``artifact_hash`` (one small file read); for a Hugging Face folder, a digest of the
    names, sizes and modification times of the files ``folder_hash`` covers (its full hash reads every
    weight byte, which a cache hit must not do). A folder replaced by another model gets another key.
    """
    if _kind(path) == "lakelm":
        return artifact_hash(path)
    from model.hf_folder import read_hf_folder

    h = hashlib.sha256(b"hf-stat\0")
    for f in read_hf_folder(path).hashed_files():
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return "hf-stat:" + h.hexdigest()


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", expected_hash: str | None = None
) -> Artifact:
    """Load an artifact or a Hugging Face folder for inference (model in eval mode on ``device``).

    Args:
        path: the folder.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        expected_hash: refuse unless the model's hash is this; None = any.

    Returns:
        An ``Artifact``; for a Hugging Face folder ``config`` is the model's config and ``metadata`` is
        ``{"format": "hf", "model_type": ..., "kind": "causal_lm" | "encoder", "lineage": {"model_name":
        <folder name>}}``; an artifact's metadata gets ``"kind": "causal_lm"``.

    Raises:
        The errors of `describe_model`.
    """
    if _kind(path) == "lakelm":
        art = load_artifact(path, device, expected_hash)
        art.metadata.setdefault("kind", "causal_lm")
        return art
    from model.hf_folder import read_hf_folder

    model, tok, digest, kind = _load_hf(path, device, expected_hash)
    name = os.path.basename(os.path.normpath(str(path)))
    meta = {
        "format": "hf",
        "model_type": read_hf_folder(path).model_type,
        "kind": kind,
        "lineage": {"model_name": name},
    }
    return Artifact(model=model, tokenizer=tok, config=model.config, metadata=meta, hash=digest, path=str(path))
