"""Exact + fuzzy (MinHash LSH) deduplication of the silver table into gold, all in Spark.

    spark-submit --properties-file spark-defaults.conf jobs/dedup.py \\
        --input lake/silver --output lake/gold --rejected lake/rejected [--clusters lake/clusters] \\
        [--against lake/gold] [--threshold 0.8] [--ngram 5] [--num-perm 112] [--bands B --rows R] \\
        [--no-verify] [--checkpoint-dir DIR]

1. Exact: documents with the same normalised text (case-folded, whitespace collapsed) keep the
   smallest doc_id; the others are rejected as ``dedup_exact`` with ``duplicate_of``.
2. Fuzzy: MinHash signatures of word n-grams of simplified text (numpy, per Arrow batch); LSH bands
   (chosen for ``--threshold`` by minimising false-positive + false-negative areas unless given);
   every member of a band bucket is linked to the bucket's smallest doc_id (a star: n-1 edges, never
   the n^2 pairs of a giant bucket); with verification (default) an edge is kept only when the exact
   Jaccard of the two documents' shingle sets is at least ``--threshold`` (computed in Spark for
   the candidate endpoints only), so the bands can favour recall.
3. Connected components of the edges in Spark (jobs/components.py); one representative per
   cluster: a document already in ``--against`` if any, else the smallest doc_id. The others are
   rejected as ``dedup_fuzzy`` with ``duplicate_of`` = the representative.

Accounting: ``in = kept + dedup_exact + dedup_fuzzy``. With ``--against GOLD``, the new documents
are deduplicated against GOLD (using its stored ``norm_hash`` and MinHash columns, nothing
recomputed) and only new representatives are added to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass

from jobs import cli
from jobs.delta_io import append_new, table_version
from jobs.spark import get_spark
from udfs import columns as C

log = logging.getLogger("jobs.dedup")


@dataclass(frozen=True)
class DedupConfig:
    input: str
    output: str
    rejected: str
    clusters: str = ""
    against: str = ""
    threshold: float = 0.8
    ngram: int = 5  # words per shingle (datatrove)
    num_perm: int = 112  # datatrove: 14 bands x 8 rows
    bands: int = 0  # 0 = chosen for the threshold by optimal_bands_rows
    rows: int = 0
    verify: bool = True  # keep an LSH edge only if the exact Jaccard of the two shingle sets >= threshold
    checkpoint_dir: str = ""  # for connected components; "" = <output>_checkpoints


def minhash_config(cfg: DedupConfig):
    from udfs.curation.minhash import MinHashConfig, optimal_bands_rows

    # With exact verification false positives cost only a check, so the bands favour recall
    # (fp weight 0.05: 14 x 8 at 0.8 / 112, datatrove's setting); without it, balance both errors.
    fp_weight = 0.05 if cfg.verify else 0.5
    bands, rows = (cfg.bands, cfg.rows) if cfg.bands and cfg.rows else optimal_bands_rows(
        cfg.threshold, cfg.num_perm, fp_weight, 1 - fp_weight)
    return MinHashConfig(n_grams=cfg.ngram, num_perm=bands * rows, bands=bands, rows=rows)


def transform(docs, existing, cfg: DedupConfig, mh_cfg, checkpoint: bool = True, materialize=None):
    """Return ``(labelled, iterations)``: every input doc with ``drop_reason``, ``duplicate_of``,
    ``cluster_id``, ``cluster_size`` and the columns gold stores (``norm_hash``, MinHash).

    ``existing`` is None or a DataFrame of (doc_id, norm_hash, minhash_signature, minhash_bands) of
    documents already in gold: they take part in matching and win representative choice but are
    not part of the output. ``materialize`` (DataFrame -> DataFrame, default: identity) is applied
    to the MinHash signatures, which both the LSH graph and the output read: the job passes a
    stage-to-disk function so signatures are computed once and never cached on the heap.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.components import connected_components
    from udfs.dedup import make_minhash_udf, make_shingles_udf

    norm = F.sha2(F.lower(F.trim(F.regexp_replace(F.col(C.TEXT), r"\s+", " "))), 256)
    docs = docs.withColumn("norm_hash", norm).withColumn("_existing", F.lit(False))
    # --- exact: one representative per normalised text (an existing gold doc wins)
    pool = docs.select(C.DOC_ID, "norm_hash", "_existing")
    if existing is not None:
        pool = pool.unionByName(existing.select(C.DOC_ID, "norm_hash", F.lit(True).alias("_existing")))
    by_hash = Window.partitionBy("norm_hash").orderBy(F.col("_existing").desc(), C.DOC_ID)
    exact_rep = pool.withColumn("_rep", F.first(C.DOC_ID).over(by_hash)).select(C.DOC_ID, "_rep")
    docs = docs.join(exact_rep, C.DOC_ID)
    reps = docs.filter(F.col(C.DOC_ID) == F.col("_rep"))

    # --- fuzzy: MinHash + LSH star edges + verification, on exact representatives only
    mh = reps.select(C.DOC_ID, make_minhash_udf(mh_cfg)(C.TEXT).alias("m")).select(C.DOC_ID, "m.*")
    if materialize is not None:
        mh = materialize(mh)
    nodes = mh.select(C.DOC_ID, "minhash_signature", "minhash_bands", F.lit(False).alias("_existing"),
                      F.col("minhash_flag"))
    if existing is not None:
        nodes = nodes.unionByName(existing.select(C.DOC_ID, "minhash_signature", "minhash_bands",
                                                  F.lit(True).alias("_existing"), F.lit(None).cast("string").alias("minhash_flag")))
    matchable = nodes.filter(F.col("minhash_flag").isNull() | (F.col("minhash_flag") != "empty"))
    exploded = matchable.select(C.DOC_ID, F.posexplode("minhash_bands").alias("band", "bucket"))
    hubs = exploded.groupBy("band", "bucket").agg(F.min(C.DOC_ID).alias("hub"), F.count("*").alias("n")).filter("n > 1")
    edges = exploded.join(hubs, ["band", "bucket"]).filter(F.col(C.DOC_ID) != F.col("hub")) \
        .select(F.col(C.DOC_ID).alias("src"), F.col("hub").alias("dst")).distinct()
    if cfg.verify:  # exact Jaccard of the candidate pairs' shingle sets, computed for endpoints only
        texts = reps.select(C.DOC_ID, C.TEXT)
        if existing is not None:
            texts = texts.unionByName(existing.select(C.DOC_ID, C.TEXT))
        ends = edges.select(F.col("src").alias(C.DOC_ID)).union(edges.select(F.col("dst").alias(C.DOC_ID))).distinct()
        sh = texts.join(ends, C.DOC_ID).select(C.DOC_ID, make_shingles_udf(mh_cfg.n_grams)(C.TEXT).alias("sh"))
        a = sh.withColumnRenamed(C.DOC_ID, "src").withColumnRenamed("sh", "sa")
        b = sh.withColumnRenamed(C.DOC_ID, "dst").withColumnRenamed("sh", "sb")
        jac = F.size(F.array_intersect("sa", "sb")) / F.greatest(F.size(F.array_union("sa", "sb")), F.lit(1))
        edges = edges.join(a, "src").join(b, "dst").filter(jac >= cfg.threshold).select("src", "dst")
    comps, iterations = connected_components(edges, checkpoint=checkpoint)

    flags = nodes.select(C.DOC_ID, "_existing")
    labelled = flags.join(comps.withColumnRenamed("node", C.DOC_ID), C.DOC_ID, "left") \
        .withColumn("component", F.coalesce("component", C.DOC_ID))
    by_comp = Window.partitionBy("component").orderBy(F.col("_existing").desc(), C.DOC_ID)
    fuzzy_rep = labelled.withColumn("_frep", F.first(C.DOC_ID).over(by_comp)).select(C.DOC_ID, "_frep", "component")

    out = (docs.join(mh.select(C.DOC_ID, "minhash_signature", "minhash_bands"), C.DOC_ID, "left")
           .join(fuzzy_rep.withColumnRenamed(C.DOC_ID, "_rep"), "_rep", "left")
           .withColumn("_frep", F.coalesce("_frep", "_rep"))
           .withColumn("cluster_id", F.coalesce("component", "_rep")))
    out = out.withColumn(C.DROP_REASON, F.when(F.col(C.DOC_ID) != F.col("_rep"), F.lit("dedup_exact"))
                         .when(F.col(C.DOC_ID) != F.col("_frep"), F.lit("dedup_fuzzy")))
    out = out.withColumn("duplicate_of", F.when(F.col(C.DROP_REASON) == "dedup_exact", F.col("_rep"))
                         .when(F.col(C.DROP_REASON) == "dedup_fuzzy", F.col("_frep")))
    out = out.withColumn("cluster_size", F.count("*").over(Window.partitionBy("cluster_id")))
    return out.drop("_rep", "_frep", "component", "_existing"), iterations


