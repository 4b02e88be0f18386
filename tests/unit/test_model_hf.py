"""Native Hugging Face models (model/hf_*.py) against transformers, on tiny random checkpoints built here.

Every folder is made locally with ``from_config`` + ``save_pretrained(safe_serialization=True)`` and a
BPE tokenizer trained on tests/data; nothing is downloaded.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

transformers = pytest.importorskip("transformers")

from model.hf_folder import HFFolderError, is_hf_folder, read_hf_folder, resolve_special_ids  # noqa: E402
from model.hf_load import load_hf_model  # noqa: E402
from model.scoring import mean_pooled_embeddings, summarize_logprobs, token_logprobs  # noqa: E402
from model.tokenizer import train_bpe  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"
TEXTS = [json.loads(line)["text"] for line in (DATA / "udhr_multilingual_slice.jsonl").read_text("utf-8").splitlines()]
VOCAB = 512  # embedding rows; the tokenizer has 400 ids
SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
SPECIAL = dict(bos_token_id=0, eos_token_id=0, pad_token_id=1)  # <|endoftext|>, <|pad|> of train_bpe
# larger than the 0.02 default, so logits are far from uniform and greedy decoding does not just repeat
INIT = dict(initializer_range=0.2)
CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=128, n_embd=64, n_layer=2, n_head=4, **SPECIAL, **INIT
    ),
    "llama": lambda: transformers.LlamaConfig(
        vocab_size=VOCAB, max_position_embeddings=128, rope_theta=500000.0, **SHAPE, **SPECIAL, **INIT
    ),
    "mistral": lambda: transformers.MistralConfig(
        vocab_size=VOCAB, max_position_embeddings=128, sliding_window=80, **SHAPE, **SPECIAL, **INIT
    ),
    "qwen2": lambda: transformers.Qwen2Config(
        vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=True, eos_token_id=0, **SHAPE, **INIT
    ),
}
CLASSES = {
    "gpt2": transformers.GPT2LMHeadModel,
    "llama": transformers.LlamaForCausalLM,
    "mistral": transformers.MistralForCausalLM,
    "qwen2": transformers.Qwen2ForCausalLM,
}
FOLDERS = ["gpt2", "llama", "mistral", "qwen2", "llama_sharded", "llama_bf16"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny matmuls: extra threads only wait on each other on a shared machine


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXTS, vocab_size=400)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer):
    """name -> (folder, transformers reference model in fp32 loaded back from that folder)."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for seed, (name, make_config) in enumerate(CONFIGS.items()):
        torch.manual_seed(seed)
        model = CLASSES[name](make_config()).eval()
        model.save_pretrained(root / name, safe_serialization=True)
        if name == "llama":
            model.save_pretrained(root / "llama_sharded", safe_serialization=True, max_shard_size="100KB")
            model.to(torch.bfloat16).save_pretrained(root / "llama_bf16", safe_serialization=True)
    for name in FOLDERS:
        tokenizer.save(root / name / "tokenizer.json")
        ref = CLASSES[name.split("_")[0]].from_pretrained(root / name, dtype=torch.float32).eval()
        out[name] = (root / name, ref)
    return out


def _batch(tok, n_rows: int = 4, length: int = 64, prefix: int = 0) -> torch.Tensor:
    """(n_rows, length) ids of real multilingual text, each row starting with the prefix id."""
    rows = [[prefix] + tok.encode(t)[: length - 1] for t in TEXTS[:n_rows]]
    assert all(len(r) == length for r in rows), "test texts are long enough"
    return torch.tensor(rows)


def test_folders_are_what_they_claim(folders):
    sharded = folders["llama_sharded"][0]
    assert (sharded / "model.safetensors.index.json").is_file() and len(list(sharded.glob("*.safetensors"))) > 1
    with safe_open(str(folders["llama_bf16"][0] / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}


@pytest.mark.parametrize("name", FOLDERS)
def test_logits_equal_transformers(folders, tokenizer, name):
    path, ref = folders[name]
    model, tok, _ = load_hf_model(path)
    idx = _batch(tokenizer, prefix=tok.prefix_id)
    with torch.no_grad():
        ours = model.lm_head(model.hidden_states(idx))  # (B, T, V)
        theirs = ref(idx).logits
    assert ours.shape == theirs.shape == (4, 64, VOCAB)
    assert theirs.std() > 0.5, "logits far from uniform, so the comparison means something"
    assert (ours - theirs).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "qwen2", "llama_sharded"])
