"""Gold: exact and MinHash-LSH near-duplicate removal of silver, and the writes of gold, rejected and clusters.

The pieces of ``jobs/dedup.py``: ``minhash_config`` picks the LSH bands, ``transform`` labels every document
(kept, or ``dedup_exact`` / ``dedup_fuzzy`` with the document it duplicates), ``lsh_edges`` builds the verified
candidate edges, ``write_outputs`` writes the tables and counts them (``in = kept + dedup_exact + dedup_fuzzy``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from jobs.common.delta_io import append_new, delta_writer, table_version
from udfs import columns as C

log = logging.getLogger("jobs.dedup")  # its lines are the dedup job's


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
    # why: a bucket of up to 65 members is checked soundly; larger ones cost at most 128 checks per member
    # that fails against the hub (see lsh_edges)
    recheck_window: int = 64
    checkpoint_dir: str = ""  # for connected components; "" = <output>_checkpoints


def minhash_config(cfg: DedupConfig):
    from udfs.curation.minhash import MinHashConfig, optimal_bands_rows

    # With exact verification false positives cost only a check, so the bands favour recall
    # (fp weight 0.05: 14 x 8 at 0.8 / 112, datatrove's setting); without it, balance both errors.
    fp_weight = 0.05 if cfg.verify else 0.5
    bands, rows = (
        (cfg.bands, cfg.rows)
        if cfg.bands and cfg.rows
        else optimal_bands_rows(cfg.threshold, cfg.num_perm, fp_weight, 1 - fp_weight)
    )
    return MinHashConfig(n_grams=cfg.ngram, num_perm=bands * rows, bands=bands, rows=rows)


def transform(docs, existing, cfg: DedupConfig, mh_cfg, materialize=None):
    """Return ``(labelled, iterations)``: every input doc with ``drop_reason``, ``duplicate_of``,
    ``cluster_id``, ``cluster_size`` and the columns gold stores (``norm_hash``, MinHash).

    ``existing`` is None or a DataFrame of (doc_id, norm_hash, minhash_signature, minhash_bands) of
    documents already in gold: they take part in matching and win representative choice but are
    not part of the output. ``materialize`` ((DataFrame, name) -> DataFrame, default: identity) is
    applied to the MinHash signatures (name "minhash"), which both the LSH graph and the output
    read, and to the candidates' shingle sets ("shingles"), which both rounds of ``lsh_edges``
    read: the job passes a stage-to-disk function so each is computed once and never cached on
    the heap. It also materialises every round of connected components (``cc-round-<i>``); with
    None those are local checkpoints.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.transforms.components import connected_components
    from udfs.dedup import make_minhash_udf

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

    # --- fuzzy: MinHash + LSH edges (checked by exact Jaccard, see lsh_edges), on exact representatives only
    mh = reps.select(C.DOC_ID, make_minhash_udf(mh_cfg)(C.TEXT).alias("m")).select(C.DOC_ID, "m.*")
    if materialize is not None:
        mh = materialize(mh, "minhash")
    nodes = mh.select(
        C.DOC_ID, "minhash_signature", "minhash_bands", F.lit(False).alias("_existing"), F.col("minhash_flag")
    )
    if existing is not None:
        nodes = nodes.unionByName(
            existing.select(
                C.DOC_ID,
                "minhash_signature",
                "minhash_bands",
                F.lit(True).alias("_existing"),
                F.lit(None).cast("string").alias("minhash_flag"),
            )
        )
    matchable = nodes.filter(F.col("minhash_flag").isNull() | (F.col("minhash_flag") != "empty"))
    texts = None
    if cfg.verify:
        texts = reps.select(C.DOC_ID, C.TEXT)
        if existing is not None:
            texts = texts.unionByName(existing.select(C.DOC_ID, C.TEXT))
    edges = lsh_edges(matchable, texts, cfg, mh_cfg.n_grams, materialize)
    comps, iterations = connected_components(edges, materialize=materialize)

    flags = nodes.select(C.DOC_ID, "_existing")
    labelled = flags.join(comps.withColumnRenamed("node", C.DOC_ID), C.DOC_ID, "left").withColumn(
        "component", F.coalesce("component", C.DOC_ID)
    )
    by_comp = Window.partitionBy("component").orderBy(F.col("_existing").desc(), C.DOC_ID)
    fuzzy_rep = labelled.withColumn("_frep", F.first(C.DOC_ID).over(by_comp)).select(C.DOC_ID, "_frep", "component")

    out = (
        docs.join(mh.select(C.DOC_ID, "minhash_signature", "minhash_bands"), C.DOC_ID, "left")
        .join(fuzzy_rep.withColumnRenamed(C.DOC_ID, "_rep"), "_rep", "left")
        .withColumn("_frep", F.coalesce("_frep", "_rep"))
        .withColumn("cluster_id", F.coalesce("component", "_rep"))
    )
    out = out.withColumn(
        C.DROP_REASON,
        F.when(F.col(C.DOC_ID) != F.col("_rep"), F.lit("dedup_exact")).when(
            F.col(C.DOC_ID) != F.col("_frep"), F.lit("dedup_fuzzy")
        ),
    )
    out = out.withColumn(
        "duplicate_of",
        F.when(F.col(C.DROP_REASON) == "dedup_exact", F.col("_rep")).when(
            F.col(C.DROP_REASON) == "dedup_fuzzy", F.col("_frep")
        ),
    )
    out = out.withColumn("cluster_size", F.count("*").over(Window.partitionBy("cluster_id")))
    return out.drop("_rep", "_frep", "component", "_existing"), iterations


