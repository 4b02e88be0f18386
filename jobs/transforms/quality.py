"""Model-based quality: a hashed n-gram classifier trained and applied in the lake, and CCNet perplexity buckets.

The classifier (DCLM's recipe, arXiv 2406.11794, with Spark ML in place of fastText) is a ``PipelineModel``:
lower-cased text cut to ``max_chars`` -> whitespace words, word n-grams up to ``word_ngrams`` and character
``char_ngram``-grams of the first ``char_max_chars`` characters -> one hashed bag (``num_features`` buckets,
binary, L2-normalised) -> logistic regression. It is trained on reference-quality positives against crawl
negatives, balanced by class weights, and saved as a classifier artifact::

    pipeline/       the PipelineModel, written by Spark's own writer
    metadata.json   format, created_at, code version, the training config, lineage (tables, versions,
                    filters, rows) and held-out metrics (ROC-AUC, precision/recall at the threshold)
    manifest.json   sha256 and size of every other file (``model/artifact.py``'s scheme); its sha256 is
                    the classifier's identity

``apply_model_stages`` runs after the heuristic chain of ``jobs/curate.py``: ``quality_score`` (the
classifier's probability of the positive class, higher = better) on every row, kept rows below the cut
dropped with ``quality_low``; then ``perplexity`` of kept rows under a reference language model
(``udfs.inference.make_score_udf``: its batching, per-worker model cache and per-row errors) and
``perplexity_bucket`` (``head`` / ``middle`` / ``tail`` at the 30th and 60th percentiles of each language,
CCNet, arXiv 1911.00359).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from udfs import columns as C
from udfs.columns import LANG

log = logging.getLogger(__name__)

FORMAT = "lakelm-quality-classifier/1"
PIPELINE, METADATA, MANIFEST = "pipeline", "metadata.json", "manifest.json"
QUALITY_LOW = "quality_low"  # drop reason of kept rows below the classifier's cut
BUCKETS = ("head", "middle", "tail")
BUCKET_PERCENTILES = (0.3, 0.6)  # CCNet's head/middle/tail split of each language's perplexities
LABEL, WEIGHT = "_q_label", "_q_weight"


@dataclass(frozen=True)
class QualityTrainConfig:
    """What ``jobs/train_quality.py`` trains on and how.

    Attributes:
        positive: Delta tables of reference-quality text (label 1).
        negative: Delta tables of crawl text (label 0).
        output: the classifier artifact folder to create (must not exist).
        positive_where: a SQL filter applied to every positive table (``source = 'books'``); None = all rows.
        negative_where: the same for the negative tables.
        text_col: the text column of the input tables.
        test_fraction: share of distinct texts held out for the metrics, in (0, 1).
        seed: seed of the held-out split (a hash of the text, so duplicates share a side).
        num_features: hash buckets of the bag of n-grams.
        word_ngrams: word n-grams of length 1..word_ngrams.
        char_ngram: length of the character n-grams; 0 = none.
        max_chars: characters of each document the word features read.
        char_max_chars: characters of each document the character n-grams read.
        reg_param: L2 regularisation of the logistic regression.
        max_iter: L-BFGS iterations.
        threshold: probability above which a document counts as positive in precision/recall.
    """

    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    output: str = ""
    positive_where: str | None = None
    negative_where: str | None = None
    text_col: str = C.TEXT
    test_fraction: float = 0.2
    seed: int = 0
    num_features: int = 1 << 18  # 262k buckets: few collisions for corpora of a few million n-gram types
    word_ngrams: int = 2  # unigrams + bigrams, as DCLM's fastText (wordNgrams=2)
    char_ngram: int = 4  # subword signal (spelling, markup, scripts) that word features miss
    max_chars: int = 4000  # the opening of a page tells its quality; bounds the cost of long books
    char_max_chars: int = 1000  # character n-grams are ~5x the cost of words per character
    reg_param: float = 1e-3
    max_iter: int = 100
    threshold: float = 0.5  # classes are balanced, so 0.5 is the decision boundary

    def __post_init__(self) -> None:
        object.__setattr__(self, "positive", tuple(self.positive))
        object.__setattr__(self, "negative", tuple(self.negative))
        if not self.positive or not self.negative:
            raise ValueError("at least one positive and one negative table are needed")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        for name in ("num_features", "word_ngrams", "max_chars", "char_max_chars", "max_iter"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.char_ngram < 0:
            raise ValueError(f"char_ngram must be >= 0 (0 = none), got {self.char_ngram}")
        if self.reg_param < 0 or not 0 < self.threshold < 1:
            raise ValueError(f"reg_param must be >= 0 and threshold in (0, 1), got {self.reg_param}, {self.threshold}")


@dataclass(frozen=True)
class ModelStagesConfig:
    """The model-based curation stages (``jobs/curate.py`` flags); all off by default.

    Attributes:
        quality_model: classifier artifact folder (``jobs/train_quality.py``); None = no classifier stage.
        quality_min_score: drop kept rows whose ``quality_score`` is below this, in [0, 1].
        quality_keep_fraction: instead, keep this top share (0, 1] of the kept rows by score.
            With neither cut, the artifact's threshold (0.5 for a balanced classifier) is the minimum score.
        perplexity_model: reference language model (a lakelm artifact or a local Hugging Face folder);
            None = no perplexity stage.
    """

    quality_model: str | None = None
    quality_min_score: float | None = None
    quality_keep_fraction: float | None = None
    perplexity_model: str | None = None

    def __post_init__(self) -> None:
        cuts = self.quality_min_score is not None, self.quality_keep_fraction is not None
        if any(cuts) and not self.quality_model:
            raise ValueError("--quality-min-score / --quality-keep-fraction need --quality-model DIR")
        if all(cuts):
            raise ValueError("give --quality-min-score or --quality-keep-fraction, not both")
        if self.quality_min_score is not None and not 0 <= self.quality_min_score <= 1:
            raise ValueError(f"--quality-min-score must be in [0, 1], got {self.quality_min_score}")
        if self.quality_keep_fraction is not None and not 0 < self.quality_keep_fraction <= 1:
            raise ValueError(f"--quality-keep-fraction must be in (0, 1], got {self.quality_keep_fraction}")

    @property
    def enabled(self) -> bool:
        """True when any model-based stage is on."""
        return bool(self.quality_model or self.perplexity_model)


# ---- pure core: metrics and the manifest ------------------------------------------------------------------


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative.

    Mann-Whitney U with average ranks for ties (equal scores count one half).

    Args:
        labels: 1 for positive, 0 for negative, one per document.
        scores: the classifier's scores, same length.

    Returns:
        The AUC in [0, 1]; NaN when one class is absent.

    Example:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    assert y.shape == s.shape, f"labels {y.shape} and scores {s.shape} differ in length"
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    # average rank (1-based) of every run of equal scores
    bounds = np.flatnonzero(np.diff(sorted_s)) + 1
    starts, ends = np.r_[0, bounds], np.r_[bounds, len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def precision_recall(labels, scores, threshold: float) -> dict[str, float | int]:
    """Precision, recall and F1 of "score >= threshold means positive".

    Args:
        labels: 1 for positive, 0 for negative.
        scores: the classifier's scores, same length.
        threshold: the cut in score units.

    Returns:
        ``{"precision", "recall", "f1", "tp", "fp", "fn", "tn"}``; precision is NaN when nothing is predicted
        positive.
    """
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(scores, dtype=float) >= threshold
    tp, fp = int((y & p).sum()), int((~y & p).sum())
    fn, tn = int((y & ~p).sum()), int((~y & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def binary_metrics(labels, scores, threshold: float) -> dict[str, Any]:
    """``roc_auc`` plus ``precision_recall`` and the class counts: what an artifact records per split."""
    y = np.asarray(labels, dtype=bool)
    return {
        "roc_auc": roc_auc(labels, scores),
        "threshold": threshold,
        "n_positive": int(y.sum()),
        "n_negative": int((~y).sum()),
        **precision_recall(labels, scores, threshold),
    }


def code_version() -> dict[str, str]:
    """The code that defines the classifier: installed ``lakelm`` version and sha256 of this module's source."""
    import importlib.metadata

    try:
        package = importlib.metadata.version("lakelm")
    except importlib.metadata.PackageNotFoundError:
        package = "unknown"
    return {"package": package, "quality_code_sha256": _sha256_file(Path(__file__))}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_manifest(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``root`` except ``manifest.json``, keyed by relative POSIX path."""
    base = Path(root)
    return {
        p.relative_to(base).as_posix(): {"sha256": _sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(base.rglob("*"))
        if p.is_file() and p.relative_to(base).as_posix() != MANIFEST
    }


class ClassifierIntegrityError(ValueError):
    """A classifier folder that is not an artifact of this format or does not match its manifest."""


def verify_classifier(root: str | os.PathLike) -> str:
    """Check every file of a classifier artifact against its manifest; return the artifact's hash.

    Raises:
        ClassifierIntegrityError: no folder or manifest, another format, or missing, extra or changed files.
    """
    base = Path(root)
    manifest_path = base / MANIFEST
    if not manifest_path.is_file():
        raise ClassifierIntegrityError(f"{base} has no {MANIFEST}; train one with jobs/train_quality.py")
    try:
        manifest = json.loads(manifest_path.read_text())
        expected, fmt = manifest["files"], manifest["format"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ClassifierIntegrityError(f"{manifest_path} is not a valid manifest: {exc}") from exc
    if fmt != FORMAT:
        raise ClassifierIntegrityError(f"{base} is a {fmt!r} folder, not a quality classifier ({FORMAT})")
    actual = build_manifest(base)
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    changed = sorted(n for n in set(expected) & set(actual) if expected[n] != actual[n])
    if missing or extra or changed:
        raise ClassifierIntegrityError(
            f"classifier {base}: missing {missing}, unexpected {extra}, changed {changed}; retrain or re-copy it"
        )
    return _sha256_file(manifest_path)


# ---- Spark: the pipeline, training, the artifact ----------------------------------------------------------


def build_pipeline(cfg: QualityTrainConfig):
    """The unfitted Spark ML ``Pipeline``: features of ``text`` -> logistic regression on ``_q_label``."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import HashingTF, NGram, Normalizer, RegexTokenizer, SQLTransformer

    n, grams = cfg.char_ngram, [f"_q_words{i}" for i in range(2, cfg.word_ngrams + 1)]
    text = f"lower(substr(coalesce({C.TEXT}, ''), 1, {cfg.max_chars}))"
    stages = [
        SQLTransformer(statement=f"SELECT *, {text} AS _q_text FROM __THIS__"),
        RegexTokenizer(inputCol="_q_text", outputCol="_q_words", pattern="\\s+", gaps=True, toLowercase=False),
        *[NGram(n=i, inputCol="_q_words", outputCol=g) for i, g in zip(range(2, cfg.word_ngrams + 1), grams)],
    ]
    arrays = ["_q_words", *grams]
    if n:
        # character n-grams of the first char_max_chars characters, '#'-prefixed so that a gram never
        # shares a bucket with the same string as a word
        head = f"substr(_q_text, 1, {cfg.char_max_chars})"
        stages.append(SQLTransformer(statement=f"SELECT *, {head} AS _q_head FROM __THIS__"))
        arrays.append(
            f"IF(length(_q_head) >= {n}, transform(sequence(1, length(_q_head) - {n - 1}),"
            f" i -> concat('#', substr(_q_head, i, {n}))), array())"
        )
    stages += [
        SQLTransformer(statement=f"SELECT *, concat({', '.join(arrays)}) AS _q_tokens FROM __THIS__"),
        HashingTF(inputCol="_q_tokens", outputCol="_q_tf", numFeatures=cfg.num_features, binary=True),
        Normalizer(inputCol="_q_tf", outputCol="_q_features", p=2.0),
        LogisticRegression(
            featuresCol="_q_features",
            labelCol=LABEL,
            weightCol=WEIGHT,
            regParam=cfg.reg_param,
            maxIter=cfg.max_iter,
            rawPredictionCol="_q_raw",
            probabilityCol="_q_prob",
            predictionCol="_q_pred",
        ),
    ]
    return Pipeline(stages=stages)


FEATURE_KEYS = ("word_ngrams", "char_ngram", "max_chars", "char_max_chars")  # the config fields the features use


def linear_model(pipeline_model, config: dict):
    """The fitted pipeline as weights and feature spec (``HashedLinearModel``), scored outside the JVM.

    Args:
        pipeline_model: the fitted ``build_pipeline`` (its last stage is the logistic regression).
        config: the training config (``asdict(QualityTrainConfig)``, or an artifact's ``config``).

    Raises:
        ValueError: if the regression's width is not the config's ``num_features``.
    """
    from udfs.curation.hashed_linear import HashedLinearModel

    lr = pipeline_model.stages[-1]
    weights = lr.coefficients.toArray()
    if weights.shape[0] != config["num_features"]:
        raise ValueError(f"classifier has {weights.shape[0]} weights, its config says {config['num_features']}")
    return HashedLinearModel(weights, lr.intercept, **{k: config[k] for k in FEATURE_KEYS})


def score_frame(model, df):
    """``df`` plus ``quality_score`` (probability of the positive class) from ``model`` (`linear_model`).

    The features and the regression are the Spark ML pipeline's, computed in a pandas UDF
    (`udfs.curate.make_quality_score_udf`); only the first ``max_chars`` characters of each text cross to
    Python, as only they are read.
    """
    from pyspark.sql import functions as F

    from udfs.curate import make_quality_score_udf

    head = F.substring(F.col(C.TEXT), 1, model.max_chars)
    return df.withColumn(C.QUALITY_SCORE, make_quality_score_udf(model)(head))


def read_labelled(spark, tables: tuple[str, ...], where: str | None, label: int, text_col: str):
    """Union of ``tables`` (latest Delta versions, filtered by ``where``) as ``text, _q_label``; with lineage.

    Raises:
        jobs.common.cli.UsageError: a path that is not a Delta table, a missing text column, a bad filter.
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    from jobs.common.cli import UsageError
    from jobs.common.delta_io import table_version

    frames, lineage = [], []
    for table in tables:
        version = table_version(spark, table)
        if version is None:
            raise UsageError(f"{table} is not a Delta table")
        df = spark.read.format("delta").option("versionAsOf", version).load(table)
        if text_col not in df.columns:
            raise UsageError(f"{table} has no column {text_col!r} (columns: {df.columns})")
        try:
            df = df.filter(where) if where else df
            df = df.select(F.col(text_col).alias(C.TEXT)).filter(F.length(F.trim(C.TEXT)) > 0)
            rows = df.count()
        except AnalysisException as exc:
            raise UsageError(f"bad filter {where!r} on {table}: {exc}") from exc
        if not rows:
            raise UsageError(f"{table} has no non-empty {text_col!r} rows" + (f" where {where}" if where else ""))
        lineage.append({"table": table, "version": version, "where": where, "rows": rows})
        frames.append(df.withColumn(LABEL, F.lit(float(label))))
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    return out, lineage


def train_classifier(spark, cfg: QualityTrainConfig) -> tuple[Any, dict]:
    """Fit the pipeline on the balanced training split; evaluate on the held-out split.

    Documents are split by a seeded hash of their text (exact duplicates fall on one side, so none is
    both trained on and evaluated); each class's training rows get weight ``n_train / (2 n_class)``, so
    both classes weigh the same whatever their sizes.

    Returns:
        ``(pipeline_model, facts)``: facts hold ``lineage`` and ``metrics`` (``train`` and ``test``:
        `binary_metrics`) for the artifact's metadata.
    """
    from pyspark.sql import functions as F

    pos, pos_lineage = read_labelled(spark, cfg.positive, cfg.positive_where, 1, cfg.text_col)
    neg, neg_lineage = read_labelled(spark, cfg.negative, cfg.negative_where, 0, cfg.text_col)
    buckets = 10_000
    data = pos.unionByName(neg).withColumn(
        "_q_test", F.pmod(F.xxhash64(C.TEXT, F.lit(cfg.seed)), F.lit(buckets)) < int(cfg.test_fraction * buckets)
    )
    train = data.filter(~F.col("_q_test"))
    counts = {int(r[0]): r[1] for r in train.groupBy(LABEL).count().collect()}
    if len(counts) < 2:
        raise ValueError(f"the training split has one class only ({counts}); add data or lower test_fraction")
    n_train = sum(counts.values())
    weight = F.when(F.col(LABEL) == 1.0, n_train / (2 * counts[1])).otherwise(n_train / (2 * counts[0]))
    model = build_pipeline(cfg).fit(train.withColumn(WEIGHT, weight))
    linear = linear_model(model, asdict(cfg))
    metrics = {}
    for split, part in (("train", train), ("test", data.filter(F.col("_q_test")))):
        rows = score_frame(linear, part).select(LABEL, C.QUALITY_SCORE).collect()
        metrics[split] = binary_metrics([r[0] for r in rows], [r[1] for r in rows], cfg.threshold)
    log.info("quality classifier: held-out %s", metrics["test"])
    lineage = {"positive": pos_lineage, "negative": neg_lineage, "balance": "class_weight"}
    return model, {"lineage": lineage, "metrics": metrics}


def save_classifier(out_dir: str, pipeline_model, cfg: QualityTrainConfig, facts: dict) -> str:
    """Write the classifier artifact (assembled beside ``out_dir``, renamed into place); return its hash.

    Raises:
        FileExistsError: if ``out_dir`` exists (artifacts are immutable).
    """
    import pyspark

    out = Path(out_dir).absolute()
    if out.exists():
        raise FileExistsError(f"{out} exists; classifier artifacts are immutable, write to a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        pipeline_model.write().save(str(tmp / PIPELINE))
        metadata = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "code_version": code_version(),  # the features are defined here: this file's hash pins them
            "spark_version": pyspark.__version__,
            "config": asdict(cfg),
            **facts,
        }
        (tmp / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n")
        manifest = {"format": FORMAT, "files": build_manifest(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp is owner-only; executors may run as another user
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    digest = verify_classifier(out)
    log.info("wrote quality classifier %s (hash %s)", out, digest)
    return digest


def load_classifier(path: str) -> tuple[Any, dict, str]:
    """Verify, then load, a classifier artifact: ``(model, metadata, hash)``; ``model`` is `linear_model`'s.

    Raises:
        ClassifierIntegrityError: see `verify_classifier`.
    """
    from pyspark.ml import PipelineModel

    digest = verify_classifier(path)
    metadata = json.loads((Path(path) / METADATA).read_text())
    pipeline_model = PipelineModel.load(str(Path(path).absolute() / PIPELINE))
    return linear_model(pipeline_model, metadata["config"]), metadata, digest


# ---- curate: the model-based stages ----------------------------------------------------------------------


def check_model_stages(stages: ModelStagesConfig) -> dict:
    """Driver-side checks before anything runs: the classifier's manifest, the reference model's folder.

    Returns:
        Facts for the run record: ``quality_model`` (path, hash, held-out metrics) and ``perplexity_model``
        (path, name, hash), for the stages that are on.

    Raises:
        ValueError: a classifier or reference model that cannot be used (the message says why).
    """
    facts = {}
    if stages.quality_model:
        digest = verify_classifier(stages.quality_model)
        meta = json.loads((Path(stages.quality_model) / METADATA).read_text())
        facts["quality_model"] = {
            "path": stages.quality_model,
            "hash": digest,
            "threshold": meta["config"]["threshold"],
            "test_metrics": meta["metrics"]["test"],
        }
    if stages.perplexity_model:
        from model.artifact import ArtifactIntegrityError
        from model.loading import describe_model

        try:
            name, digest = describe_model(stages.perplexity_model, task="score")
        except (ArtifactIntegrityError, OSError) as exc:
            raise ValueError(f"--perplexity-model {stages.perplexity_model!r} cannot be used: {exc}") from exc
        facts["perplexity_model"] = {"path": stages.perplexity_model, "name": name, "hash": digest}
    return facts


def apply_quality(df, model, *, min_score: float | None = None, keep_fraction: float | None = None):
    """``quality_score`` on every row; kept rows (null ``drop_reason``) below the cut get ``quality_low``.

    Args:
        df: curated rows with ``text`` and ``drop_reason``.
        model: the classifier (`load_classifier`).
        min_score: the cut in score units.
        keep_fraction: instead, the cut is the ``1 - keep_fraction`` quantile of the kept rows' scores
            (relative error 1e-4), so about that share of them stays; exactly one of the two is given.

    Returns:
        ``(df, cut, cached)``: the rows with ``quality_score`` and updated ``drop_reason``, the cut used,
        and the persisted intermediate frames (the caller unpersists them once the outputs are written).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    assert (min_score is None) != (keep_fraction is None), f"one cut: {min_score=}, {keep_fraction=}"
    scored = score_frame(model, df).persist(StorageLevel.MEMORY_AND_DISK)
    cut = min_score
    if keep_fraction is not None:
        kept = scored.filter(F.col(C.DROP_REASON).isNull())
        quantile = kept.approxQuantile(C.QUALITY_SCORE, [1.0 - keep_fraction], 1e-4)
        cut = quantile[0] if quantile and keep_fraction < 1 else 0.0
    low = F.col(C.DROP_REASON).isNull() & (F.col(C.QUALITY_SCORE) < F.lit(cut))
    out = scored.withColumn(C.DROP_REASON, F.when(low, F.lit(QUALITY_LOW)).otherwise(F.col(C.DROP_REASON)))
    return out, cut, [scored]


def apply_perplexity(df, model_path: str, model_hash: str | None = None, *, lang_col: str = LANG):
    """``perplexity`` of the kept rows under a reference model and their ``perplexity_bucket`` per language.

    Kept rows (null ``drop_reason``) are scored by `udfs.inference.make_score_udf` (per token of the
    reference model; a row the model cannot score gets null); rejected rows get nulls. Per language
    (``lang_col``; a null language is a group of its own; no such column = one group) the 30th and 60th
    percentiles of the kept perplexities cut ``head`` (lowest) / ``middle`` / ``tail``.

    Returns:
        ``(df, cuts, cached)``: the rows with both columns, ``{lang: [p30, p60]}``, and the persisted
        intermediate frame.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from udfs.inference import make_score_udf

    has_lang = lang_col in df.columns
    group = F.col(lang_col) if has_lang else F.lit(None).cast("string")
    kept = df.filter(F.col(C.DROP_REASON).isNull())
    score = make_score_udf(model_path, expected_hash=model_hash)(F.col(C.TEXT))
    scored = (
        kept.withColumn("_ppl", score)
        .withColumn(C.PERPLEXITY, F.col("_ppl.perplexity"))
        .drop("_ppl")
        .withColumn("_ppl_group", group)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    rows = (
        scored.filter(F.col(C.PERPLEXITY).isNotNull())
        .groupBy("_ppl_group")
        .agg(F.percentile_approx(C.PERPLEXITY, list(BUCKET_PERCENTILES), 10_000).alias("_ppl_cuts"))
        .collect()
    )
    cuts = {r[0]: [float(x) for x in r[1]] for r in rows}
    table = scored.sparkSession.createDataFrame(
        [(k, v) for k, v in cuts.items()], "_ppl_key string, _ppl_cuts array<double>"
    )
    joined = scored.join(F.broadcast(table), scored["_ppl_group"].eqNullSafe(table["_ppl_key"]), "left")
    ppl, lo, hi = F.col(C.PERPLEXITY), F.col("_ppl_cuts")[0], F.col("_ppl_cuts")[1]
    bucket = F.when(ppl.isNull(), F.lit(None)).when(ppl <= lo, BUCKETS[0]).when(ppl <= hi, BUCKETS[1])
    bucketed = joined.withColumn(C.PERPLEXITY_BUCKET, bucket.otherwise(BUCKETS[2])).drop(
        "_ppl_group", "_ppl_key", "_ppl_cuts"
    )
    rest = (
        df.filter(F.col(C.DROP_REASON).isNotNull())
        .withColumn(C.PERPLEXITY, F.lit(None).cast("double"))
        .withColumn(C.PERPLEXITY_BUCKET, F.lit(None).cast("string"))
    )
    return bucketed.unionByName(rest), cuts, [scored]


def apply_model_stages(df, stages: ModelStagesConfig, facts: dict):
    """The classifier stage, then the perplexity stage, as ``stages`` switches them on.

    Args:
        df: the heuristic chain's output (every row, ``drop_reason`` null = kept).
        stages: which stages run, and the classifier's cut.
        facts: `check_model_stages`' facts; the cut and the perplexity percentiles are added to them.

    Returns:
        ``(df, cached)``: the rows with the stages' columns, and the persisted intermediate frames.
    """
    cached = []
    if stages.quality_model:
        model, _, _ = load_classifier(stages.quality_model)
        min_score = stages.quality_min_score
        if min_score is None and stages.quality_keep_fraction is None:
            min_score = facts["quality_model"]["threshold"]
        df, cut, more = apply_quality(df, model, min_score=min_score, keep_fraction=stages.quality_keep_fraction)
        facts["quality_model"]["cut"] = cut
        cached += more
    if stages.perplexity_model:
        df, cuts, more = apply_perplexity(df, stages.perplexity_model, facts["perplexity_model"]["hash"])
        facts["perplexity_model"]["percentiles"] = {str(k): v for k, v in cuts.items()}
        cached += more
    return df, cached
