"""ONNX export (model/export.py) matches PyTorch in onnxruntime, with dynamic batch and sequence axes."""

import pytest
import torch

from model.config import GPTConfig
from model.gpt import GPT

pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_onnx_matches_pytorch(tmp_path):
    from model.export import check_onnx, export_onnx

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=67, block_size=16, n_layer=2, n_head=2, n_embd=32))
    path = export_onnx(model, tmp_path / "model.onnx")
    worst = check_onnx(model, path, shapes=[(1, 1), (3, 5), (2, 16), (5, 11)])
    assert worst < 1e-4