def test_summed_logprobs_equal_transformers_with_padding(folders, tokenizer, name):
    path, ref = folders[name]
    model, tok, _ = load_hf_model(path)
    lengths = [64, 17, 40, 5]
    rows = [[tok.prefix_id] + tokenizer.encode(t)[: n - 1] for t, n in zip(TEXTS, lengths, strict=False)]
    idx = torch.full((4, 64), tok.pad_id)
    mask = torch.zeros((4, 64), dtype=torch.long)
    for i, r in enumerate(rows):
        idx[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    sums = summarize_logprobs(token_logprobs(model, idx, mask), mask[:, 1:])["sum_logprob"]
    for i, r in enumerate(rows):  # transformers on each row alone, no padding
        x = torch.tensor([r])
        with torch.no_grad():
            lp = torch.log_softmax(ref(x).logits[0, :-1].double(), dim=-1)
        expected = lp.gather(-1, x[0, 1:].unsqueeze(-1)).sum().item()
        assert abs(sums[i].item() - expected) < 1e-3, (i, sums[i].item(), expected)


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "qwen2", "llama_bf16"])
def test_greedy_generation_matches_transformers_with_and_without_cache(folders, tokenizer, name):
    path, ref = folders[name]
    model, tok, _ = load_hf_model(path)
    prompt = _batch(tokenizer, n_rows=3, length=12, prefix=tok.prefix_id)
    cached = model.generate(prompt, 32, temperature=0)
    uncached = model.generate(prompt, 32, temperature=0, use_cache=False)
    theirs = ref.generate(prompt, max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=1)
    assert cached.shape == (3, 44)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, theirs)
    assert all(len(set(row[12:].tolist())) > 3 for row in cached), "continuations are not one repeated token"


def test_architecture_details_come_from_the_checkpoint(folders):
    llama, _, _ = load_hf_model(folders["llama"][0])
    assert (llama.config.n_head, llama.config.n_kv_head, llama.config.rope_theta) == (4, 2, 500000.0)
    assert llama.model.layers[0].self_attn.k_proj.weight.shape == (32, 64)  # 2 kv heads x 16
    assert llama.lm_head.weight is not llama.model.embed_tokens.weight
    qwen, tok, _ = load_hf_model(folders["qwen2"][0])
    assert qwen.lm_head.weight is qwen.model.embed_tokens.weight
    assert qwen.model.layers[0].self_attn.q_proj.bias is not None
    assert (tok.bos_id, tok.eos_id, tok.prefix_id) == (None, 0, 0)  # no BOS: the EOS separator is the context
    gpt2, _, _ = load_hf_model(folders["gpt2"][0])
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    ref_qkv = folders["gpt2"][1].transformer.h[0].attn.c_attn.weight  # Conv1D (in, out)
    assert torch.equal(gpt2.transformer.h[0].attn.c_attn.weight, ref_qkv.t())


def test_mistral_sliding_window_bounds_the_context(folders, tokenizer):
    model, tok, _ = load_hf_model(folders["mistral"][0])
    assert model.config.block_size == 80  # window 80 < max_position_embeddings 128
    idx = torch.zeros((1, 81), dtype=torch.long)
    with pytest.raises(ValueError, match="sequence of 81 tokens exceeds block_size=80"):
        model.hidden_states(idx)


def test_scoring_functions_run_unchanged(folders, tokenizer):
    path, ref = folders["llama"]
    model, tok, _ = load_hf_model(path)
    idx = _batch(tokenizer, n_rows=2, length=20, prefix=tok.prefix_id)
    emb = mean_pooled_embeddings(model, idx)
    with torch.no_grad():
        last = ref(idx, output_hidden_states=True).hidden_states[-1]  # after the final norm
    assert emb.shape == (2, 64)
    assert (emb - last.mean(dim=1)).abs().max().item() < 1e-4


