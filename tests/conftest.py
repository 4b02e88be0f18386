"""Shared fixtures: one local SparkSession for the whole test session (never one per test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHARED_DATA = REPO.parent / "shared" / "data"  # public corpora beside the checkout; optional


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A local[2] SparkSession configured from spark-defaults.conf, with test-sized settings."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from jobs.common.spark import get_spark

    session = get_spark(
        "lakelm-tests",
        master="local[2]",
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.ui.enabled": "false",
            "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")),
            "spark.driver.memory": "2g",
        },
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public corpora folder; tests that need the full sets skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present (a user's clone has only tests/data slices)")
    return SHARED_DATA
