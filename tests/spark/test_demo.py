"""The README's first command (`make demo` = `python -m jobs.demo`) on a trimmed sample: every stage, the
report's numbers against the tables, and every table the lake writes read back by delta-rs."""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys

import pytest

from jobs import demo
from jobs.transforms.demo_lake import TABLES, lake_table
from tests.conftest import REPO

pytestmark = pytest.mark.spark

MAX_DOCS = 17  # first 17 records of each bundled corpus (commoncrawl's 17th is an empty page: quarantine)
# Columns two runs of the same pipeline fill differently by nature: ids and free-form records of a run
# (timestamps are left out by type). An artifact's hash covers its lineage, which names its run, so two
# trainings of the same model on the same data have two hashes: the scores' values are compared instead.
PER_RUN_COLUMNS = {"run_id", "args", "extra", "model_hash"}


@pytest.fixture(scope="module")
def demo_lake(spark, tmp_path_factory):
    """A lake built by ``jobs.demo`` (the ``make demo`` code path) on the trimmed sample, and its report."""
    lake = tmp_path_factory.mktemp("demo") / "lake"
    assert demo.main(["--lake", str(lake), "--max-docs", str(MAX_DOCS), "--max-steps", "3"]) == 0
    return lake, (lake / "_report" / "report.md").read_text(encoding="utf-8")


def _load(spark, lake, name):
    return spark.read.format("delta").load(lake_table(str(lake), name))


def _md_rows(report: str, header: str) -> list[list[str]]:
    """Cells of the Markdown table whose header row starts with ``header``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_report_numbers_match_the_tables(spark, demo_lake):
    from jobs.transforms.splits import split_column

    lake, report = demo_lake
    counts = {name: _load(spark, lake, name).count() for name in ("bronze", "silver", "gold")}
    assert counts["gold"] > 0 and counts["bronze"] <= 3 * MAX_DOCS
    assert {s: int(n) for s, n in _md_rows(report, "| stage | documents |")} == counts

    reasons = {
        f"rejected:{r[0]}": r[1] for r in _load(spark, lake, "rejected").groupBy("drop_reason").count().collect()
    }
    reasons |= {
        f"quarantine:{r[0]}": r[1] for r in _load(spark, lake, "quarantine").groupBy("reason").count().collect()
    }
    assert reasons.get("quarantine:empty_text", 0) >= 1
    assert {k: int(v) for k, v in _md_rows(report, "| table:reason |")} == reasons

    # every gold document was scored, once, and the report says so
    scores = _load(spark, lake, "scores")
    assert scores.count() == counts["gold"] == scores.select("doc_id").distinct().count()
    assert f"{counts['gold']} documents scored, 0 with a per-row error." in report

    # the evaluation of the demo's model on the bundled task slices: one column, naming the data it came from
    evals = spark.read.format("delta").load(str(lake / "evals" / "tasks")).toPandas()
    assert sorted(evals.task) == sorted(p.stem for p in demo.EVAL_TASKS.glob("*.jsonl")) and len(evals) == 7
    row = evals.iloc[0]
    from jobs.common.delta_io import table_version

    # the model was trained on the latest tokens, built from the latest gold (the demo writes each once)
    assert int(row.gold_version) == table_version(spark, lake_table(str(lake), "gold"))
    assert int(row.token_table_version) == table_version(spark, lake_table(str(lake), "tokens"))
    header = next(line for line in report.splitlines() if line.startswith("| task | "))
    assert f"`{row.model_hash[:8]}` (gold v{int(row.gold_version)}, tokens v{int(row.token_table_version)})" in header
    cells = {r[0].split(" (")[0]: r[1] for r in _md_rows(report, "| task | ")}
    assert set(evals.task) <= set(cells)
    for t in evals.itertuples():
        assert cells[t.task].startswith(f"{t.acc:.3f}")

    # training data: windows per split are the token table's rows; val is not empty
    tokens = _load(spark, lake, "tokens")
    windows = {r.split: r["count"] for r in tokens.groupBy("split").count().collect()}
    data = {r[0]: (int(r[1]), int(r[2])) for r in _md_rows(report, "| | train | val |")}
    assert data["windows"] == (windows["train"], windows["val"]) and windows["val"] > 0

    # loss per source: the val documents per source are gold's under the dataset's recorded split rule
    meta = json.loads((lake / "_artifacts" / "tokenizer" / "dataset.json").read_text(encoding="utf-8"))
    assert meta["split"]["stratify_by"] == ["source", "lang"]
    gold = _load(spark, lake, "gold")
    val = {
        r.source: r["count"]
        for r in gold.filter(split_column(meta["split"]) == "val").groupBy("source").count().collect()
    }
    assert sum(val.values()) == data["docs"][1] > 0
    per_source = {r[0]: r for r in _md_rows(report, "| source | val docs |")}
    assert set(per_source) == {r.source for r in gold.select("source").distinct().collect()}
    for source, row in per_source.items():
        assert int(row[1]) == val.get(source, 0)
        if val.get(source):
            assert int(row[2]) > 0 and 0 < float(row[3]) < math.log(meta["vocab_size"]) + 1
    assert re.search(r"Val loss \d+\.\d+ at step 0 -> \d+\.\d+ at step 3", report)

    # the quality classifier scored every curated document; the report's table per source says the same
    rejected = _load(spark, lake, "rejected").filter("job = 'curate' AND quality_score IS NOT NULL")
    silver = _load(spark, lake, "silver")
    assert silver.filter("quality_score IS NULL").count() == 0
    quality = {r[0]: [int(x) for x in r[1:5]] for r in _md_rows(report, "| source | scored | kept | quality_low |")}
    for source in {r.source for r in _load(spark, lake, "bronze").select("source").distinct().collect()}:
        kept, gone = silver.filter(f"source = '{source}'"), rejected.filter(f"source = '{source}'")
        low = gone.filter("drop_reason = 'quality_low'").count()
        want = [kept.count() + gone.count(), kept.count(), low, gone.count() - low]
        assert quality.get(source, [0, 0, 0, 0]) == want, source
    assert sum(v[2] for v in quality.values()) > 0  # the demo's keep fraction drops some kept documents

    n_clusters = _load(spark, lake, "clusters").filter("cluster_size > 1").select("cluster_id").distinct().count()
    assert f"{n_clusters} clusters with more than one document." in report


def test_delta_rs_reads_every_table_the_lake_writes(spark, demo_lake):
    """Another engine (delta-rs, no JVM) reads each table at the version Spark wrote, with Spark's row count."""
    deltalake = pytest.importorskip("deltalake")
    from delta.tables import DeltaTable

    lake, _ = demo_lake
    written = [name for name in TABLES if DeltaTable.isDeltaTable(spark, lake_table(str(lake), name))]
    assert written == list(TABLES)  # bronze, quarantine, silver, rejected, gold, clusters, tokens, ...
    for name in written:
        path = lake_table(str(lake), name)
        table = deltalake.DeltaTable(path)
        assert table.version() == DeltaTable.forPath(spark, path).history(1).first().version, name
        rows = table.to_pyarrow_table()  # reads and decodes every data file
        assert rows.num_rows == _load(spark, lake, name).count() > 0, name
        assert set(rows.column_names) == set(_load(spark, lake, name).columns), name


