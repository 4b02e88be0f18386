"""The lake layout: where the standard tables live under one ``--lake DIR``.

Every job takes explicit table paths; ``--lake`` only supplies their defaults:

    DIR/bronze      raw documents as ingested (jobs/ingest.py)
    DIR/quarantine  records that could not be ingested, with the reason
    DIR/silver      cleaned, filtered documents (jobs/curate.py)
    DIR/rejected    documents dropped by curation or dedup, with drop_reason
    DIR/gold        deduplicated training documents (jobs/dedup.py)
    DIR/tokens      packed token windows for training (jobs/build_dataset.py)
    DIR/scores      model outputs per document (jobs/score.py)
    DIR/runs        one row per job run: arguments, counts, table versions, status
    DIR/stats       per-stage funnel: in, kept, dropped per reason (jobs/stats.py)
"""

from __future__ import annotations

import os
import re

DEFAULT_LAKE = "lake"
TABLES = ("bronze", "quarantine", "silver", "rejected", "gold", "tokens", "scores", "runs", "stats")

# Paths reach Spark and Delta only as reader/writer arguments, never inside SQL text; this check
# still refuses characters that have no business in a table path (quotes, backticks, newlines,
# semicolons) so a mistyped or hostile argument fails before anything runs.
_BAD_PATH_CHARS = re.compile(r"[`'\";\n\r\x00]")


def validate_table_path(path: str, what: str = "table path") -> str:
    """Return ``path``, checked and normalised, if it is usable as a Delta table location.

    Local paths are made absolute; URIs (``s3a://bucket/x``, ``file:/tmp/x``) are kept as given.

    Args:
        path: a local path or URI.
        what: how to name the argument in the error message.

    Raises:
        ValueError: for an empty path or one containing quotes, backticks, ``;`` or control chars.
    """
    if not path or not path.strip():
        raise ValueError(f"{what} is empty")
    if _BAD_PATH_CHARS.search(path):
        raise ValueError(f"{what} {path!r} contains a quote, backtick, ';' or control character")
    if "://" not in path and not path.startswith("file:"):
        path = os.path.abspath(path)  # Delta's table builder reads a relative path as a table name
    return path


def table_path(lake: str, name: str) -> str:
    """Path of the standard table ``name`` inside ``lake``.

    Example:
        >>> table_path("/data/lake", "bronze")
        '/data/lake/bronze'
    """
    if name not in TABLES:
        raise ValueError(f"unknown lake table {name!r}; expected one of {TABLES}")
    return validate_table_path(os.path.join(lake, name))
