"""jobs/score.py with a text encoder through transformers: ``--task embed --pooling cls --normalize`` on a
tiny random BERT folder built here (nothing downloaded) equals the normalised [CLS] vector transformers
computes; score on the encoder exits 2 before any row is scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

transformers = pytest.importorskip("transformers")

from jobs import score  # noqa: E402
from udfs import columns as C  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"
TEXTS = [
    json.loads(line)["text"][:60] for line in (DATA / "udhr_multilingual_slice.jsonl").read_text("utf-8").splitlines()
]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """(folder, tokenizers.Tokenizer): a random 2-layer BERT and a WordPiece tokenizer with [CLS]/[SEP]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        TEXTS, trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    cfg = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
        initializer_range=0.2,
    )
    path = tmp_path_factory.mktemp("tf_score") / "bert"
    torch.manual_seed(0)
    transformers.BertModel(cfg).eval().save_pretrained(path, safe_serialization=True)
    tok.save(str(path / "tokenizer.json"))
    return path, tok


def test_embed_job_pools_cls_and_normalizes_an_encoder(spark, tmp_path, bert, caplog):
    path, tok = bert
    texts = TEXTS[:6]
    pdf = pd.DataFrame({"doc_id": [f"d{i}" for i in range(len(texts))], "text": texts})
    spark.createDataFrame(pdf, "doc_id string, text string").write.format("delta").save(str(tmp_path / "gold"))
    base = ["--lake", str(tmp_path), "--input", str(tmp_path / "gold"), "--model", str(path)]
    assert score.main([*base, "--task", "score"]) == 2  # an encoder has no language-model head
    assert "is a text encoder (no language-model head): it can only embed, not score" in caplog.text
    assert not (tmp_path / "scores").exists()
    assert score.main([*base, "--task", "embed", "--pooling", "cls", "--normalize"]) == 0
    out = spark.read.format("delta").load(str(tmp_path / "scores")).toPandas().set_index(C.DOC_ID)
    got = np.stack([np.asarray(out.loc[f"d{i}", C.EMBEDDING]) for i in range(len(texts))])
    ref = transformers.BertModel.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        cls = torch.cat([ref(torch.tensor([e.ids])).last_hidden_state[:, 0] for e in tok.encode_batch(texts)])
    want = torch.nn.functional.normalize(cls, dim=-1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert out[C.ERROR].isna().all()