def test_bf16_and_fp16_loading_casts_parameters(folders, tokenizer):
    path, ref = folders["llama"]
    idx = _batch(tokenizer, n_rows=2, length=32, prefix=0)
    with torch.no_grad():
        theirs = ref(idx).logits
    for dtype in (torch.bfloat16, torch.float16):
        model, _, _ = load_hf_model(path, dtype=dtype)
        assert {p.dtype for p in model.parameters()} == {dtype}
        with torch.no_grad():
            ours = model.lm_head(model.hidden_states(idx)).float()
        assert (ours - theirs).abs().max().item() < 0.25, dtype  # reduced precision, same model


def test_transformers_4_config_layout_is_read(folders, tokenizer, tmp_path):
    src, ref = folders["llama"]
    path = tmp_path / "v4"
    shutil.copytree(src, path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["rope_theta"] = cfg.pop("rope_parameters")["rope_theta"]  # 4.x wrote rope_theta at top level
    (path / "config.json").write_text(json.dumps(cfg))
    model, _, _ = load_hf_model(path)
    assert model.config.rope_theta == 500000.0
    idx = _batch(tokenizer, n_rows=2, length=64)
    with torch.no_grad():
        assert (model(idx) - ref(idx).logits).abs().max().item() < 1e-4


def test_folder_hash_follows_the_documented_recipe(folders, tmp_path):
    src, _ = folders["llama_sharded"]
    model, tok, digest = load_hf_model(src)
    h = hashlib.sha256()
    names = ["config.json", "generation_config.json", "model.safetensors.index.json"]
    names += sorted(p.name for p in src.glob("*.safetensors")) + ["tokenizer.json"]
    for n in names:
        data = (src / n).read_bytes()
        h.update(n.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    assert digest == h.hexdigest()
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    (copy / "README.md").write_text("notes")  # not part of the model
    assert load_hf_model(copy)[2] == digest
    (copy / "tokenizer.json").write_text((copy / "tokenizer.json").read_text() + " ")
    assert load_hf_model(copy)[2] != digest
    assert load_hf_model(folders["llama"][0])[2] != digest  # same weights, other files
    with pytest.raises(HFFolderError, match="was expected; it is another model"):
        load_hf_model(copy, expected_hash=digest)
    assert load_hf_model(src, expected_hash=digest.upper())[2] == digest


def test_is_hf_folder_tells_hf_from_artifact(folders, tmp_path):
    assert is_hf_folder(folders["gpt2"][0])
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 65, "block_size": 16, "n_layer": 2}))
    assert not is_hf_folder(tmp_path)
    assert not is_hf_folder(tmp_path / "absent")


def test_special_ids_precedence(tokenizer):
    tok = tokenizer.backend
    ids = resolve_special_ids(
        {"bos_token_id": 5, "eos_token_id": 6},
        {"eos_token_id": [0, 7]},
        {"pad_token": {"content": "<|pad|>"}, "bos_token": "<|endoftext|>"},
        tok,
    )
    assert ids == {"bos_id": 5, "eos_id": 0, "eos_ids": (0, 7), "pad_id": 1}
    ids = resolve_special_ids({}, {}, {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, tok)
    assert ids == {"bos_id": 0, "eos_id": 0, "eos_ids": (0,), "pad_id": None}


# --- refusals: each broken folder is a copy of the llama one with one thing wrong ---------------------


def _edit_config(path: Path, **changes) -> None:
    cfg = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (path / "config.json").write_text(json.dumps(cfg))


def _edit_weights(path: Path, edit) -> None:
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def _pickle_only(p):
    (p / "model.safetensors").unlink()
    (p / "pytorch_model.bin").write_bytes(b"not loaded")


def _bigger_tokenizer(p):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(p / "tokenizer.json"))
    tok.add_tokens([f"<extra_{i}>" for i in range(200)])
    tok.save(str(p / "tokenizer.json"))


def _wrong_shape(t):
    t["model.layers.0.mlp.up_proj.weight"] = torch.zeros(96, 64)


def _int8(t):
    t["model.norm.weight"] = torch.zeros(64, dtype=torch.int8)


