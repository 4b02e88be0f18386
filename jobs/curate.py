"""Clean and quality-filter the bronze table into silver; dropped documents go to rejected.

    spark-submit --properties-file spark-defaults.conf jobs/curate.py \\
        --input lake/bronze --output lake/silver --rejected lake/rejected [--config curation.json] \\
        [--mode fast|parity] [--lake lake] [--decontaminate EVAL.jsonl ... [--decontaminate-flag-only]] \\
        [--url-blocklist FILE] [--url-banned-words] \\
        [--quality-model DIR [--quality-min-score S | --quality-keep-fraction F]] [--perplexity-model M]

The chain (udfs/curation/curate.py): Unicode/whitespace normalisation and HTML-to-text, language
ID, C4 line cleaning, Gopher repetition, Gopher quality, C4 document rules, FineWeb quality, PII
redaction; datatrove's default thresholds, each stage switchable and tunable in ``--config`` (a JSON
object of ``CurationConfig`` fields, nested per stage; unknown keys are an error). Every document
gets ``drop_reason`` (null = kept) and its quality signals as columns: ``in = kept + rejected``.
``--decontaminate`` adds the decontamination stage (udfs/curation/decontam.py): kept documents sharing a
13-gram with an evaluation JSONL file are dropped with reason ``contaminated`` (or only flagged), with
``contaminated_task`` (the file's stem) and ``contaminated_ngram`` columns; the index is built here, on
the driver, and shipped to the executors inside the UDF.
``--url-blocklist`` / ``--url-banned-words`` switch on the URL stage (udfs/curation/urlfilter.py, off by
default): documents whose ``url`` (or ``extra.url``) is blocked are dropped with ``url_blocked``,
``url_banned_word``, ``url_soft_banned_words`` or ``url_banned_subword``, whatever their text.
``--quality-model`` / ``--perplexity-model`` add the model-based stages after all that (jobs/quality.py):
``quality_score`` (a jobs/train_quality.py classifier) on every row, kept rows below the cut (default the
classifier's threshold, 0.5) dropped with ``quality_low``; then ``perplexity`` of the kept rows under a
reference model (udfs.inference.make_score_udf) and ``perplexity_bucket`` head/middle/tail at the 30th and
60th percentiles of each language (CCNet). Both checked on the driver before the session starts (exit 2).
"""

from __future__ import annotations

import json
import logging
import sys

from jobs import cli
from jobs.delta_io import append_new, delta_writer, table_version
from jobs.spark import get_spark
from udfs import columns as C

log = logging.getLogger("jobs.curate")


def load_curation_config(
    path: str | None, mode: str | None, decontaminate: list[str] | None = None, flag_only: bool = False
):
    """CurationConfig from a JSON file (nested dicts per stage), ``--mode`` and the decontamination flags."""
    from udfs.curation.curate import CurationConfig, config_from_dict

    data = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise cli.UsageError(f"cannot read --config {path}: {exc}") from exc
    if mode:
        data["mode"] = mode
    if decontaminate or flag_only:
        stage = data.get("decontaminate")
        stage = dict(stage) if isinstance(stage, dict) else {}
        if decontaminate:
            stage["paths"] = list(decontaminate)
        if flag_only:
            if not stage.get("paths"):
                raise cli.UsageError("--decontaminate-flag-only needs --decontaminate EVAL.jsonl ...")
            stage["flag_only"] = True
        data["decontaminate"] = stage
    try:
        return config_from_dict(CurationConfig, data)
    except (ValueError, AssertionError) as exc:
        raise cli.UsageError(f"bad --config: {exc}") from exc


def load_eval_index(cfg):
    """The NGramIndex of ``cfg.decontaminate.paths`` (task name = file stem), or None when the stage is off."""
    from pathlib import Path

    from udfs.curation.decontam import index_from_jsonl

    stage = cfg.decontaminate
    if not stage.enabled:
        return None
    names = [Path(p).stem for p in stage.paths]
    if len(set(names)) != len(names):
        raise cli.UsageError(f"--decontaminate: two evaluation files share a task name (file stem): {names}")
    tasks = {}
    try:
        for name, path in zip(names, stage.paths):
            with open(path, encoding="utf-8") as fh:
                tasks[name] = list(fh)  # not splitlines(): JSON strings may hold U+2028
        index = index_from_jsonl(tasks, stage.n_gram)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise cli.UsageError(f"--decontaminate: {exc}") from exc
    for name, st in index.stats.items():
        if not st["ngrams"]:
            log.warning("decontaminate: %s has no item of %d words or more; nothing of it can be found", name, index.n)
    log.info(
        "decontamination index: %d %d-grams, %d bytes, per task %s", len(index), index.n, index.nbytes(), index.stats
    )
    return index


