"""Optional compiled kernels: import a numba-backed module, or warn once and let the caller fall back.

numba is a declared dependency (setup.py), but a broken install (a numpy it does not support) must not stop a
curation job: every compiled stage keeps a pure-Python or numpy path that computes the same values, slower.
"""

from __future__ import annotations

import functools
import importlib
import logging
from types import ModuleType

log = logging.getLogger(__name__)


@functools.cache
def optional_module(name: str, stage: str, fallback: str) -> ModuleType | None:
    """``importlib.import_module(name)``, or None after one warning per (name, stage) in this process.

    Args:
        name: the module to import, e.g. ``"udfs.curation._minhash_kernels"`` or ``"numba"``.
        stage: what the kernels serve, first in the warning (``"MinHash"``).
        fallback: what runs instead and how much slower, as measured (``"the numpy fallback, about 3x slower"``).

    Clear the cache (``optional_module.cache_clear()``) to import again, e.g. in tests that hide numba.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        log.warning(
            "%s: numba kernels unavailable (%s); using %s. "
            "numba is a declared dependency (setup.py): reinstall it with a numpy it supports.",
            stage,
            exc,
            fallback,
        )
        return None
