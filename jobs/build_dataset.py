"""Tokenise the gold table and pack it into a version-pinned Delta table of training windows.

    spark-submit --properties-file spark-defaults.conf jobs/build_dataset.py \\
        --input lake/gold --output lake/tokens --tokenizer-out artifacts/tokenizer \\
        [--vocab-size 8192] [--block-size 256] [--val-fraction 0.01] [--seed 0] \\
        [--stratify-by source,lang] [--tokenizer PATH | --char-level] [--export-bin DIR]

Output rows: ``window_id bigint, split string ('train'|'val'), tokens array<int>`` (exactly
``block_size + 1`` tokens). ``array<int>`` rather than packed bytes: any engine can read it,
Parquet stores it compactly, and pyarrow hands the trainer a flat int32 buffer with no decoding.

- Split by document (``jobs.transforms.splits``): ``xxhash64(seed, doc_id)`` decides train/val, so no document
  is in both; ``--stratify-by`` cuts val within each stratum (e.g. source and language). With at least two
  documents val is never empty (a small table's smallest-hash document moves to val). ``--val-fraction 0``
  means no val split; a one-document table with ``val_fraction > 0`` exits 2, and so does a val split whose
  documents fill no window. Documents per split are recorded (``docs_train``/``docs_val``).
- Shuffle: documents are ordered by ``xxhash64(seed, 'order', doc_id)`` inside a fixed number of
  hash partitions (``--pack-partitions``), so the same seed gives the same table anywhere.
- Packing: each partition concatenates its documents (each ending in ``<|endoftext|>``) and cuts
  windows; the tail of each partition and split (< one window) is dropped and counted.
- One pass over the text (``jobs/transforms/tokens.py``); the counts are checked against the rows written.
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

from jobs.common import cli
from jobs.common.delta_io import table_version
from jobs.transforms.splits import plan_split
from jobs.transforms.tokens import (
    DatasetConfig,
    build_tokenizer,
    commit_metadata,
    dataset_metadata,
    export_bin,
    write_windows,
)
from udfs import columns as C

log = logging.getLogger("jobs.build_dataset")


def run(spark, cfg: DatasetConfig, record) -> None:
    if cfg.tokenizer and cfg.char_level:
        raise cli.UsageError("pass either --tokenizer or --char-level, not both")
    table = cli.read_input_table(spark, cfg.input, record, columns=(C.DOC_ID, C.TEXT, *cfg.stratify_by))
    version = record.input_versions[cfg.input]
    docs = table.select(C.DOC_ID, C.TEXT, *[c for c in cfg.stratify_by if c not in (C.DOC_ID, C.TEXT)])
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

    stats, windows, data_version = write_windows(spark, docs, tok_path, cfg, rule)
    docs_ok = {s: st["docs"] for s, st in stats.items() if st["docs"]}
    if rule["docs"]["val"] and not windows["val"]:  # the trainer would report no validation loss
        raise cli.UsageError(
            f"the val split ({rule['docs']['val']} documents, {docs_ok.get('val', 0)} tokenised, "
            f"{stats.get('val', {}).get('tokens', 0)} tokens) fills no window of {cfg.block_size + 1} tokens: lower "
            f"--block-size, raise --val-fraction, or pass --val-fraction 0 for no val split; "
            f"version {data_version} of {cfg.output} has no dataset metadata, so train refuses it"
        )
    meta = dataset_metadata(tok, tok_path, cfg, version, rule, stats, windows, data_version)
    commit_metadata(spark, cfg.output, meta)
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
