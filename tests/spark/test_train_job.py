"""jobs/train.py: train on a pinned Delta version (single process, TorchDistributor DDP,
spark-submit) and write an artifact whose manifest refuses tampering."""

import json

import pytest

from jobs import build_dataset, train
from tests.conftest import DATA

pytestmark = pytest.mark.spark

TINY = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32},
        "train": {"batch_size": 4, "max_steps": 12, "eval_every": 6, "eval_steps": 2, "ckpt_every": 6,
                  "warmup_steps": 2, "threads": 1, "device": "cpu", "shuffle_buffer": 256}}


@pytest.fixture(scope="module")
def tokens(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    rows = [(r["id"], r["text"]) for r in map(json.loads, (DATA / "cc2019_slice.jsonl").read_text().splitlines())
            if r["text"].strip()][:40]
    spark.createDataFrame(rows, "doc_id string, text string").write.format("delta").save(str(root / "gold"))
    assert build_dataset.main(["--lake", str(root), "--tokenizer-out", str(root / "tok"), "--vocab-size", "400",
                               "--block-size", "32", "--val-fraction", "0.2"]) == 0
    cfg = root / "cfg.json"
    cfg.write_text(json.dumps(TINY))
    return root, cfg


def test_train_writes_verified_artifact_with_lineage(spark, tokens):
    from model.artifact import ArtifactIntegrityError, load_artifact

    root, cfg = tokens
    # a second version of the table: training pins version 0 and records it
    spark.read.format("delta").load(str(root / "tokens")).limit(10).write.format("delta").mode("overwrite").save(
        str(root / "tokens"))
    out = root / "art"
    assert train.main(["--lake", str(root), "--data-version", "0", "--out", str(out), "--config", str(cfg)]) == 0
    art = load_artifact(out)
    assert art.metadata["lineage"]["data_version"] == 0
    assert art.metadata["lineage"]["dataset"]["tokenizer_sha256"] == art.tokenizer.sha256
    assert art.metadata["metrics"]["step"] == 12
    assert art.metadata["metrics"]["val_bpb"] > 0
    assert (root / "art.work" / "loss_curve.png").exists()

    blob = bytearray((out / "model.safetensors").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (out / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(out)
    # an existing artifact is never overwritten
    assert train.main(["--lake", str(root), "--out", str(out), "--config", str(cfg)]) == 2


def test_train_distributed_two_processes(spark, tokens):
    from model.artifact import load_artifact

    root, cfg = tokens
    out = root / "art_ddp"
    assert train.main(["--lake", str(root), "--data-version", "0", "--out", str(out), "--config", str(cfg),
                       "--distributed", "2"]) == 0
    assert (root / "art_ddp.work" / "rank-1.done").exists()
    art = load_artifact(out)
    assert art.metadata["lineage"]["distributed"] == 2
    # each rank consumed its own batches: twice the tokens of one process for the same steps
    assert art.metadata["metrics"]["tokens_seen"] == 2 * 12 * 4 * 32


@pytest.mark.slow
def test_train_via_spark_submit(spark, tokens):
    from model.artifact import verify_artifact
    from tests.spark.test_submit_and_cluster import spark_submit

    root, cfg = tokens
    proc = spark_submit("local[2]", "jobs/train.py", "--lake", str(root), "--data-version", "0",
                        "--out", str(root / "art_submit"), "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    verify_artifact(root / "art_submit")