def lsh_edges(nodes, texts, cfg: DedupConfig, n_grams: int, materialize=None):
    """Return the (src, dst) edges of documents that share an LSH bucket, checked by exact Jaccard.

    ``nodes`` has (doc_id, minhash_bands); ``texts`` has (doc_id, text) and is None without
    verification. Without verification every member of a bucket is linked to the bucket's smallest
    doc_id (the hub), which puts the whole bucket in one component. With verification an edge to
    the hub is kept only when the exact Jaccard of the shingle sets is >= ``cfg.threshold``; a
    star alone would then never compare two members behind a dissimilar hub (hub at J 0.6 to B and
    C, B-C at J 0.9), so a second round compares each member whose hub check failed (an orphan)
    with the members ranked at most W = ``cfg.recheck_window`` places from it in doc_id order
    within that bucket (datatrove-style sorted neighbours).

    Bound: a bucket of n members costs n - 1 hub checks plus at most 2W checks per orphan, so at
    most (n - 1)(2W + 1), linear in n: a giant bucket of near-copies (few orphans) stays cheap.
    What the bound costs: when n <= W + 1 every pair with J >= threshold in the bucket ends up in
    one component (pairs of non-orphans through the hub, pairs with an orphan by a direct check);
    in a larger bucket a pair with an orphan ranked more than W apart is found only through another
    band or another verified path. Buckets of two members never need the second round.

    Args:
        nodes: matchable documents (empty ones excluded): doc_id, minhash_bands (array<bigint>).
        texts: (doc_id, text) of the same documents, or None when ``cfg.verify`` is False.
        cfg: threshold, verify and recheck_window.
        n_grams: words per shingle, as for the signatures.
        materialize: (DataFrame, name) -> DataFrame applied to the candidates' shingle sets, or None.

    Returns:
        DataFrame (src string, dst string) of undirected edges, each pair at most once per round.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from udfs.dedup import make_shingles_udf

    exploded = nodes.select(C.DOC_ID, F.posexplode("minhash_bands").alias("band", "bucket"))
    hubs = exploded.groupBy("band", "bucket").agg(F.min(C.DOC_ID).alias("hub"), F.count("*").alias("n")).filter("n > 1")
    star = exploded.join(hubs, ["band", "bucket"]).filter(F.col(C.DOC_ID) != F.col("hub"))
    pairs = star.select(F.col(C.DOC_ID).alias("src"), F.col("hub").alias("dst")).distinct()
    if not cfg.verify:
        return pairs
    ends = pairs.select(F.col("src").alias(C.DOC_ID)).union(pairs.select(F.col("dst").alias(C.DOC_ID))).distinct()
    sh = texts.join(ends, C.DOC_ID).select(C.DOC_ID, make_shingles_udf(n_grams)(C.TEXT).alias("sh"))
    if materialize is not None:
        sh = materialize(sh, "shingles")
    a = sh.withColumnRenamed(C.DOC_ID, "src").withColumnRenamed("sh", "sa")
    b = sh.withColumnRenamed(C.DOC_ID, "dst").withColumnRenamed("sh", "sb")
    jac = F.size(F.array_intersect("sa", "sb")) / F.greatest(F.size(F.array_union("sa", "sb")), F.lit(1))

    def check(candidates):  # (src, dst) -> (src, dst, ok)
        return candidates.join(a, "src").join(b, "dst").select("src", "dst", (jac >= cfg.threshold).alias("ok"))

    checked = check(pairs)
    failed = checked.filter(~F.col("ok")).select(F.col("src").alias(C.DOC_ID), F.col("dst").alias("hub"))
    # second round, only in buckets of 3+ members (in a pair bucket the hub is the orphan's only neighbour)
    orphans = star.filter("n > 2").join(failed, [C.DOC_ID, "hub"]).select("band", "bucket", C.DOC_ID)
    ranked = exploded.join(orphans.select("band", "bucket").distinct(), ["band", "bucket"]).withColumn(
        "rank", F.row_number().over(Window.partitionBy("band", "bucket").orderBy(C.DOC_ID))
    )
    w = cfg.recheck_window
    near = (
        ranked.join(orphans, ["band", "bucket", C.DOC_ID])
        .select(
            "band",
            "bucket",
            F.col(C.DOC_ID).alias("src"),
            "rank",
            F.explode(F.sequence(F.greatest(F.col("rank") - w, F.lit(2)), F.col("rank") + w)).alias("other"),
        )
        .filter(F.col("other") != F.col("rank"))
    )  # rank 1 is the hub, already checked
    more = (
        near.join(
            ranked.select("band", "bucket", F.col("rank").alias("other"), F.col(C.DOC_ID).alias("dst")),
            ["band", "bucket", "other"],
        )
        .select(F.least("src", "dst").alias("src"), F.greatest("src", "dst").alias("dst"))
        .distinct()
    )
    return checked.filter("ok").select("src", "dst").union(check(more).filter("ok").select("src", "dst"))


def write_outputs(spark, cfg: DedupConfig, docs, existing, mh_cfg, stage, record) -> None:
    from pyspark.sql import functions as F

    labelled, iterations = transform(docs, existing, cfg, mh_cfg, materialize=stage)
    labelled = stage(labelled, "labelled")

    counts = {r[0]: r[1] for r in labelled.groupBy(C.DROP_REASON).count().collect()}
    kept = labelled.filter(F.col(C.DROP_REASON).isNull()).drop(
        C.DROP_REASON, "duplicate_of", "cluster_id", "cluster_size"
    )
    writer = delta_writer(kept)
    if cfg.against and cfg.against == cfg.output:
        n_kept = append_new(spark, cfg.output, kept, [C.DOC_ID])
    else:
        writer.mode("overwrite").option("overwriteSchema", "true").save(cfg.output)
        n_kept = counts.get(None, 0)
    rejected = (
        labelled.filter(F.col(C.DROP_REASON).isNotNull())
        .drop("minhash_signature", "minhash_bands", "cluster_id", "cluster_size")
        .withColumn(C.JOB, F.lit("dedup"))
        .withColumn(C.RUN_ID, F.lit(record.run_id))
    )
    append_new(spark, cfg.rejected, rejected, [C.DOC_ID, C.JOB])
    if cfg.clusters:
        (
            delta_writer(labelled.select(C.DOC_ID, "cluster_id", "cluster_size", C.DROP_REASON, "duplicate_of"))
            .mode("overwrite")
            .option("overwriteSchema", "true")
            .save(cfg.clusters)
        )

    total = sum(counts.values())
    record.counts.update(
        total=total,
        kept=counts.get(None, 0),
        written=n_kept,
        dropped=total - counts.get(None, 0),
        **{f"dropped_{k}": v for k, v in counts.items() if k is not None},
    )
    record.output_versions.update(
        {cfg.output: table_version(spark, cfg.output), cfg.rejected: table_version(spark, cfg.rejected)}
    )
    record.extra.update(bands=mh_cfg.bands, rows=mh_cfg.rows, cc_iterations=iterations)
    log.info(
        "dedup: %s; LSH %d bands x %d rows; connected components in %d rounds",
        record.counts,
        mh_cfg.bands,
        mh_cfg.rows,
        iterations,
    )
    print(json.dumps({"run_id": record.run_id, **record.counts, "cc_iterations": iterations}, sort_keys=True))
