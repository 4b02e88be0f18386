"""Tokens: gold tokenised and packed into fixed-size training windows, written as a Delta table with its metadata.

The pieces of ``jobs/build_dataset.py``: ``build_tokenizer`` trains (or loads) the tokenizer, ``transform`` tokenises,
packs and counts in one ``mapInArrow`` pass, ``write_windows`` writes the windows and checks them against the
counts, ``dataset_metadata`` and ``commit_metadata`` record what the trainer pins, ``export_bin`` writes
nanoGPT-style ``.bin`` files.

Tokenising, packing and the accounting (docs, tokens, bytes, tails) happen in a single
``mapInArrow`` after the shuffle, which emits the windows and, after each partition's last window,
one counts row per split. Those rows are persisted (memory, spilling to disk) for the one Delta
write, which takes the windows; the counts rows are then collected from the persisted rows (no
second read or tokenisation) and checked against the rows the write committed. Only the public
DataFrame API is used, so the job runs the same on a Spark Connect session.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from jobs.common.delta_io import delta_writer, last_commit
from udfs import columns as C

log = logging.getLogger("jobs.build_dataset")  # its lines are the build_dataset job's


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

    ``rule`` is the split (`jobs.transforms.splits.plan_split`); None = the plain hash split of ``cfg`` with no
    small-table guarantee. One pass: split and order keys and byte counts are computed in the JVM, the text is
    shuffled into ``pack_partitions`` hash partitions, sorted, then tokenised, packed and counted by one
    ``mapInArrow`` (`udfs.tokenize.tokenize_and_pack`), so nothing is re-read or re-tokenised. Window rows
    (``window_id``, ``split``, ``tokens``; `window_rows` selects them) have a null ``stats``; after its last
    window each partition emits one counts row per split it saw (`split_stats` sums them). A retried
    task emits its rows again in place of the failed attempt's, so nothing is counted twice.
    """
    from pyspark.sql import functions as F

    from jobs.transforms.splits import split_column
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


def write_windows(spark, docs, tok_path: str, cfg: DatasetConfig, rule: dict):
    """Tokenise, pack and write ``docs`` to ``cfg.output`` in one pass; return ``(stats, windows, data_version)``.

    ``stats`` is `split_stats` of the pass, ``windows`` the windows per split the counts imply, and
    ``data_version`` the table version the write committed.

    Raises:
        RuntimeError: when the rows the write committed differ from the windows counted.
    """
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
    return stats, windows, data_version


def dataset_metadata(tok, tok_path: str, cfg: DatasetConfig, version: int, rule: dict, stats, windows, data_version):
    """The dataset metadata the trainer pins: tokenizer, sizes, documents, tokens and windows per split, lineage.

    Args:
        tok: the tokenizer (its ``sha256`` and ``vocab_size``); tok_path: where it was saved.
        version: the input table's version; rule: the split rule (`plan_split`).
        stats, windows, data_version: what `write_windows` returned.
    """
    docs_ok = {s: st["docs"] for s, st in stats.items() if st["docs"]}
    return {
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


def commit_metadata(spark, path: str, meta: dict) -> None:
    """Commit ``meta`` as the table property ``lakelm.dataset`` of ``path``, with the same JSON as the commit's
    ``userMetadata`` (what ``jobs/train.py`` reads at a version)."""
    meta_json = json.dumps(meta, sort_keys=True)
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", meta_json)
    try:
        spark.sql(
            f"ALTER TABLE delta.`{path.replace('`', '``')}` SET TBLPROPERTIES "
            f"('{DATASET_PROPERTY}' = {_sql_string(meta_json)})"
        )
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
