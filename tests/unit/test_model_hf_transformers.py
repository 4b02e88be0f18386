"""Non-native Hugging Face models through transformers (model/hf_transformers.py), on tiny random folders.

A GPT-NeoX causal LM (no native implementation) must score and decode exactly as transformers does, and
a BERT encoder must embed as sentence-transformers pools (mean over the attention mask, or [CLS]).
Every folder is built here with ``from_config`` + ``save_pretrained(safe_serialization=True)`` and a
tokenizer trained on tests/data; nothing is downloaded.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

transformers = pytest.importorskip("transformers")

from jobs.common.cli import UsageError  # noqa: E402
from jobs.transforms import scoring_table as score_job  # noqa: E402
from model.hf_folder import HFFolderError  # noqa: E402
from model.loading import describe_model, load_model  # noqa: E402
from model.tokenizer import train_bpe  # noqa: E402
from udfs.tasks import embed_texts, generate_texts, score_texts  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"
TEXTS = [json.loads(line)["text"] for line in (DATA / "udhr_multilingual_slice.jsonl").read_text("utf-8").splitlines()]
SHORT = [t[:60] for t in TEXTS[:5]]  # a few dozen tokens each: no truncation


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny matmuls on a shared machine


@pytest.fixture(scope="module")
def neox(tmp_path_factory):
    """(folder, transformers reference) of a random GPT-NeoX with a byte-level BPE tokenizer."""
    path = tmp_path_factory.mktemp("tf") / "neox"
    cfg = transformers.GPTNeoXConfig(
        vocab_size=512,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
        initializer_range=0.2,  # logits far from uniform, so greedy decoding does not just repeat
    )
    torch.manual_seed(0)
    transformers.GPTNeoXForCausalLM(cfg).eval().save_pretrained(path, safe_serialization=True)
    train_bpe(TEXTS, vocab_size=400).save(path / "tokenizer.json")
    ref = transformers.GPTNeoXForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return path, ref


def _wordpiece() -> "object":
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(TEXTS, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """(folder, transformers reference BertModel, tokenizers.Tokenizer) of a random BERT encoder."""
    path = tmp_path_factory.mktemp("tf") / "bert"
    tok = _wordpiece()
    cfg = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
        initializer_range=0.2,
    )
    torch.manual_seed(1)
    transformers.BertModel(cfg).eval().save_pretrained(path, safe_serialization=True)
    tok.save(str(path / "tokenizer.json"))
    ref = transformers.BertModel.from_pretrained(path, dtype=torch.float32).eval()
    return path, ref, tok


def test_non_native_causal_lm_scores_as_transformers(neox):
    path, ref = neox
    art = load_model(path)
    assert art.metadata["kind"] == "causal_lm" and art.metadata["model_type"] == "gpt_neox"
    assert type(art.model).__name__ == "TransformersCausalLM" and art.config.block_size == 128
    out = score_texts(art.model, art.tokenizer, pd.Series(SHORT + [None]))
    assert out["error"].iloc[-1] == "null_text" and out["error"].iloc[:-1].isna().all()
    assert (out["n_windows"].iloc[:-1] == 1).all(), "each text fits one window: the reference reads it whole"
    for i, text in enumerate(SHORT):
        ids = torch.tensor([[art.tokenizer.prefix_id] + art.tokenizer.encode(text)])  # (1, T)
        with torch.no_grad():
            lp = torch.log_softmax(ref(ids).logits.double(), dim=-1)  # (1, T, V)
        want = lp[0, :-1].gather(-1, ids[0, 1:].unsqueeze(-1)).sum().item()
        assert out["n_tokens"].iloc[i] == ids.size(1) - 1
        assert abs(out["sum_logprob"].iloc[i] - want) < 1e-4, (i, out["sum_logprob"].iloc[i], want)
    assert out["sum_logprob"].iloc[:-1].nunique() == len(SHORT)


def test_non_native_causal_lm_decodes_greedily_as_transformers(neox):
    path, ref = neox
    art = load_model(path)
    tok = art.tokenizer
    idx = torch.tensor([[tok.prefix_id] + tok.encode(t)[:9] for t in SHORT[:3]])  # (3, 10), one length
    with torch.no_grad():
        theirs = ref.generate(idx, max_new_tokens=20, do_sample=False, eos_token_id=tok.eos_id, pad_token_id=tok.eos_id)
    for use_cache in (True, False):
        ours = art.model.generate(idx, 20, temperature=0.0, eos_id=tok.eos_id, use_cache=use_cache)
        assert torch.equal(ours, theirs), use_cache
    assert len(set(theirs[0, 10:].tolist())) > 3, "the continuation is not one repeated token"
    gen = generate_texts(art.model, tok, pd.Series([t[:30] for t in SHORT[:2]]), max_new_tokens=8, temperature=0.0)
    for i, text in enumerate(SHORT[:2]):
        prompt = torch.tensor([[tok.prefix_id] + tok.encode(text[:30])])
        with torch.no_grad():
            want = ref.generate(
                prompt, max_new_tokens=8, do_sample=False, eos_token_id=tok.eos_id, pad_token_id=tok.eos_id
            )[0, prompt.size(1) :].tolist()
        stop = want.index(tok.eos_id) if tok.eos_id in want else len(want)
        assert gen["generated"].iloc[i] == tok.decode(want[:stop]) and gen["n_new_tokens"].iloc[i] == stop


def _reference_embeddings(ref, tok, texts, pooling="mean", max_len=None):
    """What sentence-transformers computes: specials added by the tokenizer, pooled over attention_mask."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tok.to_str())
    if max_len:
        tok.enable_truncation(max_length=max_len + 2)  # the limit counts [CLS] and [SEP]
    rows = [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=True)]
    T = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), T), dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    with torch.no_grad():
        h = ref(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, C)
    if pooling == "cls":
        return h[:, 0].numpy(), rows
    w = mask.unsqueeze(-1).float()
    return ((h * w).sum(1) / w.sum(1)).numpy(), rows


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_encoder_embeds_as_sentence_transformers_pools(bert, pooling):
    path, ref, tok = bert
    art = load_model(path)
    assert art.metadata["kind"] == "encoder" and art.config.block_size == 62  # 64 positions - [CLS] - [SEP]
    want, rows = _reference_embeddings(ref, tok, SHORT, pooling)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    assert all(r[0] == cls and r[-1] == sep for r in rows), "the reference input carries the specials"
    out = embed_texts(art.model, art.tokenizer, pd.Series(SHORT + [""]), pooling=pooling)
    assert out["error"].iloc[-1] == "empty_text" and not out["truncated"].iloc[:-1].any()
    got = np.stack(out["embedding"].iloc[:-1].tolist())
    assert got.shape == (len(SHORT), 32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert list(out["n_tokens"].iloc[:-1]) == [len(r) - 2 for r in rows]  # text tokens, specials not counted
    normed = embed_texts(art.model, art.tokenizer, pd.Series(SHORT), pooling=pooling, normalize=True)
    got_n = np.stack(normed["embedding"].tolist())
    np.testing.assert_allclose(got_n, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got_n, axis=1), 1.0, atol=1e-6)


