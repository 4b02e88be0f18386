"""Model artifacts: a folder that holds everything needed to use a trained model, checked on load.

Layout::

    config.json        GPTConfig as JSON
    model.safetensors  weights (safetensors' save_model, which handles the tied wte/lm_head weights)
    tokenizer.json     the tokenizer, loadable by plain tokenizers.Tokenizer.from_file
    metadata.json      lineage (caller's dict), created_at, code version, tokenizer sha256, metrics
    manifest.json      sha256 and size of every other file

``load_artifact`` verifies the manifest before it parses or deserialises anything, and
``artifact_hash`` (sha256 of manifest.json) is the model's identity for caches and lineage.

The manifest lives in the same folder as the files it pins, so the check proves integrity (nothing
was corrupted or half-copied), not authenticity: whoever can write the folder can rewrite the
manifest too. To make sure a folder holds *the* model you mean, pass the hash you recorded when it
was trained (``expected_hash``; the jobs' ``--expect-model-hash``): a different artifact is refused
before any of its files is parsed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from model.config import GPTConfig
from model.gpt import GPT
from model.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

FORMAT = "lakelm-artifact/1"
CONFIG, WEIGHTS, TOKENIZER, METADATA, MANIFEST = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "metadata.json",
    "manifest.json",
)
PAYLOAD_FILES = (CONFIG, WEIGHTS, TOKENIZER, METADATA)


class ArtifactIntegrityError(Exception):
    """An artifact folder does not match its manifest (changed, missing or extra files)."""


class ArtifactHashMismatch(ArtifactIntegrityError):
    """An intact artifact that is not the expected one: its hash differs from the hash asked for."""


@dataclass(frozen=True, eq=False)
class Artifact:
    """A loaded, verified artifact.

    Attributes:
        model: the GPT in eval mode on the requested device.
        tokenizer: its tokenizer.
        config: the model config.
        metadata: contents of metadata.json.
        hash: ``artifact_hash`` of the folder.
        path: the folder.
    """

    model: GPT
    tokenizer: TextTokenizer
    config: GPTConfig
    metadata: dict[str, Any]
    hash: str
    path: str


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_version() -> dict[str, str]:
    """The code that defines the model: installed ``lakelm`` version and sha256 of ``model/*.py`` sources."""
    try:
        package = importlib.metadata.version("lakelm")
    except importlib.metadata.PackageNotFoundError:
        package = "unknown"
    h = hashlib.sha256()
    here = Path(__file__).parent
    for src in sorted(here.glob("*.py")):
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    return {"package": package, "model_code_sha256": h.hexdigest()}


def save_artifact(
    out_dir: str | os.PathLike,
    model: GPT,
    tokenizer: TextTokenizer,
    lineage: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> str:
    """Write an artifact folder and return its hash.

    The folder is assembled next to ``out_dir`` and renamed into place, so readers never see half of it.

    Args:
        out_dir: folder to create; must not exist yet (artifacts are immutable).
        model: trained model (an unwrapped ``GPT``, not DDP or compiled); weights are saved from CPU.
        tokenizer: its tokenizer; its vocab must fit ``model.config.vocab_size``.
        lineage: JSON-able facts about where the model came from (dataset table + version, run id,
            checkpoint, train config, ...). None = {}.
        metrics: JSON-able final metrics (val loss, bits per byte, ...). None = {}.

    Returns:
        ``artifact_hash(out_dir)``.

    Raises:
        FileExistsError: if ``out_dir`` exists.
        ValueError: if the tokenizer has more ids than the model's vocabulary.
    """
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} exists; artifacts are immutable, write to a new folder")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids but the model only {model.config.vocab_size}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n")
        on_cpu = all(p.device.type == "cpu" for p in model.parameters())
        save_model(model if on_cpu else _cpu_copy(model), str(tmp / WEIGHTS))
        tokenizer.save(tmp / TOKENIZER)
        metadata = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "code_version": code_version(),
            "tokenizer_sha256": tokenizer.sha256,
            "n_params": model.num_params(non_embedding=False),
            "lineage": lineage or {},
            "metrics": metrics or {},
        }
        (tmp / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
        files = {
            name: {"sha256": _sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size} for name in PAYLOAD_FILES
        }
        (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": files}, indent=2, sort_keys=True) + "\n")
        # mkdtemp makes the folder owner-only; executors may run as another user, so open it to reading
        for name in (*PAYLOAD_FILES, MANIFEST):
            os.chmod(tmp / name, 0o644)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    digest = artifact_hash(out)
    log.info("wrote artifact %s (hash %s)", out, digest)
    return digest


def _cpu_copy(model: GPT) -> GPT:
    copy = GPT(model.config)
    copy.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return copy


def artifact_hash(path: str | os.PathLike) -> str:
    """The artifact's identity: hex sha256 of its ``manifest.json`` (which pins every other file).

    Raises:
        ArtifactIntegrityError: if there is no manifest.
    """
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        raise ArtifactIntegrityError(f"{path} has no {MANIFEST}; it is not an artifact written by save_artifact")
    return _sha256_file(manifest)


def check_expected_hash(path: str | os.PathLike, digest: str, expected_hash: str | None) -> None:
    """Refuse an artifact whose hash is not the one the caller expects.

    Args:
        path: the artifact folder (for the message).
        digest: its ``artifact_hash``.
        expected_hash: the hex sha256 the caller expects (case and surrounding spaces ignored); None = any.

    Raises:
        ArtifactHashMismatch: naming both hashes, when they differ.
    """
    if expected_hash is not None and digest != expected_hash.strip().lower():
        raise ArtifactHashMismatch(
            f"artifact {path} has hash {digest}, but {expected_hash.strip()} was expected; "
            "it is another model: check the path, or the hash recorded when the model was trained"
        )


def verify_artifact(path: str | os.PathLike, expected_hash: str | None = None) -> str:
    """Check every file of the artifact against its manifest, reading nothing else.

    Args:
        path: the artifact folder.
        expected_hash: refuse the artifact unless its hash is this one (checked first, from the
            manifest alone); None = any intact artifact.

    Returns:
        The artifact hash.

    Raises:
        ArtifactHashMismatch: if the hash is not ``expected_hash``.
        ArtifactIntegrityError: with the names of missing, extra or changed files.
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactIntegrityError(f"artifact folder {root} does not exist")
    digest = artifact_hash(root)
    check_expected_hash(root, digest, expected_hash)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        expected = manifest["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise ArtifactIntegrityError(f"{root / MANIFEST} is not a valid manifest: {e}") from e
    if set(expected) != set(PAYLOAD_FILES):
        raise ArtifactIntegrityError(f"{root / MANIFEST} lists {sorted(expected)}, expected {sorted(PAYLOAD_FILES)}")
    present = set(os.listdir(root)) - {MANIFEST}
    missing, extra = sorted(set(expected) - present), sorted(present - set(expected))
    if missing or extra:
        raise ArtifactIntegrityError(
            f"artifact {root}: missing files {missing}, unexpected files {extra}; "
            "re-export the model instead of editing the folder"
        )
    changed = [
        n
        for n, meta in sorted(expected.items())
        if (root / n).stat().st_size != meta["bytes"] or _sha256_file(root / n) != meta["sha256"]
    ]
    if changed:
        raise ArtifactIntegrityError(
            f"artifact {root}: contents of {changed} do not match manifest.json "
            "(corrupted or modified); re-copy or re-export the artifact"
        )
    return digest


def load_artifact(
    path: str | os.PathLike, device: str | torch.device = "cpu", expected_hash: str | None = None
) -> Artifact:
    """Verify, then load, an artifact.

    Args:
        path: the artifact folder.
        device: where to put the model (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        expected_hash: see `verify_artifact`; None = any intact artifact.

    Returns:
        The ``Artifact`` with the model in eval mode.

    Raises:
        ArtifactHashMismatch: if its hash is not ``expected_hash`` (checked before any parsing).
        ArtifactIntegrityError: if the folder does not match its manifest (checked before any parsing).
    """
    digest = verify_artifact(path, expected_hash)
    root = Path(path)
    config = GPTConfig.from_dict(json.loads((root / CONFIG).read_text()))
    model = GPT(config)
    load_model(model, str(root / WEIGHTS), strict=True)
    model.to(device).eval()
    tokenizer = TextTokenizer.from_file(root / TOKENIZER)
    metadata = json.loads((root / METADATA).read_text())
    if metadata.get("tokenizer_sha256") != tokenizer.sha256:
        raise ArtifactIntegrityError(f"{root}: tokenizer.json does not match metadata.json's tokenizer_sha256")
    return Artifact(model=model, tokenizer=tokenizer, config=config, metadata=metadata, hash=digest, path=str(root))