def run(spark, cfg: DedupConfig, record) -> None:

    version = table_version(spark, cfg.input)
    if version is None:
        raise cli.UsageError(f"--input {cfg.input} is not a Delta table")
    docs = spark.read.format("delta").option("versionAsOf", version).load(cfg.input)
    if C.DOC_ID not in docs.columns or C.TEXT not in docs.columns:
        raise cli.UsageError(f"--input {cfg.input} lacks doc_id/text columns: {docs.columns}")
    record.input_versions[cfg.input] = version
    existing = None
    if cfg.against:
        v = table_version(spark, cfg.against)
        if v is None:
            raise cli.UsageError(f"--against {cfg.against} is not a Delta table")
        gold = spark.read.format("delta").option("versionAsOf", v).load(cfg.against)
        missing = {"norm_hash", "minhash_signature", "minhash_bands"} - set(gold.columns)
        if missing:
            raise cli.UsageError(f"--against {cfg.against} lacks {sorted(missing)}: was it written by dedup?")
        record.input_versions[cfg.against] = v
        existing = gold.select(C.DOC_ID, C.TEXT, "norm_hash", "minhash_signature", "minhash_bands")
        docs = docs.join(existing.select(C.DOC_ID), C.DOC_ID, "left_anti")  # already in gold: not new
    mh_cfg = minhash_config(cfg)
    checkpoint_dir = cfg.checkpoint_dir or cfg.output.rstrip("/") + "_checkpoints"
    spark.sparkContext.setCheckpointDir(checkpoint_dir)
    # Intermediate results are staged as Parquet under the checkpoint folder, not cached: a heap
    # cache of the wide rows (text + 112 signature values) needs driver memory that grows with the
    # corpus in local mode (OOM at 300k documents with 1 GiB), while a staged file streams.
    staging = f"{checkpoint_dir.rstrip('/')}/staging-{record.run_id}"

    def stage(df, name):
        df.write.mode("overwrite").parquet(f"{staging}/{name}")
        return spark.read.parquet(f"{staging}/{name}")

    try:
        _write_outputs(spark, cfg, docs, existing, mh_cfg, stage, record)
    finally:
        _delete_path(spark, staging)