def transform(bronze, cfg, run_id: str, index=None):
    """bronze rows -> the same rows with curated ``text``, ``drop_reason``, signals and lineage.

    ``index``: the decontamination ``NGramIndex`` (``load_eval_index``) when that stage is on.
    """
    from pyspark.sql import functions as F

    from udfs.curate import make_curate_udf

    others = [c for c in bronze.columns if c not in (C.TEXT, C.RUN_ID, C.INGESTED_AT)]
    curated = bronze.select(*others, make_curate_udf(cfg, index)(C.TEXT).alias("c"))
    fields = [f.name for f in curated.schema["c"].dataType.fields]
    out = curated.select(*others, *[F.col(f"c.{f}").alias(f) for f in fields])
    if cfg.url_filter.enabled:
        out = filter_urls(out, cfg.url_filter)
    return out.withColumn(C.RUN_ID, F.lit(run_id)).withColumn("curated_at", F.current_timestamp())


def filter_urls(df, url_cfg):
    """The URL stage: ``drop_reason`` becomes ``url_*`` where the URL is blocked (it takes precedence over the
    text chain's reason, as the stage runs first in a datatrove pipeline). The URL is the ``url`` column (web
    archives), else the ``url`` field of ``extra`` (JSONL inputs that carry one); rows with neither are kept."""
    from pyspark.sql import functions as F

    from udfs.urlfilter import make_url_filter_udf

    candidates = [F.col(C.URL)] if C.URL in df.columns else []
    if C.EXTRA in df.columns:
        candidates.append(F.get_json_object(C.EXTRA, "$.url"))
    if not candidates:
        log.warning("url filter: no %s column and no %s field to read URLs from; nothing is filtered", C.URL, C.EXTRA)
        return df
    url = F.coalesce(*candidates) if len(candidates) > 1 else candidates[0]
    return df.withColumn(C.DROP_REASON, F.coalesce(make_url_filter_udf(url_cfg)(url), F.col(C.DROP_REASON)))


def with_url_flags(cfg, blocklist: str | None, banned_words: bool):
    """``cfg`` with the URL stage switched on by ``--url-blocklist FILE`` and/or ``--url-banned-words``."""
    from dataclasses import replace

    from udfs.curation.urlfilter import parse_blocklist

    if not blocklist and not banned_words:
        return cfg
    stage = replace(cfg.url_filter, enabled=True, banned_words=cfg.url_filter.banned_words or banned_words)
    if blocklist:
        try:
            with open(blocklist, encoding="utf-8") as fh:
                domains, urls, patterns = parse_blocklist(fh.read())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise cli.UsageError(f"cannot read --url-blocklist {blocklist}: {exc}") from exc
        stage = replace(
            stage,
            blocked_domains=stage.blocked_domains + domains,
            blocked_urls=stage.blocked_urls + urls,
            blocked_patterns=stage.blocked_patterns + patterns,
        )
    return replace(cfg, url_filter=stage)


def model_stages(args):
    """The classifier and perplexity stages of the flags, checked on the driver: ``(ModelStagesConfig, facts)``."""
    from jobs.quality import ModelStagesConfig, check_model_stages

    try:
        stages = ModelStagesConfig(
            quality_model=args.quality_model,
            quality_min_score=args.quality_min_score,
            quality_keep_fraction=args.quality_keep_fraction,
            perplexity_model=args.perplexity_model,
        )
        return stages, check_model_stages(stages)
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from exc


