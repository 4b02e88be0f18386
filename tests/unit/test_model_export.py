"""Exports (model/export.py): a Hugging Face GPT-2 folder that transformers and our native loader run with
our logits and token ids, and an ONNX graph that matches PyTorch in onnxruntime."""

import json
from pathlib import Path

import pytest
import torch

from model.artifact import load_artifact, save_artifact
from model.config import GPTConfig
from model.gpt import GPT
from model.tokenizer import EOS_TOKEN, PAD_TOKEN, char_level_tokenizer, train_bpe
from tests.conftest import DATA
from tests.tiny_model import corpus_text

SHAKESPEARE = corpus_text()
UDHR = [json.loads(line)["text"] for line in (DATA / "udhr_multilingual_slice.jsonl").read_text("utf-8").splitlines()]
BLOCK = 32


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny matmuls: extra threads only wait on each other on a shared machine


def _random_gpt(cfg: GPTConfig, seed: int) -> GPT:
    """A GPT whose every parameter (LayerNorm gains and biases too) is random and far from its init, so a
    weight left out, transposed wrongly or a mismatched activation shows in the logits."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "ln" in name or name.endswith("bias") else 0.1))
    return model.eval()


def _artifact(root: Path, kind: str) -> Path:
    """``char``: char-level tokenizer on tinyshakespeare, bias=True. ``bpe``: byte-level BPE on the
    multilingual UDHR slice, bias=False, vocabulary padded past the tokenizer (as training pads to 64)."""
    if kind == "char":
        tok = char_level_tokenizer(SHAKESPEARE)
        cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32, bias=True)
    else:
        tok = train_bpe(UDHR, vocab_size=300)
        cfg = GPTConfig(vocab_size=320, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32, bias=False)
    out = root / f"art-{kind}"
    save_artifact(out, _random_gpt(cfg, seed=len(kind)), tok, lineage={"model_name": f"tiny-{kind}"})
    return out


def _texts(kind: str) -> list[str]:
    return [SHAKESPEARE[i * 97 : i * 97 + 200] for i in range(4)] if kind == "char" else UDHR[:4]


def _batch(art, kind: str) -> torch.Tensor:
    """(4, BLOCK) ids of real text, each row after the EOS context token, as our scoring feeds the model."""
    rows = [[art.tokenizer.eos_id] + art.tokenizer.encode(t)[: BLOCK - 1] for t in _texts(kind)]
    assert all(len(r) == BLOCK for r in rows), [len(r) for r in rows]
    return torch.tensor(rows)


@pytest.fixture(scope="module", params=["char", "bpe"])
def exported(request, tmp_path_factory):
    """(kind, loaded artifact, exported Hugging Face folder)."""
    from model.export import export_artifact

    root = tmp_path_factory.mktemp(f"export-{request.param}")
    art = load_artifact(_artifact(root, request.param))
    return request.param, art, export_artifact(art, root / "hf", "hf")


def test_transformers_loads_the_folder_with_no_missing_or_unexpected_keys_and_our_logits(exported, caplog):
    transformers = pytest.importorskip("transformers")
    kind, art, folder = exported
    transformers.logging.set_verbosity_warning()
    transformers.logging.enable_propagation()  # its warnings reach caplog
    with caplog.at_level("WARNING"):
        model, info = transformers.GPT2LMHeadModel.from_pretrained(folder, output_loading_info=True)
    assert {k: list(v) for k, v in info.items()} == {
        "missing_keys": [],
        "unexpected_keys": [],
        "mismatched_keys": [],
        "error_msgs": [],
    }
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("transformers")]
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied, as ours
    assert model.config.activation_function == "gelu" and model.config.n_positions == BLOCK
    idx = _batch(art, kind)
    with torch.no_grad():
        ours, theirs = art.model(idx)[0], model.eval()(idx).logits
    assert ours.std() > 0.5  # far from uniform: the comparison below means something
    assert (ours - theirs).abs().max() < 1e-4


def test_transformers_generates_our_greedy_continuation(exported):
    transformers = pytest.importorskip("transformers")
    kind, art, folder = exported
    model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    prompt = _batch(art, kind)[:1, :8]
    ours = art.model.generate(prompt, max_new_tokens=12, temperature=0)
    theirs = model.generate(
        prompt, max_new_tokens=12, min_new_tokens=12, do_sample=False, attention_mask=torch.ones_like(prompt)
    )
    assert theirs.tolist() == ours.tolist()


def test_auto_tokenizer_is_fast_with_our_special_tokens_and_encodes_like_ours(exported):
    transformers = pytest.importorskip("transformers")
    kind, art, folder = exported
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert tok.is_fast
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == (EOS_TOKEN, EOS_TOKEN, PAD_TOKEN)
    assert (tok.eos_token_id, tok.pad_token_id) == (art.tokenizer.eos_id, art.tokenizer.pad_id)
    texts = _texts(kind) + [f"two{EOS_TOKEN}documents"]
    for text in texts:
        ids = art.tokenizer.encode(text)
        assert tok(text)["input_ids"] == ids  # no BOS/EOS added, specials in the text recognised
        assert tok.decode(ids) == text
    assert tok(texts)["input_ids"] == art.tokenizer.encode_batch(texts)


def test_native_loaders_read_the_export_back_with_the_same_logits(exported):
    from model.hf_load import load_hf_model
    from model.loading import load_model

    kind, art, folder = exported
    idx = _batch(art, kind)
    with torch.no_grad():
        ours = art.model(idx)[0]
    model, tok, _ = load_hf_model(folder)
    loaded = load_model(folder)
    assert loaded.metadata["format"] == "hf" and loaded.hash != art.hash
    for m, t in ((model, tok), (loaded.model, loaded.tokenizer)):
        with torch.no_grad():
            assert (m(idx) - ours).abs().max() < 1e-4
        assert t.prefix_id == art.tokenizer.eos_id  # scores cover the same tokens as the artifact's
        assert t.encode_batch(_texts(kind)) == art.tokenizer.encode_batch(_texts(kind))


def test_export_names_its_source_artifact(exported):
    kind, art, folder = exported
    lineage = json.loads((folder / "lakelm_export.json").read_text())
    assert lineage["source_artifact_hash"] == art.hash
    assert lineage["model_name"] == f"tiny-{kind}"
    assert lineage["tokenizer_sha256"] == art.tokenizer.sha256
    assert art.hash in (folder / "README.md").read_text()
    assert (folder / "tokenizer.json").read_text() == (Path(art.path) / "tokenizer.json").read_text()


def test_export_refuses_an_output_that_holds_something(tmp_path):
    from model.export import ExportError, export_hf

    model = GPT(GPTConfig(vocab_size=60, block_size=8, n_layer=1, n_head=1, n_embd=8))
    tok = char_level_tokenizer("abc")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_hf(model, tok, full)
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export_hf(model, tok, empty) / "model.safetensors").is_file()  # an empty folder is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full"]  # no temporary folder left


def test_onnx_matches_pytorch(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from model.export import check_onnx, export_onnx

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=67, block_size=16, n_layer=2, n_head=2, n_embd=32))
    path = export_onnx(model, tmp_path / "model.onnx")
    worst = check_onnx(model, path, shapes=[(1, 1), (3, 5), (2, 16), (5, 11)])
    assert worst < 1e-4


def test_onnx_folder_of_an_artifact_runs_in_onnxruntime_on_real_text(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from model.export import export_artifact

    art = load_artifact(_artifact(tmp_path, "char"))
    folder = export_artifact(art, tmp_path / "onnx", "onnx")
    lineage = json.loads((folder / "lakelm_export.json").read_text())
    assert lineage["source_artifact_hash"] == art.hash and lineage["onnx_max_abs_diff"] < 1e-4
    idx = _batch(art, "char")
    with torch.no_grad():
        ours = art.model(idx)[0].numpy()
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for rows, T in ((slice(0, 4), BLOCK), (slice(1, 2), 5)):
        (got,) = sess.run(["logits"], {"idx": idx[rows, :T].numpy()})
        assert abs(got - ours[rows, :T]).max() < 1e-4
