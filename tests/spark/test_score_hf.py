"""jobs/score.py with a local Hugging Face folder as --model: a tiny random Llama (grouped-query attention)
and GPT-2 built here with transformers (nothing downloaded), scored through the Spark UDF and checked
against transformers' own log-probs; broken folders exit 2 before any row is scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import transformers

from jobs import score
from jobs.common.runs import read_runs
from model.hf_folder import folder_hash, read_hf_folder
from model.tokenizer import train_bpe
from udfs import columns as C

DATA = Path(__file__).resolve().parent.parent / "data"
TEXTS = [json.loads(line)["text"] for line in (DATA / "udhr_multilingual_slice.jsonl").read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """{"llama": folder, "gpt2": folder}: random weights, a BPE tokenizer trained on tests/data text."""
    root = tmp_path_factory.mktemp("hf_score")
    tok = train_bpe(TEXTS, vocab_size=300)
    shape = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    configs = {
        "llama": transformers.LlamaConfig(
            vocab_size=320,
            max_position_embeddings=256,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=1,
            initializer_range=0.2,
            **shape,
        ),
        "gpt2": transformers.GPT2Config(
            vocab_size=320,
            n_positions=256,
            n_embd=32,
            n_layer=2,
            n_head=4,
            bos_token_id=0,
            eos_token_id=0,
            initializer_range=0.2,
        ),
    }
    out = {}
    for seed, (name, cfg) in enumerate(configs.items()):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
        model.save_pretrained(root / name, safe_serialization=True)
        tok.save(root / name / "tokenizer.json")
        out[name] = root / name
    return out, tok


def _reference_sum_logprobs(folder: Path, tok, texts: list[str]) -> list[float]:
    """transformers' model on ``[BOS] + tokens`` of each text (one window: the texts are short)."""
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    sums = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([[0] + tok.encode(text)])
            lp = torch.log_softmax(ref(ids).logits[0, :-1].double(), dim=-1)
            sums.append(float(lp.gather(-1, ids[0, 1:, None]).sum()))
    return sums


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_score_job_on_a_hugging_face_folder(spark, tmp_path, hf_folders, name):
    folders, tok = hf_folders
    folder = folders[name]
    texts = [t[:80] for t in TEXTS[:8]]  # a few multilingual texts, short enough for one 256-token window
    texts = [t for t in texts if len(tok.encode(t)) < 255]
    assert len(texts) >= 3
    pdf = pd.DataFrame({"doc_id": [f"d{i}" for i in range(len(texts))] + ["none"], "text": texts + [None]})
    spark.createDataFrame(pdf, "doc_id string, text string").write.format("delta").save(str(tmp_path / "gold"))
    args = ["--lake", str(tmp_path), "--input", str(tmp_path / "gold"), "--model", str(folder)]
    assert score.main(args) == 0
    out = spark.read.format("delta").load(str(tmp_path / "scores")).toPandas().set_index(C.DOC_ID)
    assert sorted(out.index) == sorted(pdf.doc_id)  # one row per input row
    digest = folder_hash(read_hf_folder(folder))
    assert out.model_hash.unique().tolist() == [digest] and out.model_name.unique().tolist() == [name]
    assert out.loc["none", C.ERROR] == "null_text"
    want = _reference_sum_logprobs(folder, tok, texts)
    got = out.loc[[f"d{i}" for i in range(len(texts))], C.SUM_LOGPROB].astype(float).tolist()
    np.testing.assert_allclose(got, want, atol=1e-3)
    n_tok = out.loc[[f"d{i}" for i in range(len(texts))], C.N_TOKENS].astype(int).tolist()
    assert n_tok == [len(tok.encode(t)) for t in texts]  # every token of the text is scored, BOS is context

    versions = spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 'scores'}`").count()
    assert score.main([*args, "--expect-model-hash", digest]) == 0  # the folder's hash is what --expect takes
    assert spark.sql(f"DESCRIBE HISTORY delta.`{tmp_path / 'scores'}`").count() == versions  # rerun: nothing new
    assert read_runs(spark, str(tmp_path / "runs"), job="score").first().counts["scored"] == 0
    assert score.main([*args, "--expect-model-hash", "0" * 64]) == 2


def _pickle_only(p: Path) -> None:
    (p / "model.safetensors").rename(p / "pytorch_model.bin")


def _wrong_shape(p: Path) -> None:
    cfg = json.loads((p / "config.json").read_text())
    cfg["intermediate_size"] = 48  # the weights were saved with 64
    (p / "config.json").write_text(json.dumps(cfg))


def _unknown_type(p: Path) -> None:
    cfg = json.loads((p / "config.json").read_text())
    cfg["model_type"] = "no_such_architecture"
    (p / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "breaks, message",
    [
        (_pickle_only, "only pickle weights"),
        (_wrong_shape, "has shape"),
        (_unknown_type, "no native implementation"),
    ],
)
def test_broken_folders_exit_2_before_scoring(spark, tmp_path, hf_folders, caplog, breaks, message):
    folders, _tok = hf_folders
    broken = tmp_path / "broken"
    shutil.copytree(folders["llama"], broken)
    breaks(broken)
    spark.createDataFrame([("d0", "some text")], "doc_id string, text string").write.format("delta").save(
        str(tmp_path / "gold")
    )
    args = ["--lake", str(tmp_path), "--input", str(tmp_path / "gold"), "--model", str(broken)]
    assert score.main(args) == 2
    assert message in caplog.text
    assert not (tmp_path / "scores").exists()  # refused before any row was scored
