"""Silver: bronze cleaned and filtered by the curation chain, the URL stage and the model-based stages.

The pieces of ``jobs/curate.py``: ``load_curation_config``, ``with_url_flags``, ``load_eval_index`` and
``model_stages`` turn the flags into the stages' configuration (checked on the driver, usage errors before any
session starts); ``transform`` runs the chain (``udfs.curate``) and the URL stage (``filter_urls``) over bronze,
every row keeping its ``drop_reason`` (null = kept).
"""

from __future__ import annotations

import json
import logging

from jobs.common import cli
from jobs.common.delta_io import append_new, delta_writer
from udfs import columns as C

log = logging.getLogger("jobs.curate")  # its lines are the curate job's


def load_curation_config(
    path: str | None, mode: str | None, decontaminate: list[str] | None = None, flag_only: bool = False
):
    """CurationConfig from a JSON file (nested dicts per stage), ``--mode`` and the decontamination flags."""
    from model.config import config_from_dict
    from udfs.curation.curate import CurationConfig

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
    from jobs.transforms.quality import ModelStagesConfig, check_model_stages

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


def write_tables(spark, curated, silver: str, rejected: str) -> dict:
    """Kept rows of ``curated`` overwrite ``silver``; dropped ones are appended to ``rejected`` (new doc_ids only).

    Returns:
        Rows per ``drop_reason`` (None = kept), from one aggregation over ``curated`` (persist it first).
    """
    from pyspark.sql import functions as F

    counts = {r[0]: r[1] for r in curated.groupBy(C.DROP_REASON).count().collect()}
    kept = curated.filter(F.col(C.DROP_REASON).isNull()).drop(C.DROP_REASON)
    delta_writer(kept).mode("overwrite").option("overwriteSchema", "true").save(silver)
    dropped = curated.filter(F.col(C.DROP_REASON).isNotNull()).withColumn(C.JOB, F.lit("curate"))
    append_new(spark, rejected, dropped, [C.DOC_ID, C.JOB])
    return counts
