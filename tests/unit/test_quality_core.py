"""jobs/transforms/quality.py's pure core: ROC-AUC, precision/recall, the classifier manifest, the stage flags."""

import itertools
import json

import numpy as np
import pytest

from jobs.transforms import quality as q


def _auc_by_pairs(labels, scores) -> float:
    """Every (positive, negative) pair: 1 if the positive scores higher, 1/2 for a tie."""
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_the_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.3 * labels, 1)  # rounding makes many ties
    assert q.roc_auc(labels, scores) == pytest.approx(_auc_by_pairs(labels, scores))


def test_roc_auc_edges():
    assert q.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert q.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert q.roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert np.isnan(q.roc_auc([1, 1], [0.2, 0.3]))


def test_precision_recall_counts():
    labels = [1, 1, 1, 0, 0, 0, 0]
    scores = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.5]
    got = q.precision_recall(labels, scores, 0.5)
    assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (2, 2, 1, 2)
    assert got["precision"] == pytest.approx(0.5) and got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert np.isnan(q.precision_recall([1, 0], [0.1, 0.2], 0.5)["precision"])


def _fake_artifact(root):
    (root / q.PIPELINE / "stages").mkdir(parents=True)
    (root / q.PIPELINE / "metadata").write_text("{}")
    (root / q.PIPELINE / "stages" / "part-0").write_bytes(b"\x00\x01weights")
    (root / q.METADATA).write_text(json.dumps({"format": q.FORMAT}))
    (root / q.MANIFEST).write_text(json.dumps({"format": q.FORMAT, "files": q.build_manifest(root)}))


def test_verify_classifier_accepts_intact_and_refuses_changed_extra_missing(tmp_path):
    root = tmp_path / "clf"
    _fake_artifact(root)
    digest = q.verify_classifier(root)
    assert len(digest) == 64 and digest == q.verify_classifier(root)
    (root / q.PIPELINE / "stages" / "part-0").write_bytes(b"\x00\x02weights")
    with pytest.raises(q.ClassifierIntegrityError, match=r"changed \['pipeline/stages/part-0'\]"):
        q.verify_classifier(root)
    (root / q.PIPELINE / "stages" / "part-0").write_bytes(b"\x00\x01weights")
    (root / q.PIPELINE / "extra.txt").write_text("x")
    with pytest.raises(q.ClassifierIntegrityError, match=r"unexpected \['pipeline/extra.txt'\]"):
        q.verify_classifier(root)
    (root / q.PIPELINE / "extra.txt").unlink()
    (root / q.METADATA).unlink()
    with pytest.raises(q.ClassifierIntegrityError, match=r"missing \['metadata.json'\]"):
        q.verify_classifier(root)


def test_verify_classifier_refuses_other_folders(tmp_path):
    with pytest.raises(q.ClassifierIntegrityError, match="no manifest.json"):
        q.verify_classifier(tmp_path)
    (tmp_path / q.MANIFEST).write_text(json.dumps({"format": "lakelm-artifact/1", "files": {}}))
    with pytest.raises(q.ClassifierIntegrityError, match="not a quality classifier"):
        q.verify_classifier(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"quality_min_score": 0.5}, "need --quality-model"),
        ({"quality_model": "m", "quality_min_score": 0.5, "quality_keep_fraction": 0.1}, "not both"),
        ({"quality_model": "m", "quality_min_score": 1.5}, r"in \[0, 1\]"),
        ({"quality_model": "m", "quality_keep_fraction": 0.0}, r"in \(0, 1\]"),
    ],
)
def test_model_stage_flags_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        q.ModelStagesConfig(**kwargs)


def test_model_stages_are_off_by_default():
    assert not q.ModelStagesConfig().enabled
    assert q.ModelStagesConfig(perplexity_model="m").enabled


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"positive": ()}, "at least one positive"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"char_ngram": -1}, "char_ngram"),
        ({"num_features": 0}, "num_features"),
    ],
)
def test_train_config_is_checked(kwargs, match):
    base = {"positive": ("p",), "negative": ("n",), "output": "o"}
    with pytest.raises(ValueError, match=match):
        q.QualityTrainConfig(**{**base, **kwargs})