def test_encoder_truncation_keeps_the_closing_sep(bert):
    path, ref, tok = bert
    art = load_model(path)
    long = [TEXTS[0], TEXTS[1]]
    want, rows = _reference_embeddings(ref, tok, long, max_len=7)
    assert all(len(r) == 9 and r[-1] == tok.token_to_id("[SEP]") for r in rows)
    out = embed_texts(art.model, art.tokenizer, pd.Series(long), max_len=7, max_rows=1)
    np.testing.assert_allclose(np.stack(out["embedding"].tolist()), want, atol=1e-5)
    assert out["truncated"].tolist() == [True, True] and out["n_tokens"].tolist() == [7, 7]


def test_mean_pooling_of_a_causal_lm_is_unchanged_and_normalize_applies(neox):
    path, ref = neox
    art = load_model(path)
    out = embed_texts(art.model, art.tokenizer, pd.Series(SHORT[:2]), normalize=True)
    for i, text in enumerate(SHORT[:2]):
        ids = torch.tensor([art.tokenizer.encode(text)])
        with torch.no_grad():
            h = ref(ids, output_hidden_states=True).hidden_states[-1][0].mean(0).numpy()  # post final norm
        np.testing.assert_allclose(out["embedding"].iloc[i], h / np.linalg.norm(h), atol=1e-5)


