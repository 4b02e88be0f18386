"""Tokenise the gold table and pack it into a version-pinned Delta table of training windows.

    spark-submit --properties-file spark-defaults.conf jobs/build_dataset.py \\
        --input lake/gold --output lake/tokens --tokenizer-out artifacts/tokenizer \\
        [--vocab-size 8192] [--block-size 256] [--val-fraction 0.01] [--seed 0] \\
        [--stratify-by source,lang] [--tokenizer PATH | --char-level] [--export-bin DIR]

Output rows: ``window_id bigint, split string ('train'|'val'), tokens array<int>`` (exactly
``block_size + 1`` tokens). ``array<int>`` rather than packed bytes: any engine can read it,
Parquet stores it compactly, and pyarrow hands the trainer a flat int32 buffer with no decoding.

- Split by document (`jobs.splits`): ``xxhash64(seed, doc_id)`` decides train/val, so no document is
  in both; ``--stratify-by`` cuts val within each stratum (e.g. source and language). With at least
  two documents val is never empty: if the hash split gives it none (a small table), the document of
  smallest hash rank moves to val. ``--val-fraction 0`` means no val split; a one-document table with
  ``val_fraction > 0`` exits 2, and so does a val split whose documents fill no window. Documents per
  split are logged and recorded (``docs_train``/``docs_val``; the rule is the metadata's ``split``).
- Shuffle: documents are ordered by ``xxhash64(seed, 'order', doc_id)`` inside a fixed number of
  hash partitions (``--pack-partitions``), so the same seed gives the same table anywhere.
- Packing: each partition concatenates its documents (each ending in ``<|endoftext|>``) and cuts
  windows; the tail of each partition and split (< one window) is dropped and counted.
- One pass: tokenising, packing and the accounting (docs, tokens, bytes, tails) happen in a single
  ``mapInArrow`` after the shuffle, which emits the windows and, after each partition's last window,
  one counts row per split. Those rows are persisted (memory, spilling to disk) for the one Delta
  write, which takes the windows; the counts rows are then collected from the persisted rows (no
  second read or tokenisation) and checked against the rows the write committed. Only the public
  DataFrame API is used, so the job runs the same on a Spark Connect session.
- Metadata (tokenizer sha256, vocab and block size, documents, tokens, windows per split, input
  table version) is committed right after the data, as the table property ``lakelm.dataset`` with the
  same JSON in that commit's ``userMetadata`` (the version the trainer pins), and goes to the runs
  table and ``TOKENIZER_OUT/dataset.json``. A run that dies between the two commits leaves a
  version without metadata, which ``jobs/train.py`` refuses with a clear error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass

from jobs import cli
from jobs.delta_io import delta_writer, last_commit, table_version
from udfs import columns as C

log = logging.getLogger("jobs.build_dataset")

DATASET_PROPERTY = "lakelm.dataset"  # table property holding the dataset metadata (JSON)


@dataclass(frozen=True)
class DatasetConfig:
    input: str
    output: str
    tokenizer_out: str
    tokenizer: str = ""  # an existing tokenizer.json; "" = train one
    char_level: bool = False  # one token per character (compare with nanoGPT's shakespeare_char)
    vocab_size: int = 8192
    block_size: int = 256
    val_fraction: float = 0.01  # in [0, 1); 0 = no val split. Small tables still get >= 1 val document
    stratify_by: tuple[str, ...] = ()  # columns whose value combinations get val_fraction each; () = plain hash
    seed: int = 0
    bpe_sample_bytes: int = 50_000_000  # the BPE trainer sees at most this much text (a sample)
    pack_partitions: int = 8  # fixed, so the packing (and the table) does not depend on the cluster
    export_bin: str = ""  # also write nanoGPT-style train.bin / val.bin (uint16) here

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        object.__setattr__(self, "stratify_by", tuple(self.stratify_by))


def build_tokenizer(spark, docs, cfg: DatasetConfig):
    """Load, or train on a deterministic sample of ``docs``; save to ``tokenizer_out``."""
    from pyspark.sql import functions as F

    from model.tokenizer import char_level_tokenizer, load_tokenizer, train_bpe

    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    if cfg.char_level:
        from udfs.tokenize import distinct_chars

        chars = docs.select(C.TEXT).mapInPandas(distinct_chars, "c string").distinct()
        alphabet = "".join(sorted(r.c for r in chars.collect()))
        return char_level_tokenizer(alphabet)
    total = docs.agg(F.sum(F.octet_length(C.TEXT))).first()[0] or 0
    rate = min(1.0, cfg.bpe_sample_bytes / max(total, 1))
    bucket = F.abs(F.xxhash64(F.lit(cfg.seed), F.lit("bpe"), C.DOC_ID)) % 1_000_000
    sample = docs.filter(bucket < int(rate * 1_000_000)).select(C.TEXT).orderBy(C.TEXT)
    log.info("training BPE (vocab %d) on a %.1f%% sample of %d bytes", cfg.vocab_size, 100 * rate, total)
    return train_bpe((r[0] for r in sample.toLocalIterator()), cfg.vocab_size)


def transform(docs, tokenizer_path: str, cfg: DatasetConfig, rule: dict | None = None):
    """Documents -> packed rows (`udfs.tokenize.PACKED_SCHEMA`): the windows, then the counts rows.

    ``rule`` is the split (`jobs.splits.plan_split`); None = the plain hash split of ``cfg`` with no
    small-table guarantee. One pass: split and order keys and byte counts are computed in the JVM, the text is
    shuffled into ``pack_partitions`` hash partitions, sorted, then tokenised, packed and counted by one
    ``mapInArrow`` (`udfs.tokenize.tokenize_and_pack`), so nothing is re-read or re-tokenised. Window rows
    (``window_id``, ``split``, ``tokens``; `window_rows` selects them) have a null ``stats``; after its last
    window each partition emits one counts row per split it saw (`split_stats` sums them). A retried
    task emits its rows again in place of the failed attempt's, so nothing is counted twice.
    """
    from pyspark.sql import functions as F

    from jobs.splits import split_column
    from udfs.tokenize import PACKED_SCHEMA, load_tokenizer_cached, stats_batch, tokenize_and_pack, with_stats_column

    if rule is None:
        rule = {
            "seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "stratify_by": [],
            "strata": [],
            "forced_val": [],
            "forced_train": [],
        }
    window = cfg.block_size + 1

    def pack(batches):
        from pyspark import TaskContext

        from udfs.faults import maybe_kill_worker

        tok = load_tokenizer_cached(tokenizer_path)
        stats: dict[str, list[int]] = {}
        for i, out in enumerate(tokenize_and_pack(batches, tok, window, TaskContext.get().partitionId(), stats)):
            yield with_stats_column(out)
            if i == 0:
                maybe_kill_worker("build_dataset")  # test-only fault switch, after the first windows left
        if stats:
            yield stats_batch(stats)

    return (
        docs.select(
            C.DOC_ID,
            C.TEXT,
            split_column(rule).alias("split"),
            F.xxhash64(F.lit(cfg.seed), F.lit("order"), C.DOC_ID).alias("order_key"),
            F.octet_length(C.TEXT).cast("long").alias("n_bytes"),
        )
        .repartition(cfg.pack_partitions, "order_key")
        .sortWithinPartitions("order_key", C.DOC_ID)
        .select("split", C.TEXT, "n_bytes")
        .mapInArrow(pack, PACKED_SCHEMA)
    )


def window_rows(packed):
    """The window rows of `transform`'s output: ``window_id``, ``split``, ``tokens`` (the token table)."""
    from pyspark.sql import functions as F

    return packed.filter(F.col("stats").isNull()).drop("stats")


