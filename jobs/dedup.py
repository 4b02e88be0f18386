"""CLI of deduplication (UDF: udfs/dedup.py): exact + MinHash LSH dedup of the silver table into gold, in Spark.

    spark-submit --properties-file spark-defaults.conf jobs/dedup.py \\
        --input lake/silver --output lake/gold --rejected lake/rejected [--clusters lake/clusters] \\
        [--against lake/gold] [--threshold 0.8] [--ngram 5] [--num-perm 112] [--bands B --rows R] \\
        [--no-verify] [--recheck-window 64] [--checkpoint-dir DIR]

1. Exact: documents with the same normalised text (case-folded, whitespace collapsed) keep the
   smallest doc_id; the others are rejected as ``dedup_exact`` with ``duplicate_of``.
2. Fuzzy: MinHash signatures of word n-grams of simplified text (numpy, per Arrow batch); LSH bands
   (chosen for ``--threshold`` by minimising false-positive + false-negative areas unless given);
   every member of a band bucket is linked to the bucket's smallest doc_id (a star: n-1 edges, never
   the n^2 pairs of a giant bucket); with verification (default) an edge is kept only when the exact
   Jaccard of the two documents' shingle sets is at least ``--threshold`` (computed in Spark for
   the candidate endpoints only), so the bands can favour recall. A member whose check against the
   hub fails is then compared with its ``--recheck-window`` neighbours in doc_id order within that
   bucket (see ``lsh_edges``), so two duplicates behind a dissimilar hub are still found.
3. Connected components of the edges in Spark (jobs/transforms/components.py); one representative per
   cluster: a document already in ``--against`` if any, else the smallest doc_id. The others are
   rejected as ``dedup_fuzzy`` with ``duplicate_of`` = the representative.

Accounting: ``in = kept + dedup_exact + dedup_fuzzy``. With ``--against GOLD``, the new documents
are deduplicated against GOLD (using its stored ``norm_hash`` and MinHash columns, nothing
recomputed) and only new representatives are added to ``--output``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jobs.common import cli
from jobs.common.staging import delete_path, parquet_stager
from jobs.transforms.gold import DedupConfig, minhash_config, write_outputs
from udfs import columns as C

log = logging.getLogger("jobs.dedup")


def run(spark, cfg: DedupConfig, record) -> None:

    docs = cli.read_input_table(spark, cfg.input, record, columns=(C.DOC_ID, C.TEXT))
    existing = None
    if cfg.against:
        need = (C.DOC_ID, C.TEXT, "norm_hash", "minhash_signature", "minhash_bands")
        gold = cli.read_input_table(spark, cfg.against, record, "--against", need, ": was it written by dedup?")
        existing = gold.select(*need)
        docs = docs.join(existing.select(C.DOC_ID), C.DOC_ID, "left_anti")  # already in gold: not new
    mh_cfg = minhash_config(cfg)
    checkpoint_dir = cfg.checkpoint_dir or cfg.output.rstrip("/") + "_checkpoints"
    # Intermediate results (MinHash, shingles, every connected-components round) are staged as Parquet
    # under the checkpoint folder, not cached: a heap cache of the wide rows (text + 112 signature
    # values) needs driver memory that grows with the corpus in local mode (OOM at 300k documents
    # with 1 GiB), while a staged file streams. Written and read back through the DataFrame API, the
    # staged rounds do what a reliable checkpoint does, on classic and Spark Connect sessions alike.
    staging = f"{checkpoint_dir.rstrip('/')}/staging-{record.run_id}"
    try:
        write_outputs(spark, cfg, docs, existing, mh_cfg, parquet_stager(spark, staging), record)
    finally:
        delete_path(staging)


def build_parser() -> argparse.ArgumentParser:
    """Flags map 1:1 onto ``DedupConfig`` fields (``--config`` supplies base values)."""
    p = cli.job_parser("Exact + MinHash LSH dedup of SILVER into GOLD.", DedupConfig)
    p.add_argument("--input", help="silver table (default: LAKE/silver)")
    p.add_argument("--output", help="gold table (default: LAKE/gold)")
    p.add_argument("--rejected", help="rejected table (default: LAKE/rejected)")
    p.add_argument("--clusters", help="write (doc_id, cluster_id, cluster_size) for every input doc here")
    p.add_argument("--against", help="existing gold table to deduplicate new documents against")
    p.add_argument("--threshold", type=float, help="Jaccard similarity of shingle sets that makes a duplicate")
    for flag, text in (
        ("--ngram", "words per shingle"),
        ("--num-perm", "MinHash permutations (bands x rows when both are given)"),
        ("--bands", "LSH bands; 0 = chosen for the threshold (give --rows too)"),
        ("--rows", "rows per LSH band; 0 = chosen for the threshold (give --bands too)"),
    ):
        p.add_argument(flag, type=int, help=text)
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        default=None,
        help="keep every LSH edge, without checking the exact Jaccard of the two documents (default: verify)",
    )
    p.add_argument(
        "--recheck-window",
        type=int,
        help="members within this many places in a bucket re-checked when the hub check fails",
    )
    p.add_argument("--checkpoint-dir", help="checkpoints of the connected components (default: OUTPUT_checkpoints)")
    return p


def build_config(args: argparse.Namespace) -> DedupConfig:
    """DedupConfig from the flags over ``--config``; table paths from either, else the lake's.

    Raises:
        cli.UsageError: also for only one of bands/rows and a recheck window below 1.
    """
    tables = {"input": "silver", "output": "gold", "rejected": "rejected", "clusters": None, "against": None}
    cfg = cli.build_config(args, DedupConfig, tables=tables)
    if bool(cfg.bands) != bool(cfg.rows):
        raise cli.UsageError("give both --bands and --rows, or neither")
    if cfg.recheck_window < 1:
        raise cli.UsageError(f"--recheck-window must be >= 1, got {cfg.recheck_window}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    return cli.run_main("dedup", argv, build_parser(), build_config, run)


if __name__ == "__main__":
    sys.exit(main())