def test_refusals(neox, bert, monkeypatch):
    neox_path, _ = neox
    bert_path, _, _ = bert
    art = load_model(neox_path)
    with pytest.raises(ValueError, match="pooling 'cls' needs a text encoder"):
        embed_texts(art.model, art.tokenizer, pd.Series(["hi"]), pooling="cls")
    with pytest.raises(ValueError, match="pooling must be one of"):
        embed_texts(art.model, art.tokenizer, pd.Series(["hi"]), pooling="max")
    for task in ("score", "generate"):
        with pytest.raises(HFFolderError, match=f"is a text encoder .* can only embed, not {task}"):
            describe_model(bert_path, task=task)
        with pytest.raises(UsageError, match="can only embed"):
            score_job.describe_model(str(bert_path), None, task)
    name, digest = describe_model(bert_path, task="embed")
    assert name == "bert" and digest == load_model(bert_path).hash
    with pytest.raises(TypeError, match="is an encoder"):
        load_model(bert_path).model.generate(torch.zeros((1, 2), dtype=torch.long), 3)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    for call in (lambda: load_model(neox_path), lambda: describe_model(neox_path)):
        with pytest.raises(HFFolderError, match=r"'gpt_neox' has no native implementation .*pip install lakelm\[hf\]"):
            call()


def test_pooling_and_normalize_flags_reach_embed():
    def cfg(*flags):
        return score_job.build_config(
            score_job.build_parser("t").parse_args(
                ["--lake", "/tmp/lake", "--model", "/tmp/m", "--task", "embed", *flags]
            )
        )

    assert cfg().task_options()["pooling"] == "mean" and cfg().task_options()["normalize"] is False
    opts = cfg("--pooling", "cls", "--normalize").task_options()
    assert opts["pooling"] == "cls" and opts["normalize"] is True
    with pytest.raises(SystemExit):
        cfg("--pooling", "max")
    with pytest.raises(ValueError, match="--pooling must be one of"):
        score_job.ScoreConfig(input="i", model="m", output="o", task="embed", pooling="max")


def test_encoder_saved_with_a_masked_lm_head_embeds_the_same(bert, tmp_path):
    path, ref, tok = bert
    mlm = transformers.BertForMaskedLM(ref.config)
    mlm.bert.load_state_dict(ref.state_dict(), strict=False)  # same encoder; a checkpoint of bert.* keys, no pooler
    mlm.save_pretrained(tmp_path / "mlm", safe_serialization=True)
    tok.save(str(tmp_path / "mlm" / "tokenizer.json"))
    art = load_model(tmp_path / "mlm")
    assert art.metadata["kind"] == "encoder"  # architectures BertForMaskedLM, model_type bert
    want, _ = _reference_embeddings(ref, tok, SHORT)
    got = np.stack(embed_texts(art.model, art.tokenizer, pd.Series(SHORT))["embedding"].tolist())
    np.testing.assert_allclose(got, want, atol=1e-5)


def _edit(path: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def _set_config(path: Path, **changes) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


BROKEN = {
    "missing_tensor": (
        lambda p: _edit(p, lambda t: t.pop("gpt_neox.layers.1.mlp.dense_4h_to_h.weight")),
        r"lacks 1 tensor\(s\) the config calls for, e.g. \['gpt_neox.layers.1.mlp.dense_4h_to_h.weight'\]",
    ),
    "wrong_shape": (
        lambda p: _edit(p, lambda t: t.update({"gpt_neox.layers.0.mlp.dense_h_to_4h.weight": torch.zeros(48, 32)})),
        "transformers cannot load this 'gpt_neox' model",
    ),
    "pickle_only": (
        lambda p: (p / "model.safetensors").rename(p / "pytorch_model.bin"),
        "only pickle weights",
    ),
    "softcapped_logits": (
        lambda p: _set_config(p, final_logit_softcapping=30.0),
        "scales or soft-caps its logits",
    ),
    "not_a_text_model": (
        lambda p: _set_config(p, architectures=["GPTNeoXForTokenClassification"], model_type="vit"),
        "cannot read its config|neither a causal language model nor a text encoder",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_non_native_folders_are_refused(neox, tmp_path, case):
    import shutil

    path = tmp_path / case
    shutil.copytree(neox[0], path)
    load_model(path)  # the intact copy loads
    breaks, message = BROKEN[case]
    breaks(path)
    with pytest.raises(HFFolderError, match=message):
        load_model(path)
