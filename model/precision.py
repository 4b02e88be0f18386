"""Arithmetic precision of training and inference: which one a run uses on a device, and its autocast.

``"fp32"`` is the default everywhere (the same numbers on every machine); ``"bf16"`` runs matmuls and
attention under bf16 autocast on fp32 weights; ``"auto"`` is bf16 where the hardware multiplies bf16
natively (CUDA GPUs that support it, x86 CPUs with AVX512-BF16 or AMX), fp32 elsewhere. The names are
``model.config.PRECISIONS``.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable

import torch

from model.config import PRECISIONS


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware, so bf16 autocast is faster than float32.

    On x86 that means AVX512-BF16 or AMX: ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` alone is not
    enough there, since it is also True on plain AVX512 CPUs, where oneDNN emulates bf16. Elsewhere
    (aarch64) the oneDNN check is the hardware check.

    Returns:
        True for native bf16 support, False otherwise (and when torch cannot tell).
    """
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(bool(check()) for check in checks if check is not None)
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run actually uses: ``precision`` with ``"auto"`` decided for ``device``.

    Args:
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        device: the device; "auto" picks bf16 on CUDA GPUs that support it and on CPUs with native bf16
            (``cpu_has_native_bf16``), fp32 everywhere else.

    Returns:
        ``"fp32"`` or ``"bf16"``.

    Raises:
        ValueError: for a name outside ``PRECISIONS``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast_for(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A context-manager factory: bf16 autocast when ``precision`` resolves to bf16 on ``device``, else none.

    Example:
        >>> with autocast_for("fp32", torch.device("cpu"))():
        ...     pass
    """
    if resolve_precision(precision, device) == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext
