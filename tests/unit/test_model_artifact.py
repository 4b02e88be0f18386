"""Artifacts (model/artifact.py): round trip, manifest checks before loading, hash identity."""

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.artifact import (
    ArtifactHashMismatch,
    ArtifactIntegrityError,
    artifact_hash,
    load_artifact,
    save_artifact,
    verify_artifact,
)
from model.config import GPTConfig
from model.gpt import GPT
from model.tokenizer import char_level_tokenizer

DATA = Path(__file__).resolve().parent.parent / "data"
TEXT = (DATA / "tinyshakespeare_head.txt").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture()
def saved(tmp_path):
    tok = char_level_tokenizer(TEXT)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    path = tmp_path / "artifact"
    digest = save_artifact(
        path, model, tok, lineage={"dataset": "tokens@v3", "run_id": "r1"}, metrics={"val_loss": 1.5}
    )
    return path, digest, model, tok


def test_round_trip_gives_identical_logits(saved):
    path, digest, model, tok = saved
    art = load_artifact(path)
    assert art.hash == digest == artifact_hash(path)
    assert art.config == model.config and not art.model.training
    idx = torch.tensor([tok.encode(TEXT[:16])])
    assert torch.equal(art.model(idx)[0], model(idx)[0])
    assert art.model.lm_head.weight is art.model.transformer.wte.weight  # tying survives
    assert art.tokenizer.sha256 == tok.sha256


def test_files_and_metadata(saved):
    path, digest, model, tok = saved
    assert sorted(os.listdir(path)) == [
        "config.json",
        "manifest.json",
        "metadata.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["lineage"] == {"dataset": "tokens@v3", "run_id": "r1"} and meta["metrics"] == {"val_loss": 1.5}
    assert meta["tokenizer_sha256"] == tok.sha256 and "created_at" in meta
    assert len(meta["code_version"]["model_code_sha256"]) == 64
    assert len(load_file(str(path / "model.safetensors"))) > 0
    assert all((path / name).stat().st_mode & 0o444 == 0o444 for name in os.listdir(path))  # readable by executors


def test_flipped_byte_in_weights_raises(saved):
    path, *_ = saved
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match=r"contents of \['model.safetensors'\] do not match"):
        load_artifact(path)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: (p / "tokenizer.json").unlink(), r"missing files \['tokenizer.json'\]"),
        (lambda p: (p / "notes.txt").write_text("hi"), r"unexpected files \['notes.txt'\]"),
        (lambda p: (p / "manifest.json").unlink(), "has no manifest.json"),
        (lambda p: (p / "metadata.json").write_text("{}"), r"contents of \['metadata.json'\]"),
        (lambda p: (p / "manifest.json").write_text("not json"), "not a valid manifest"),
    ],
)
def test_damaged_artifact_raises(saved, damage, match):
    path, *_ = saved
    damage(path)
    with pytest.raises(ArtifactIntegrityError, match=match):
        verify_artifact(path)


def test_corrupt_weights_never_deserialised(saved, monkeypatch):
    path, *_ = saved
    (path / "model.safetensors").write_bytes(b"garbage")
    called = []
    monkeypatch.setattr("model.artifact.load_model", lambda *a, **k: called.append(1))
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(path)
    assert not called


def test_artifacts_are_immutable(saved):
    path, _, model, tok = saved
    with pytest.raises(FileExistsError, match="immutable"):
        save_artifact(path, model, tok)


def test_tokenizer_larger_than_vocab_raises(tmp_path):
    tok = char_level_tokenizer(TEXT)
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="tokenizer has"):
        save_artifact(tmp_path / "a", model, tok)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_expected_hash_is_checked_before_anything_is_parsed(saved, monkeypatch):
    path, digest, *_ = saved
    other = "ab" * 32
    called = []
    monkeypatch.setattr("model.artifact.load_model", lambda *a, **k: called.append(1))
    with pytest.raises(ArtifactHashMismatch, match=f"has hash {digest}, but {other} was expected"):
        load_artifact(path, expected_hash=other)
    assert not called  # refused from the manifest's hash alone
    assert issubclass(ArtifactHashMismatch, ArtifactIntegrityError)  # callers that refuse damage refuse this too
    assert verify_artifact(path, expected_hash=f" {digest.upper()} ") == digest  # case and spaces ignored
    monkeypatch.undo()
    assert load_artifact(path, expected_hash=digest).hash == digest


def test_a_consistent_rewrite_passes_the_manifest_but_not_the_expected_hash(saved):
    """The manifest sits next to the files it pins: integrity, not authenticity."""
    path, digest, *_ = saved
    meta = json.loads((path / "metadata.json").read_text())
    meta["lineage"]["run_id"] = "someone-else"
    (path / "metadata.json").write_text(json.dumps(meta))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["metadata.json"] = {
        "sha256": hashlib.sha256((path / "metadata.json").read_bytes()).hexdigest(),
        "bytes": (path / "metadata.json").stat().st_size,
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    new = verify_artifact(path)  # the folder is intact again: the manifest check cannot tell
    assert new != digest
    with pytest.raises(ArtifactHashMismatch, match=f"has hash {new}, but {digest} was expected"):
        verify_artifact(path, expected_hash=digest)
