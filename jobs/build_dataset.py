"""Tokenise the gold table and pack it into a version-pinned Delta table of training windows.

    spark-submit --properties-file spark-defaults.conf jobs/build_dataset.py \\
        --input lake/gold --output lake/tokens --tokenizer-out artifacts/tokenizer \\
        [--vocab-size 8192] [--block-size 256] [--val-fraction 0.01] [--seed 0] \\
        [--tokenizer PATH | --char-level] [--export-bin DIR]

Output rows: ``window_id bigint, split string ('train'|'val'), tokens array<int>`` (exactly
``block_size + 1`` tokens). ``array<int>`` rather than packed bytes: any engine can read it,
Parquet stores it compactly, and pyarrow hands the trainer a flat int32 buffer with no decoding.

- Split by document: ``xxhash64(seed, doc_id)`` decides train/val, so no document is in both.
- Shuffle: documents are ordered by ``xxhash64(seed, 'order', doc_id)`` inside a fixed number of
  hash partitions (``--pack-partitions``), so the same seed gives the same table anywhere.
- Packing: each partition concatenates its documents (each ending in ``<|endoftext|>``) and cuts
  windows; the tail of each partition and split (< one window) is dropped and counted.
- One pass: tokenising, packing and the accounting (docs, tokens, bytes, tails) happen in a single
  ``mapInArrow`` after the shuffle; the windows are persisted, their stats rows collected, then written.
- Metadata (tokenizer sha256, vocab and block size, documents, tokens, windows per split, input
  table version) goes into the Delta commit (``userMetadata``), the runs table and
  ``TOKENIZER_OUT/dataset.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass

from jobs import cli
from jobs.delta_io import table_version
from jobs.spark import get_spark
from udfs import columns as C

log = logging.getLogger("jobs.build_dataset")


@dataclass(frozen=True)
class DatasetConfig:
    input: str
    output: str
    tokenizer_out: str
    tokenizer: str = ""  # an existing tokenizer.json; "" = train one
    char_level: bool = False  # one token per character (compare with nanoGPT's shakespeare_char)
    vocab_size: int = 8192
    block_size: int = 256
    val_fraction: float = 0.01
    seed: int = 0
    bpe_sample_bytes: int = 50_000_000  # the BPE trainer sees at most this much text (a sample)
    pack_partitions: int = 8  # fixed, so the packing (and the table) does not depend on the cluster
    export_bin: str = ""  # also write nanoGPT-style train.bin / val.bin (uint16) here


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


def transform(docs, tokenizer_path: str, cfg: DatasetConfig):
    """Documents -> packed windows plus one tail/stats row per (pack partition, split).

    One pass: split and order keys and byte counts are computed in the JVM, the text is shuffled into
    ``pack_partitions`` hash partitions, sorted, then tokenised, packed and counted by one
    ``mapInArrow`` (`udfs.tokenize.tokenize_and_pack`), so nothing is re-read or re-tokenised.
    """
    from pyspark.sql import functions as F

    from udfs.tokenize import PACKED_SCHEMA, load_tokenizer_cached, tokenize_and_pack

    is_val = (F.abs(F.xxhash64(F.lit(cfg.seed), F.lit("split"), C.DOC_ID)) % 1_000_000) < int(cfg.val_fraction * 1_000_000)
    window = cfg.block_size + 1

    def pack(batches):
        from pyspark import TaskContext

        tok = load_tokenizer_cached(tokenizer_path)
        yield from tokenize_and_pack(batches, tok, window, TaskContext.get().partitionId())

    return (
        docs.select(C.DOC_ID, C.TEXT, F.when(is_val, "val").otherwise("train").alias("split"),
                    F.xxhash64(F.lit(cfg.seed), F.lit("order"), C.DOC_ID).alias("order_key"),
                    F.octet_length(C.TEXT).cast("long").alias("n_bytes"))
        .repartition(cfg.pack_partitions, "order_key")
        .sortWithinPartitions("order_key", C.DOC_ID)
        .select("split", C.TEXT, "n_bytes")
        .mapInArrow(pack, PACKED_SCHEMA)
    )


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
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    if cfg.tokenizer and cfg.char_level:
        raise cli.UsageError("pass either --tokenizer or --char-level, not both")
    version = table_version(spark, cfg.input)
    if version is None:
        raise cli.UsageError(f"--input {cfg.input} is not a Delta table")
    docs = spark.read.format("delta").option("versionAsOf", version).load(cfg.input).select(C.DOC_ID, C.TEXT)
    record.input_versions[cfg.input] = version

    tok = build_tokenizer(spark, docs, cfg)
    if tok.vocab_size > 65535 and cfg.export_bin:
        raise cli.UsageError(f"vocab {tok.vocab_size} does not fit uint16 for --export-bin")
    os.makedirs(cfg.tokenizer_out, exist_ok=True)
    tok_path = os.path.join(cfg.tokenizer_out, "tokenizer.json")
    tok.save(tok_path)

    packed = transform(docs, tok_path, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    stats = packed.filter("is_tail").select("split", F.size("tokens").alias("tail"), "docs", "docs_failed",
                                            "n_tokens", "n_bytes").collect()  # the only pass over the text
    windows = {s: 0 for s in ("train", "val")}
    tail = {s: 0 for s in ("train", "val")}
    docs_ok, tokens, errors, n_bytes = {}, {}, 0, 0
    for r in stats:
        tail[r.split] += int(r.tail)
        docs_ok[r.split] = docs_ok.get(r.split, 0) + int(r.docs)
        tokens[r.split] = tokens.get(r.split, 0) + int(r.n_tokens)
        errors += int(r.docs_failed)
        n_bytes += int(r.n_bytes)
    for split in ("train", "val"):  # every token is in a window or in the counted tail
        windows[split] = (tokens.get(split, 0) - tail[split]) // (cfg.block_size + 1)
    docs_ok = {s: n for s, n in docs_ok.items() if n}
    tokens = {s: tokens[s] for s in docs_ok}
    meta = {
        "tokenizer_sha256": tok.sha256, "tokenizer_path": os.path.abspath(tok_path), "vocab_size": tok.vocab_size, "block_size": cfg.block_size,
        "char_level": cfg.char_level, "seed": cfg.seed, "input": cfg.input, "input_version": version,
        "docs": docs_ok, "docs_failed": errors, "tokens": tokens, "windows": windows, "tail_tokens": tail,
        "bytes_per_token": float(n_bytes) / max(sum(tokens.values()), 1),
    }
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", json.dumps(meta, sort_keys=True))
    try:
        (packed.filter(~F.col("is_tail")).select("window_id", "split", "tokens")
         .write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(cfg.output))
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
    packed.unpersist()
    meta["output_version"] = table_version(spark, cfg.output)
    with open(os.path.join(cfg.tokenizer_out, "dataset.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2, sort_keys=True)
    if cfg.export_bin:
        meta["exported_tokens"] = export_bin(spark, cfg.output, cfg.export_bin)
    record.output_versions[cfg.output] = meta["output_version"]
    record.counts.update(docs=sum(docs_ok.values()) + errors, docs_tokenized=sum(docs_ok.values()),
                         docs_failed=errors, tokens=sum(tokens.values()), windows_train=windows["train"],
                         windows_val=windows["val"], tail_tokens=sum(tail.values()))
    record.extra.update(meta)
    log.info("build_dataset: %s", json.dumps(meta, sort_keys=True))
    print(json.dumps({"run_id": record.run_id, **record.counts}, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    p = argparse.ArgumentParser(description="Tokenise GOLD and pack it into a Delta token table.")
    p.add_argument("--input", help="gold table (default: LAKE/gold)")
    p.add_argument("--output", help="token table (default: LAKE/tokens)")
    p.add_argument("--tokenizer-out", required=True, help="folder for tokenizer.json and dataset.json")
    p.add_argument("--tokenizer", help="use this tokenizer.json instead of training one")
    p.add_argument("--char-level", action="store_true", default=None)
    for name in ("vocab_size", "block_size", "seed", "pack_partitions", "bpe_sample_bytes"):
        p.add_argument("--" + name.replace("_", "-"), type=int)
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--export-bin", help="also write train.bin/val.bin (uint16) into this folder")
    p.add_argument("--config", help="JSON file with DatasetConfig fields; flags override it")
    cli.add_lake_args(p)
    args = p.parse_args(argv)
    try:
        overrides = {k: v for k, v in vars(args).items() if k not in ("lake", "runs", "config")}
        overrides["input"] = cli.resolve_table(args.input, args.lake, "gold", "--input")
        overrides["output"] = cli.resolve_table(args.output, args.lake, "tokens", "--output")
        cfg = cli.load_config_file(args.config, DatasetConfig, overrides)
        runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
    except (ValueError, cli.UsageError) as exc:
        log.error("%s", exc)
        return cli.EXIT_USAGE
    log.info("config: %s", asdict(cfg))
    spark = get_spark("lakelm-build-dataset")
    return cli.run_job("build_dataset", asdict(cfg), runs, lambda rec: run(spark, cfg, rec), spark)


if __name__ == "__main__":
    sys.exit(main())
