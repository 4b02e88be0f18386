"""The demo's lake: the tables ``jobs/demo.py`` writes, where, a summary of them, and trimmed copies of its inputs."""

from __future__ import annotations

from pathlib import Path

from jobs.common.lake import table_path

TABLES = ("bronze", "quarantine", "silver", "rejected", "gold", "clusters", "tokens", "scores", "stats", "runs")


def lake_table(lake: str, name: str) -> str:
    """Path of table ``name`` (one of `TABLES`) in a demo lake; ``clusters`` is where the demo's dedup writes it."""
    return str(Path(lake) / "clusters") if name == "clusters" else table_path(lake, name)


def trimmed_corpora(corpora: list[Path], max_docs: int, out_dir: Path) -> list[Path]:
    """Copies of ``corpora`` holding their first ``max_docs`` lines (JSONL records), same file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    trimmed = []
    for path in corpora:
        with open(path, encoding="utf-8") as src, open(out_dir / path.name, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= max_docs:
                    break
                dst.write(line)
        trimmed.append(out_dir / path.name)
    return trimmed


def summarize(spark, lake: str) -> None:
    """Print row counts of every table present and the bronze/quarantine breakdown."""
    from jobs.common.delta_io import table_version

    print("\n=== summary ===")
    for name in TABLES:
        path = lake_table(lake, name)
        version = table_version(spark, path)
        if version is not None:
            df = spark.read.format("delta").load(path)
            print(f"{name:<11} {df.count():>8} rows  (Delta version {version})  {path}")
    bronze = spark.read.format("delta").load(table_path(lake, "bronze"))
    print("\nbronze documents per source:")
    for row in bronze.groupBy("source").count().orderBy("source").collect():
        print(f"  {row.source:<28} {row['count']:>6}")
    quarantine = spark.read.format("delta").load(table_path(lake, "quarantine"))
    print("quarantined records per reason:")
    for row in quarantine.groupBy("job", "reason").count().orderBy("job", "reason").collect():
        print(f"  {row.job}/{row.reason:<22} {row['count']:>6}")