def run(spark, args, cfg, record, index=None, stages=None, facts=None) -> None:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    version = table_version(spark, args.input)
    if version is None:
        raise cli.UsageError(f"--input {args.input} is not a Delta table")
    bronze = spark.read.format("delta").option("versionAsOf", version).load(args.input)
    missing = {C.DOC_ID, C.TEXT} - set(bronze.columns)
    if missing:
        raise cli.UsageError(f"--input {args.input} lacks columns {sorted(missing)}")
    record.input_versions[args.input] = version
    out = transform(bronze, cfg, record.run_id, index).persist(StorageLevel.MEMORY_AND_DISK)
    cached = [out]
    if stages is not None and stages.enabled:  # classifier, perplexity: after the heuristic chain
        from jobs.quality import apply_model_stages

        out, more = apply_model_stages(out, stages, facts)
        cached += more
        record.extra.update(facts)
    counts = {r[0]: r[1] for r in out.groupBy(C.DROP_REASON).count().collect()}
    delta_writer(out.filter(F.col(C.DROP_REASON).isNull()).drop(C.DROP_REASON)).mode("overwrite").option(
        "overwriteSchema", "true"
    ).save(args.output)
    rejected = out.filter(F.col(C.DROP_REASON).isNotNull()).withColumn(C.JOB, F.lit("curate"))
    append_new(spark, args.rejected, rejected, [C.DOC_ID, C.JOB])
    for frame in cached:
        frame.unpersist()
    total = sum(counts.values())
    record.counts.update(
        total=total,
        kept=counts.get(None, 0),
        dropped=total - counts.get(None, 0),
        **{f"dropped_{k}": v for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])) if k},
    )
    if index is not None:
        from udfs.curation.columns import CONTAMINATED_TASK

        flagged = out.filter(F.col(C.DROP_REASON).isNull() & F.col(CONTAMINATED_TASK).isNotNull()).count()
        record.counts["flagged_contaminated"] = flagged  # kept but contaminated (--decontaminate-flag-only)
        record.extra["decontamination_index"] = {"ngrams": len(index), "n": index.n, "tasks": index.stats}
    record.output_versions.update(
        {args.output: table_version(spark, args.output), args.rejected: table_version(spark, args.rejected)}
    )
    log.info("curate %s: %s", args.input, record.counts)
    print(json.dumps({"run_id": record.run_id, **record.counts}, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    p = cli.job_parser("Clean and filter BRONZE into SILVER (+ REJECTED).", config=False)
    p.add_argument("--input", help="bronze table (default: LAKE/bronze)")
    p.add_argument("--output", help="silver table (default: LAKE/silver)")
    p.add_argument("--rejected", help="rejected table (default: LAKE/rejected)")
    p.add_argument("--config", help="JSON with CurationConfig fields (nested per stage)")
    p.add_argument("--mode", choices=("fast", "parity"), help="word splitting: fast regex or datatrove parity")
    p.add_argument("--decontaminate", nargs="+", metavar="PATH", help="evaluation JSONL files to decontaminate against")
    p.add_argument("--decontaminate-flag-only", action="store_true", help="keep contaminated documents, only flag them")
    p.add_argument("--url-blocklist", metavar="FILE", help="drop documents whose domain, URL or re: pattern is listed")
    p.add_argument("--url-banned-words", action="store_true", help="drop URLs with FineWeb-style banned words")
    p.add_argument("--quality-model", metavar="DIR", help="quality classifier (jobs/train_quality.py): quality_score")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--quality-min-score", type=float, metavar="S", help="drop kept rows scoring below S")
    cut.add_argument("--quality-keep-fraction", type=float, metavar="F", help="keep the top F of kept rows by score")
    p.add_argument("--perplexity-model", metavar="M", help="reference LM: perplexity and head/middle/tail per language")
    args = p.parse_args(argv)
    try:
        args.input = cli.resolve_table(args.input, args.lake, "bronze", "--input")
        args.output = cli.resolve_table(args.output, args.lake, "silver", "--output")
        args.rejected = cli.resolve_table(args.rejected, args.lake, "rejected", "--rejected")
        runs = cli.resolve_table(args.runs, args.lake, "runs", "--runs")
        cfg = load_curation_config(args.config, args.mode, args.decontaminate, args.decontaminate_flag_only)
        cfg = with_url_flags(cfg, args.url_blocklist, args.url_banned_words)
        index = load_eval_index(cfg)
        stages, facts = model_stages(args)
    except (ValueError, cli.UsageError) as exc:
        log.error("%s", exc)
        return cli.EXIT_USAGE
    from udfs.curation._config import config_to_dict

    log.info("config: %s", json.dumps(config_to_dict(cfg), default=str))
    spark = get_spark("lakelm-curate", remote=args.remote)
    job_args = {**vars(args), "resolved_config": config_to_dict(cfg)}
    return cli.run_job("curate", job_args, runs, lambda rec: run(spark, args, cfg, rec, index, stages, facts), spark)


if __name__ == "__main__":
    sys.exit(main())