def _rounded(value):
    """``value`` with every float written to 9 significant digits (two sessions may sum in another order)."""
    if isinstance(value, float):
        return f"{value:.9g}"
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value if value is None or isinstance(value, (str, int, bool)) else str(value)


def _table_digest(spark, lake, name) -> tuple[int, str]:
    """(rows, sha256) of a demo table, independent of row order: timestamp columns and `PER_RUN_COLUMNS`
    left out, the lake's own path and the artifact's time-stamped name written the same for every lake."""
    df = _load(spark, lake, name)
    keep = [
        f.name
        for f in df.schema.fields
        if f.name not in PER_RUN_COLUMNS and f.dataType.typeName() not in ("timestamp", "timestamp_ntz")
    ]
    rows = sorted(
        re.sub(r"(gpt|quality)-\d{8}T\d{6}", r"\1-TIME", json.dumps(_rounded(r.asDict(recursive=True)), sort_keys=True))
        .replace(str(lake.resolve()), "LAKE")
        .replace(str(lake), "LAKE")
        for r in df.select(*keep).collect()
    )
    return len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()


@pytest.mark.slow
def test_demo_on_spark_connect_writes_the_same_tables(spark, demo_lake, tmp_path):
    """`SPARK_REMOTE=local[2] python -m jobs.demo`: every stage on a Spark Connect session (pyspark's local
    server, no SparkContext in the jobs' hands) writes every table with the classic run's content."""
    from tests.spark.test_submit_and_cluster import _env

    classic, _ = demo_lake
    lake = tmp_path / "lake"
    cmd = [sys.executable, "-m", "jobs.demo", "--lake", str(lake), "--max-docs", str(MAX_DOCS), "--max-steps", "3"]
    env = {**_env(), "SPARK_REMOTE": "local[2]"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Spark Connect session 'lakelm-demo' via a local server (local[2]" in proc.stderr
    assert "classic session" not in proc.stderr
    deltalake = pytest.importorskip("deltalake")
    for name in TABLES:
        assert _table_digest(spark, lake, name) == _table_digest(spark, classic, name), name
        path = lake_table(str(lake), name)
        assert deltalake.DeltaTable(path).to_pyarrow_table().num_rows == _load(spark, lake, name).count(), name
    logs = "".join(p.read_text(encoding="utf-8") for p in lake.glob("*/_delta_log/*.json"))
    assert logs and "collate" not in logs  # plain string types: any engine reads the schema
