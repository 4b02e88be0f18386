"""The per-worker model cache of batch inference, and the device and threads of a Spark task.

`load_model_cached` keeps loaded artifacts in a small per-process LRU keyed by (absolute path,
``artifact_hash``, device), so a Python worker loads a model once and reuses it for every later batch,
partition and query. That holds only while the worker lives:

* ``spark.python.worker.reuse=true`` (spark-defaults.conf) keeps workers between tasks; with false
  every task forks a fresh worker and loads the model again.
* Spark's ``PythonWorkerFactory`` kills workers that sat idle in its pool for one minute
  (``IDLE_WORKER_TIMEOUT_NS``, hard-coded to 1 minute in Spark 4.2, no configuration key), so a pause
  in a notebook or between streaming micro-batches costs a reload. ``spark.python.factory.
  idleWorkerMaxPoolSize`` can evict idle workers sooner; ``spark.python.worker.idleTimeoutSeconds``
  (+ ``killOnIdleTimeout``) is a different thing: it watches a worker that is silent *during* a task.
* Reloading is kept cheap: the artifact is verified (one sha256 pass over its files) and the weights
  are read through safetensors' memory map straight into the model, with no unpickling; a cache hit
  costs one read of the small manifest.json. Each load is counted in ``LOAD_COUNT``, logged, and,
  when a load-log folder is given (``load_log_dir``, else ``$LAKELM_LOAD_LOG_DIR`` as the *worker*
  sees it: set it before the session starts or with ``spark.executorEnv.LAKELM_LOAD_LOG_DIR``),
  written there as a marker file so tests can count loads across worker processes.
* One executor with N task slots holds N copies (one per worker); size ``spark.executor.memoryOverhead``
  and GPU slots to match.

Devices and threads: a task that was given a GPU (``TaskContext.resources()["gpu"]``) runs on it when
CUDA is available, otherwise on CPU; torch gets ``TaskContext.cpus()`` (``spark.task.cpus``) threads,
matching the ``OMP_NUM_THREADS`` Spark gives Python workers, so two task slots never oversubscribe the
cores.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.artifact import Artifact

log = logging.getLogger(__name__)

LOAD_LOG_ENV = "LAKELM_LOAD_LOG_DIR"
_CACHE_SIZE = 2  # models kept per worker: a notebook switching between two models does not thrash

_MODELS: OrderedDict[tuple[str, str, str], Artifact] = OrderedDict()
LOAD_COUNT = 0  # artifacts loaded by this process (a reused worker keeps counting)


def choose_device(gpu_addresses: Sequence[str] | None, cuda_available: bool) -> str:
    """``"cuda:<first address>"`` when the task was given a GPU and CUDA works, else ``"cpu"``.

    Example:
        >>> choose_device(["1"], True), choose_device(["1"], False), choose_device(None, True)
        ('cuda:1', 'cpu', 'cpu')
    """
    if gpu_addresses and cuda_available:
        return f"cuda:{gpu_addresses[0]}"
    return "cpu"


def task_device_and_threads() -> tuple[str, int | None]:
    """Device and torch thread count for the current Spark task (``("cpu", None)`` outside a task).

    Returns:
        ``(device, threads)``: the task's GPU when it has one and CUDA is available, else CPU; threads
        = ``TaskContext.cpus()`` (``spark.task.cpus``), or None outside Spark (leave torch's setting).
    """
    import torch
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        return "cpu", None
    gpu = (ctx.resources() or {}).get("gpu")
    device = choose_device(list(gpu.addresses) if gpu is not None else None, torch.cuda.is_available())
    return device, max(1, int(ctx.cpus() or 1))


def _write_load_marker(folder: str, record: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    name = f"load-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(record, f)


def load_model_cached(
    path: str, device: str = "cpu", expected_hash: str | None = None, load_log_dir: str | None = None
) -> Artifact:
    """The model at ``path`` (a lakelm artifact or a Hugging Face folder) on ``device``, loaded once per
    process and kept in a small LRU.

    The key is (absolute path, ``model.loading.cache_key``, device): for an artifact that is its
    ``artifact_hash`` (the sha256 of manifest.json, cheap to read on every call), for a Hugging Face
    folder a digest of its files' names, sizes and modification times; so a folder replaced by another
    model is reloaded, never served stale. Loading verifies the model (``model.loading.load_model``).

    Args:
        path: the model folder (visible to every executor).
        device: ``"cpu"`` or ``"cuda:N"``.
        expected_hash: the hash the driver saw when the job started; None = accept any.
        load_log_dir: folder for one marker file per load (tests count loads across workers);
            None = ``$LAKELM_LOAD_LOG_DIR`` if set, else no marker.

    Returns:
        The loaded ``Artifact`` (model in eval mode on ``device``).

    Raises:
        model.artifact.ArtifactIntegrityError: if an artifact does not match its manifest, or a model's
            hash is not ``expected_hash`` (the folder changed after the job started).
        model.hf_folder.HFFolderError: a Hugging Face folder that cannot run natively.
    """
    global LOAD_COUNT
    from model.loading import cache_key, is_artifact, load_model

    key = (os.path.abspath(path), cache_key(path), str(device))
    if expected_hash is not None and is_artifact(path):
        _check_hash(path, key[1], expected_hash)  # an artifact's key is its hash: refuse before loading
    art = _MODELS.get(key)
    if art is None:
        t0 = time.monotonic()
        art = load_model(path, device)
        seconds = time.monotonic() - t0
        LOAD_COUNT += 1
        _MODELS[key] = art
        while len(_MODELS) > _CACHE_SIZE:
            _MODELS.popitem(last=False)
        log.info(
            "pid %d loaded model %s (%s) on %s in %.2f s (load #%d)",
            os.getpid(),
            path,
            art.hash[:12],
            device,
            seconds,
            LOAD_COUNT,
        )
        folder = load_log_dir or os.environ.get(LOAD_LOG_ENV)
        if folder:
            _write_load_marker(
                folder,
                {
                    "pid": os.getpid(),
                    "path": key[0],
                    "hash": art.hash,
                    "device": str(device),
                    "seconds": seconds,
                    "load_count": LOAD_COUNT,
                },
            )
    else:
        _MODELS.move_to_end(key)
    if expected_hash is not None:
        _check_hash(path, art.hash, expected_hash)
    return art


def _check_hash(path: str, digest: str, expected_hash: str) -> None:
    from model.artifact import ArtifactIntegrityError

    if digest != expected_hash:
        raise ArtifactIntegrityError(
            f"model {path} has hash {digest}, but the job started with {expected_hash}; "
            "models are immutable: write a new folder and rerun the job with it"
        )
