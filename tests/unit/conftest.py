"""Fixtures shared by the unit tests (no JVM)."""

from __future__ import annotations

import pytest

from model.artifact import load_artifact
from tests.tiny_model import save_tiny_artifact


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random GPT artifact (tests/tiny_model.py), loaded: ``.model``, ``.tokenizer``, ``.hash``."""
    path = tmp_path_factory.mktemp("artifact") / "tiny"
    save_tiny_artifact(path)
    return load_artifact(path)
