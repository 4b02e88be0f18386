"""Fault injection for reliability tests: a UDF can kill its own Python worker, once.

Set ``LAKELM_FAULT_KILL_PARTITION=<n>`` in the environment of a job and the code that calls
`maybe_kill_worker` (the packing function of ``jobs/build_dataset.py``, right after a partition has
sent its first windows: a kill at that point is what could double-count) SIGKILLs its own process on
the first attempt of partition ``n`` (``TaskContext.attemptNumber() == 0``). Spark then retries the
task (the default master, ``local[*,4]``, gives each task 4 attempts; a cluster has
``spark.task.maxFailures``), so the job must still finish with the same output.
``LAKELM_FAULT_MARKER_DIR`` (optional) receives one file per injected kill, so a test can prove the
fault really happened. Without the variable this is a no-op.

The HTTP service (``jobs/serve.py``) calls `maybe_fault_request` with each request body before
answering it, on its worker thread. ``LAKELM_FAULT_SERVE_RAISE=<marker>``: a body that contains
``<marker>`` raises ``RuntimeError`` (the server must answer 500 and keep serving).
``LAKELM_FAULT_SERVE_SLEEP=<marker>:<seconds>``: such a body first sleeps that long, holding its worker
(to fill the pool). Without the variables these are no-ops too.

``LAKELM_FAULT_MODEL_TEXT=<marker>`` makes the model itself fail on some rows, as an out-of-memory
error or a CUDA fault on one executor would: while `failing_model` is active, every forward pass
whose input holds the marker's tokens raises ``RuntimeError``, so the scoring cores report those rows
as ``model_failed: ...`` (retryable) and score the others. The scoring UDF reads the variable where
it is built (`model_fault_marker`, on the driver) and carries it to the executors in its closure, so
setting it in the driver's environment is enough. Pick a marker that tokenises the same alone and
inside a text (any text, with a char-level tokenizer).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

ENV_PARTITION = "LAKELM_FAULT_KILL_PARTITION"
ENV_MARKER_DIR = "LAKELM_FAULT_MARKER_DIR"
ENV_SERVE_RAISE = "LAKELM_FAULT_SERVE_RAISE"
ENV_SERVE_SLEEP = "LAKELM_FAULT_SERVE_SLEEP"
ENV_MODEL_FAULT = "LAKELM_FAULT_MODEL_TEXT"


def maybe_kill_worker(stage: str) -> None:
    """SIGKILL this Python worker if the fault switch targets the current task's first attempt."""
    target = os.environ.get(ENV_PARTITION)
    if not target:
        return
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None or ctx.attemptNumber() != 0 or ctx.partitionId() != int(target):
        return
    marker_dir = os.environ.get(ENV_MARKER_DIR)
    if marker_dir:
        os.makedirs(marker_dir, exist_ok=True)
        path = os.path.join(marker_dir, f"{stage}-stage{ctx.stageId()}-part{ctx.partitionId()}-pid{os.getpid()}")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("killed\n")
    os.kill(os.getpid(), signal.SIGKILL)


def maybe_fault_request(body: bytes) -> None:
    """Stall and/or fail one HTTP request on purpose if its body holds a marker the switches name.

    Args:
        body: the raw request body.

    Raises:
        RuntimeError: ``LAKELM_FAULT_SERVE_RAISE`` is set and ``body`` contains its value.
    """
    sleep = os.environ.get(ENV_SERVE_SLEEP)
    if sleep:
        marker, _, seconds = sleep.rpartition(":")
        if marker and marker.encode() in body:
            time.sleep(float(seconds))
    marker = os.environ.get(ENV_SERVE_RAISE)
    if marker and marker.encode() in body:
        raise RuntimeError(f"injected fault: the body contains {ENV_SERVE_RAISE}={marker!r}")


def model_fault_marker() -> str | None:
    """The marker of the model-fault switch (``$LAKELM_FAULT_MODEL_TEXT``), or None when it is off."""
    return os.environ.get(ENV_MODEL_FAULT) or None


@contextlib.contextmanager
def failing_model(model, tokenizer, marker: str | None):
    """While active, forward passes of ``model`` whose input ids hold ``marker``'s tokens raise.

    A forward pre-hook on the token embedding (every scoring, embedding and generation pass starts
    there) looks for the marker's token ids as a contiguous run in any row of the (B, T) input.

    Args:
        model: a ``model.gpt.GPT``; the hook is removed again on exit.
        tokenizer: its tokenizer (encodes ``marker``).
        marker: text whose tokens make a pass fail; None or "" = no fault.

    Raises:
        RuntimeError: inside the block, from the model's forward pass on a poisoned input.
    """
    ids = tokenizer.encode(marker) if marker else []
    if not ids:
        yield
        return
    import torch

    want = torch.tensor(ids, dtype=torch.long)

    def hook(module, args) -> None:
        idx = args[0]  # (B, T) token ids
        k = len(ids)
        if idx.dim() == 2 and idx.size(1) >= k:
            runs = idx.unfold(1, k, 1)  # (B, T - k + 1, k)
            if bool((runs == want.to(idx.device)).all(-1).any()):
                raise RuntimeError(f"injected model fault: the input holds {ENV_MODEL_FAULT}={marker!r}")

    handle = model.transformer.wte.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()