def _delete_path(spark, path: str) -> None:
    """Recursively delete ``path`` through Hadoop's FileSystem (local, HDFS or object stores)."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(hpath, True)


def _write_outputs(spark, cfg: DedupConfig, docs, existing, mh_cfg, stage, record) -> None:
    from pyspark.sql import functions as F

    labelled, iterations = transform(docs, existing, cfg, mh_cfg, materialize=lambda df: stage(df, "minhash"))
    labelled = stage(labelled, "labelled")

    counts = {r[0]: r[1] for r in labelled.groupBy(C.DROP_REASON).count().collect()}
    kept = labelled.filter(F.col(C.DROP_REASON).isNull()).drop(C.DROP_REASON, "duplicate_of", "cluster_id", "cluster_size")
    writer = kept.write.format("delta")
    if cfg.against and cfg.against == cfg.output:
        n_kept = append_new(spark, cfg.output, kept, [C.DOC_ID])
    else:
        writer.mode("overwrite").option("overwriteSchema", "true").save(cfg.output)
        n_kept = counts.get(None, 0)
    rejected = (labelled.filter(F.col(C.DROP_REASON).isNotNull())
                .drop("minhash_signature", "minhash_bands", "cluster_id", "cluster_size")
                .withColumn(C.JOB, F.lit("dedup")).withColumn(C.RUN_ID, F.lit(record.run_id)))
    append_new(spark, cfg.rejected, rejected, [C.DOC_ID, C.JOB])
    if cfg.clusters:
        (labelled.select(C.DOC_ID, "cluster_id", "cluster_size", C.DROP_REASON, "duplicate_of")
         .write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(cfg.clusters))

    total = sum(counts.values())
    record.counts.update(total=total, kept=counts.get(None, 0), written=n_kept,
                         dropped=total - counts.get(None, 0),
                         **{f"dropped_{k}": v for k, v in counts.items() if k is not None})
    record.output_versions.update({cfg.output: table_version(spark, cfg.output), cfg.rejected: table_version(spark, cfg.rejected)})
    record.extra.update(bands=mh_cfg.bands, rows=mh_cfg.rows, cc_iterations=iterations)
    log.info("dedup: %s; LSH %d bands x %d rows; connected components in %d rounds",
             record.counts, mh_cfg.bands, mh_cfg.rows, iterations)
    print(json.dumps({"run_id": record.run_id, **record.counts, "cc_iterations": iterations}, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    p = argparse.ArgumentParser(description="Exact + MinHash LSH dedup of SILVER into GOLD.")
    p.add_argument("--input", help="silver table (default: LAKE/silver)")
    p.add_argument("--output", help="gold table (default: LAKE/gold)")
    p.add_argument("--rejected", help="rejected table (default: LAKE/rejected)")
    p.add_argument("--clusters", help="write (doc_id, cluster_id, cluster_size) for every input doc here")
    p.add_argument("--against", help="existing gold table to deduplicate new documents against")
    p.add_argument("--threshold", type=float)
    for name in ("ngram", "num_perm", "bands", "rows"):
        p.add_argument("--" + name.replace("_", "-"), type=int)
    p.add_argument("--no-verify", dest="verify", action="store_false", default=None)
    p.add_argument("--checkpoint-dir")
    p.add_argument("--config", help="JSON file with DedupConfig fields; flags override it")
    cli.add_lake_args(p)
    args = p.parse_args(argv)
    try:
        overrides = {k: v for k, v in vars(args).items() if k not in ("lake", "runs", "config")}
        overrides["input"] = cli.resolve_table(args.input, args.lake, "silver", "--input")
        overrides["output"] = cli.resolve_table(args.output, args.lake, "gold", "--output")
        overrides["rejected"] = cli.resolve_table(args.rejected, args.lake, "rejected", "--rejected")
        for key in ("clusters", "against"):
            if overrides.get(key):
                overrides[key] = cli.resolve_table(overrides[key], args.lake, "gold", f"--{key}")
        cfg = cli.load_config_file(args.config, DedupConfig, overrides)
        if bool(cfg.bands) != bool(cfg.rows):
            raise cli.UsageError("give both --bands and --rows, or neither")
        runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
    except (ValueError, cli.UsageError) as exc:
        log.error("%s", exc)
        return cli.EXIT_USAGE
    log.info("config: %s", asdict(cfg))
    spark = get_spark("lakelm-dedup")
    return cli.run_job("dedup", asdict(cfg), runs, lambda rec: run(spark, cfg, rec), spark)


if __name__ == "__main__":
    sys.exit(main())