REFUSALS = {
    "pickle_only": (
        _pickle_only,
        r"only pickle weights \(pytorch_model.bin\).*save_pretrained\(DIR, safe_serialization=True\)",
    ),
    "no_config": (lambda p: (p / "config.json").unlink(), "has no config.json"),
    "no_weights": (lambda p: (p / "model.safetensors").unlink(), "has no model.safetensors and no"),
    "no_tokenizer": (lambda p: (p / "tokenizer.json").unlink(), "has no tokenizer.json"),
    "no_model_type": (lambda p: _edit_config(p, model_type=None), "has no model_type"),
    "unknown_model_type": (
        lambda p: _edit_config(p, model_type="bert"),
        r"model_type 'bert' has no native implementation \(native: gpt2, llama, mistral, qwen2\)",
    ),
    "wrong_shape": (
        lambda p: _edit_weights(p, _wrong_shape),
        r"tensor 'model.layers.0.mlp.up_proj.weight' has shape \[96, 64\] in model.safetensors, expected \[128, 64\]",
    ),
    "missing_tensor": (
        lambda p: _edit_weights(p, lambda t: t.pop("model.layers.1.mlp.down_proj.weight")),
        r"lacks 1 tensor\(s\) the config calls for, e.g. \['model.layers.1.mlp.down_proj.weight'\]",
    ),
    "unexpected_tensor": (
        lambda p: _edit_weights(p, lambda t: t.update({"model.layers.0.self_attn.q_norm.weight": torch.ones(16)})),
        r"does not use, e.g. \['model.layers.0.self_attn.q_norm.weight'\]",
    ),
    "int8_on_disk": (lambda p: _edit_weights(p, _int8), r"'model.norm.weight' is stored as I8"),
    "tokenizer_too_big": (
        _bigger_tokenizer,
        r"has ids up to 599, but the model embeds only 512 ids .*the tokenizer belongs to another model",
    ),
    "rope_scaling_v5": (
        lambda p: _edit_config(p, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
        "RoPE scaling type 'linear' is not implemented natively",
    ),
    "rope_scaling_v4": (
        lambda p: _edit_config(p, rope_parameters=None, rope_theta=1e4, rope_scaling={"type": "dynamic", "factor": 2}),
        "RoPE scaling type 'dynamic' is not implemented natively",
    ),
    "gqa_heads": (lambda p: _edit_config(p, num_key_value_heads=3), "4 attention heads cannot share 3 key/value"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_folders_are_refused_with_their_message(folders, tmp_path, case):
    break_folder, message = REFUSALS[case]
    path = tmp_path / case
    shutil.copytree(folders["llama"][0], path)
    load_hf_model(path)  # the intact copy loads
    break_folder(path)
    with pytest.raises(HFFolderError, match=message) as err:
        load_hf_model(path)
    assert isinstance(err.value, ValueError)  # jobs turn ValueError from bad input into exit 2


def test_missing_shard_is_refused(folders, tmp_path):
    path = tmp_path / "sharded"
    shutil.copytree(folders["llama_sharded"][0], path)
    shard = sorted(path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(HFFolderError, match=rf"shard\(s\) \['{shard.name}'\] listed in model.safetensors.index.json"):
        read_hf_folder(path)


def test_tokenizer_encodes_without_special_tokens_and_round_trips(folders, tokenizer, tmp_path):
    from tokenizers import Tokenizer, processors

    path = tmp_path / "bos_template"
    shutil.copytree(folders["gpt2"][0], path)
    backend = Tokenizer.from_file(str(path / "tokenizer.json"))  # Llama-style: the template prepends BOS
    backend.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)]
    )
    backend.save(str(path / "tokenizer.json"))
    assert backend.encode("abc").ids[0] == 0
    _, tok, _ = load_hf_model(path)
    text = TEXTS[1]  # Amharic
    assert tok.encode(text) == tokenizer.encode(text) and tok.encode(text, add_eos=True)[-1] == tok.eos_id
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_batch(TEXTS[:3]) == [tokenizer.encode(t) for t in TEXTS[:3]]
    assert tok.vocab_size == 400
