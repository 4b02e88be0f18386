"""CLI of curation (UDF: udfs/curate.py, core: udfs/curation/curate.py): bronze cleaned and filtered into silver.

    spark-submit --properties-file spark-defaults.conf jobs/curate.py \\
        --input lake/bronze --output lake/silver --rejected lake/rejected [--config curation.json] \\
        [--mode fast|parity] [--lake lake] [--decontaminate EVAL.jsonl ... [--decontaminate-flag-only]] \\
        [--url-blocklist FILE] [--url-banned-words] \\
        [--quality-model DIR [--quality-min-score S | --quality-keep-fraction F]] [--perplexity-model M]

The chain (udfs/curation/curate.py): Unicode/whitespace normalisation and HTML-to-text, language ID, C4 line
cleaning, Gopher repetition, Gopher quality, C4 document rules, FineWeb quality, PII redaction; datatrove's
default thresholds, each stage switchable and tunable in ``--config`` (``CurationConfig`` fields as JSON, nested
per stage; unknown keys are an error). Every document gets ``drop_reason`` (null = kept) and its quality signals
as columns: ``in = kept + rejected``. Optional stages (all checked on the driver before the session starts):
- ``--decontaminate``: kept documents sharing a 13-gram with an evaluation JSONL file are dropped as
  ``contaminated`` (or only flagged), with ``contaminated_task`` and ``contaminated_ngram`` columns.
- ``--url-blocklist`` / ``--url-banned-words`` (udfs/curation/urlfilter.py): documents whose ``url`` (or
  ``extra.url``) is blocked are dropped with ``url_blocked`` / ``url_banned_word`` / ``url_soft_banned_words`` /
  ``url_banned_subword``, whatever their text.
- ``--quality-model`` / ``--perplexity-model`` (jobs/transforms/quality.py), after all that: ``quality_score`` on
  every row, kept rows below the cut (default the classifier's threshold) dropped as ``quality_low``; then the
  ``perplexity`` of kept rows under a reference model and ``perplexity_bucket`` head/middle/tail at the 30th and
  60th percentiles of each language (CCNet).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from typing import Any

from jobs.common import cli
from jobs.common.delta_io import table_version
from jobs.transforms.silver import (
    load_curation_config,
    load_eval_index,
    model_stages,
    transform,
    with_url_flags,
    write_tables,
)
from udfs import columns as C

log = logging.getLogger("jobs.curate")


@dataclass(frozen=True)
class CurateJob:
    """What ``build_config`` resolved from the flags: tables, the chain's config and the driver-built stages."""

    input: str
    output: str
    rejected: str
    cfg: Any  # udfs.curation.CurationConfig
    index: Any = None  # the decontamination NGramIndex, or None
    stages: Any = None  # jobs.transforms.quality.ModelStagesConfig
    facts: dict | None = None  # what check_model_stages found (thresholds, model hashes)
    flags: dict | None = None  # the parsed flags, as recorded in the runs table


def build_parser() -> argparse.ArgumentParser:
    """The tables, the chain's ``--config`` (CurationConfig JSON) and the optional stages' flags."""
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
    return p


def build_config(args: argparse.Namespace) -> CurateJob:
    """Tables resolved against ``--lake``; the chain, URL, decontamination and model stages checked here."""
    cfg = load_curation_config(args.config, args.mode, args.decontaminate, args.decontaminate_flag_only)
    cfg = with_url_flags(cfg, args.url_blocklist, args.url_banned_words)
    stages, facts = model_stages(args)
    tables = {
        "input": cli.resolve_table(args.input, args.lake, "bronze", "--input"),
        "output": cli.resolve_table(args.output, args.lake, "silver", "--output"),
        "rejected": cli.resolve_table(args.rejected, args.lake, "rejected", "--rejected"),
    }
    index = load_eval_index(cfg)
    return CurateJob(**tables, cfg=cfg, index=index, stages=stages, facts=facts, flags={**vars(args), **tables})


def _record_args(job: CurateJob) -> dict:
    from model.config import config_to_dict

    return {**job.flags, "resolved_config": config_to_dict(job.cfg)}


def run(spark, job: CurateJob, record) -> None:
    """Silver (overwritten) and rejected (appended) from the bronze version read; counts in ``record``."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    bronze = cli.read_input_table(spark, job.input, record, columns=(C.DOC_ID, C.TEXT))
    out = transform(bronze, job.cfg, record.run_id, job.index).persist(StorageLevel.MEMORY_AND_DISK)
    cached = [out]
    if job.stages is not None and job.stages.enabled:  # classifier, perplexity: after the heuristic chain
        from jobs.transforms.quality import apply_model_stages

        out, more = apply_model_stages(out, job.stages, job.facts)
        cached += more
        record.extra.update(job.facts)
    counts = write_tables(spark, out, job.output, job.rejected)
    flagged = None
    if job.index is not None:  # counted while ``out`` is still cached, else the whole chain reruns
        from udfs.columns import CONTAMINATED_TASK

        flagged = out.filter(F.col(C.DROP_REASON).isNull() & F.col(CONTAMINATED_TASK).isNotNull()).count()
    for frame in cached:
        frame.unpersist()
    total = sum(counts.values())
    record.counts.update(
        total=total,
        kept=counts.get(None, 0),
        dropped=total - counts.get(None, 0),
        **{f"dropped_{k}": v for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])) if k},
    )
    if (index := job.index) is not None:
        record.counts["flagged_contaminated"] = flagged  # kept but contaminated (--decontaminate-flag-only)
        record.extra["decontamination_index"] = {"ngrams": len(index), "n": index.n, "tasks": index.stats}
    record.output_versions.update(
        {job.output: table_version(spark, job.output), job.rejected: table_version(spark, job.rejected)}
    )
    log.info("curate %s: %s", job.input, record.counts)
    print(json.dumps({"run_id": record.run_id, **record.counts}, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    return cli.run_main("curate", argv, build_parser(), build_config, run, record_args=_record_args)


if __name__ == "__main__":
    sys.exit(main())
