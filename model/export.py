"""ONNX export of a GPT (logits for every position), checked against PyTorch with onnxruntime.

Needs the optional packages ``onnx``, ``onnxscript`` (the dynamo exporter) and ``onnxruntime``
(the check); they are imported only inside these functions.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn as nn

from model.gpt import GPT

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "idx", "logits"


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
