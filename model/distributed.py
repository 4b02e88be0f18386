"""Torch side of DDP (Spark side: jobs/common/distributed.py): device choice and the torch.distributed calls."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def resolve_device(name: str, rank: int = 0) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; under DDP each rank takes GPU ``rank % count``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch sees no CUDA device; use device='cpu' or 'auto'")
        dev = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
        return dev
    return torch.device("cpu")


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, or ``(0, 1)`` outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_objects(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj`` (picklable), indexed by rank; ``[obj]`` when ``world`` is 1. All ranks must call it."""
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    """Element-wise sum of ``values`` over ranks, in float64 on ``device`` (nccl needs CUDA tensors)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