def split_stats(packed) -> dict[str, dict[str, int]]:
    """Per split, the counts rows of `transform`'s output summed: ``{split: {field: n}}`` (`STAT_FIELDS`)."""
    from pyspark.sql import functions as F

    from udfs.tokenize import STAT_FIELDS, add_stats

    totals: dict[str, list[int]] = {}
    for row in packed.filter(F.col("stats").isNotNull()).select("split", "stats").collect():
        add_stats(totals, {row.split: row.stats})
    return {split: dict(zip(STAT_FIELDS, values)) for split, values in totals.items()}


def _sql_string(value: str) -> str:
    """A Spark SQL string literal of ``value``."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def export_bin(spark, path: str, out_dir: str) -> dict[str, int]:
    """Write ``train.bin`` / ``val.bin`` (uint16, windows in window_id order) for other trainers."""
    import numpy as np

    os.makedirs(out_dir, exist_ok=True)
    sizes = {}
    for split in ("train", "val"):
        df = spark.read.format("delta").load(path).filter(f"split = '{split}'").orderBy("window_id")
        with open(os.path.join(out_dir, f"{split}.bin"), "wb") as fh:
            n = 0
            for row in df.select("tokens").toLocalIterator():
                arr = np.asarray(row.tokens, dtype=np.uint16)
                fh.write(arr.tobytes())
                n += len(arr)
        sizes[split] = n
    return sizes


def run(spark, cfg: DatasetConfig, record) -> None:
    if cfg.tokenizer and cfg.char_level:
        raise cli.UsageError("pass either --tokenizer or --char-level, not both")
    version = table_version(spark, cfg.input)
    if version is None:
        raise cli.UsageError(f"--input {cfg.input} is not a Delta table")
    table = spark.read.format("delta").option("versionAsOf", version).load(cfg.input)
    missing = sorted({C.DOC_ID, C.TEXT, *cfg.stratify_by} - set(table.columns))
    if missing:
        raise cli.UsageError(f"--input {cfg.input} lacks columns {missing} (it has {sorted(table.columns)})")
    docs = table.select(C.DOC_ID, C.TEXT, *[c for c in cfg.stratify_by if c not in (C.DOC_ID, C.TEXT)])
    record.input_versions[cfg.input] = version
    from jobs.splits import plan_split

    try:  # before the tokenizer: a table that cannot be split fails fast
        rule = plan_split(docs, cfg.seed, cfg.val_fraction, cfg.stratify_by)
    except ValueError as exc:
        raise cli.UsageError(f"--input {cfg.input}: {exc}") from exc

    tok = build_tokenizer(spark, docs, cfg)
    if tok.vocab_size > 65535 and cfg.export_bin:
        raise cli.UsageError(f"vocab {tok.vocab_size} does not fit uint16 for --export-bin")
    os.makedirs(cfg.tokenizer_out, exist_ok=True)
    tok_path = os.path.join(cfg.tokenizer_out, "tokenizer.json")
    tok.save(tok_path)

    from pyspark import StorageLevel

    # the only pass over the text: tokenise, pack and count, persisted so that the counts rows are read
    # back from the write's own rows (a heap-only cache could not hold a large table's windows)
    packed = transform(docs, tok_path, cfg, rule).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        delta_writer(window_rows(packed)).mode("overwrite").option("overwriteSchema", "true").save(cfg.output)
        stats = split_stats(packed)
    finally:
        packed.unpersist()
    window = cfg.block_size + 1
    windows = {
        s: (stats[s]["tokens"] - stats[s]["tail_tokens"]) // window if s in stats else 0 for s in ("train", "val")
    }
    data_version, metrics = last_commit(spark, cfg.output)
    rows_written = int(metrics.get("numOutputRows", -1))
    if rows_written != sum(windows.values()):  # every token is in a window or in the counted tail
        raise RuntimeError(
            f"the counts do not match the table: {sum(windows.values())} windows counted, "
            f"{rows_written} rows written to {cfg.output} (version {data_version})"
        )
    docs_ok = {s: st["docs"] for s, st in stats.items() if st["docs"]}
    if rule["docs"]["val"] and not windows["val"]:  # the trainer would report no validation loss
        raise cli.UsageError(
            f"the val split ({rule['docs']['val']} documents, {docs_ok.get('val', 0)} tokenised, "
            f"{stats.get('val', {}).get('tokens', 0)} tokens) fills no window of {window} tokens: lower "
            f"--block-size, raise --val-fraction, or pass --val-fraction 0 for no val split; "
            f"version {data_version} of {cfg.output} has no dataset metadata, so train refuses it"
        )
    meta = {
        "tokenizer_sha256": tok.sha256,
        "tokenizer_path": os.path.abspath(tok_path),
        "vocab_size": tok.vocab_size,
        "block_size": cfg.block_size,
        "char_level": cfg.char_level,
        "seed": cfg.seed,
        "input": cfg.input,
        "input_version": version,
        "docs": docs_ok,
        "docs_failed": sum(st["docs_failed"] for st in stats.values()),
        "tokens": {s: stats[s]["tokens"] for s in docs_ok},
        "windows": windows,
        "tail_tokens": {s: stats[s]["tail_tokens"] if s in stats else 0 for s in ("train", "val")},
        "bytes_per_token": float(sum(st["bytes"] for st in stats.values()))
        / max(sum(st["tokens"] for st in stats.values()), 1),
        "data_version": data_version,
        "split": rule,
    }
    # the metadata commit: table property + commit userMetadata (what jobs/train.py reads at a version)
    meta_json = json.dumps(meta, sort_keys=True)
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", meta_json)
    try:
        spark.sql(
            f"ALTER TABLE delta.`{cfg.output.replace('`', '``')}` SET TBLPROPERTIES "
            f"('{DATASET_PROPERTY}' = {_sql_string(meta_json)})"
        )
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
    meta["output_version"] = table_version(spark, cfg.output)
    with open(os.path.join(cfg.tokenizer_out, "dataset.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)
    if cfg.export_bin:
        meta["exported_tokens"] = export_bin(spark, cfg.output, cfg.export_bin)
    record.output_versions[cfg.output] = meta["output_version"]
    record.counts.update(
        docs=sum(docs_ok.values()) + meta["docs_failed"],
        docs_tokenized=sum(docs_ok.values()),
        docs_train=rule["docs"]["train"],
        docs_val=rule["docs"]["val"],
        docs_failed=meta["docs_failed"],
        tokens=sum(meta["tokens"].values()),
        windows_train=windows["train"],
        windows_val=windows["val"],
        tail_tokens=sum(meta["tail_tokens"].values()),
    )
    record.extra.update(meta)
    log.info("build_dataset: %s", json.dumps(meta, sort_keys=True))
    print(json.dumps({"run_id": record.run_id, **record.counts}, sort_keys=True))


def build_parser() -> argparse.ArgumentParser:
    """Flags map 1:1 onto ``DatasetConfig`` fields (``--config`` supplies base values)."""
    p = cli.job_parser("Tokenise GOLD and pack it into a Delta token table.", DatasetConfig)
    p.add_argument("--input", help="gold table (default: LAKE/gold)")
    p.add_argument("--output", help="token table (default: LAKE/tokens)")
    p.add_argument("--tokenizer-out", help="folder for tokenizer.json and dataset.json (required)")
    p.add_argument("--tokenizer", help="use this tokenizer.json instead of training one")
    p.add_argument("--char-level", action="store_true", default=None, help="one token per character")
    for flag, text in (
        ("--vocab-size", "BPE vocabulary size, special tokens included"),
        ("--block-size", "tokens per training window (each row holds block_size + 1)"),
        ("--seed", "seed of the train/val split and of the document order"),
        (
            "--pack-partitions",
            "hash partitions packed independently (fixed, so the table does not depend on the cluster)",
        ),
        ("--bpe-sample-bytes", "text the BPE trainer sees at most (a deterministic sample)"),
    ):
        p.add_argument(flag, type=int, help=text)
    p.add_argument("--val-fraction", type=float, help="val share of documents in [0, 1); 0 = no val split")
    p.add_argument(
        "--stratify-by",
        type=lambda v: tuple(c for c in v.split(",") if c),
        help="comma-separated columns (e.g. source,lang): val_fraction of each stratum goes to val",
    )
    p.add_argument("--export-bin", help="also write train.bin/val.bin (uint16) into this folder")
    return p


def build_config(args: argparse.Namespace) -> DatasetConfig:
    """DatasetConfig from the flags over ``--config``; table paths from either, else the lake's."""
    return cli.build_config(
        args, DatasetConfig, tables={"input": "gold", "output": "tokens"}, required=("tokenizer_out",)
    )


def main(argv: list[str] | None = None) -> int:
    return cli.run_main("build_dataset", argv, build_parser(), build_config, run)


if __name__ == "__main__":
    sys.exit(main())
