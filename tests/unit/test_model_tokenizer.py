"""Tokenizers (model/tokenizer.py): exact round trips on real multilingual text, standard tokenizer.json."""

import hashlib
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from model.tokenizer import EOS_TOKEN, PAD_TOKEN, TextTokenizer, char_level_tokenizer, train_bpe

DATA = Path(__file__).resolve().parent.parent / "data"
SHAKESPEARE = (DATA / "tinyshakespeare_head.txt").read_text(encoding="utf-8")
UDHR = [
    json.loads(line)["text"]
    for line in (DATA / "udhr_multilingual_slice.jsonl").read_text(encoding="utf-8").splitlines()
]
EDGE_CASES = [
    "",
    " ",
    "  two leading spaces",
    "trailing  ",
    "a\r\nb\n\n\tc",
    "\x00\x01\x7f",
    "emoji 😀👍🏽 family 👨‍👩‍👧",
    "e\u0301 vs \u00e9",
    "tab\there",
    "literal <|endoftext|> inside",
    "\u200b zero width",
]


@pytest.fixture(scope="module")
def bpe() -> TextTokenizer:
    return train_bpe([SHAKESPEARE] + UDHR[:6], vocab_size=400)


def test_fixtures_are_multilingual():
    assert len(UDHR) >= 10 and any(ord(ch) > 0x3000 for ch in "".join(UDHR))


@pytest.mark.parametrize("text", [SHAKESPEARE] + UDHR + EDGE_CASES)
def test_bpe_round_trip(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_round_trip_batch_on_unseen_scripts(bpe):
    texts = UDHR[6:] + EDGE_CASES  # scripts not in the training text still round-trip (byte fallback)
    assert bpe.decode_batch(bpe.encode_batch(texts)) == texts
    # the batch path (ids only, no offsets) gives exactly the ids of one-by-one encoding
    all_texts = [SHAKESPEARE] + UDHR + EDGE_CASES
    assert bpe.encode_batch(all_texts, add_eos=True) == [bpe.encode(t, add_eos=True) for t in all_texts]


def test_bpe_specials_and_vocab(bpe):
    assert (bpe.eos_id, bpe.pad_id) == (0, 1)
    assert bpe.vocab_size == 400
    assert bpe.encode("hi", add_eos=True)[-1] == bpe.eos_id
    assert bpe.decode(bpe.encode("hi", add_eos=True), skip_special=True) == "hi"
    assert bpe.encode("x <|endoftext|>").count(bpe.eos_id) == 1


def test_bpe_too_small_vocab_raises():
    with pytest.raises(ValueError, match=">= 258"):
        train_bpe(["abc"], vocab_size=100)


def test_char_level_matches_nanogpt_ids():
    tok = char_level_tokenizer(SHAKESPEARE)
    chars = sorted(set(SHAKESPEARE))
    stoi = {ch: i for i, ch in enumerate(chars)}  # nanoGPT shakespeare_char prepare.py scheme
    sample = SHAKESPEARE[:500]
    assert tok.encode(sample) == [stoi[c] for c in sample]
    assert (tok.eos_id, tok.pad_id, tok.vocab_size) == (len(chars), len(chars) + 1, len(chars) + 2)
    assert tok.decode(tok.encode(SHAKESPEARE)) == SHAKESPEARE
    assert tok.decode(tok.encode(SHAKESPEARE[:50], add_eos=True)) == SHAKESPEARE[:50] + EOS_TOKEN


@pytest.mark.parametrize("text", UDHR[:5] + ["a\r\nb  c\t\n\n", "😀e\u0301"])
def test_char_level_round_trip_multilingual(text):
    tok = char_level_tokenizer(text)
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) == len(text)


def test_char_level_unknown_char_raises():
    tok = char_level_tokenizer("abc")
    with pytest.raises(ValueError, match="char-level tokenizer only knows"):
        tok.encode("abd")


@pytest.mark.parametrize("build", [lambda: char_level_tokenizer(SHAKESPEARE), lambda: train_bpe(UDHR, vocab_size=300)])
def test_tokenizer_json_loads_with_plain_tokenizers(tmp_path, build):
    tok = build()
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == tok.sha256
    plain = Tokenizer.from_file(str(path))
    text = SHAKESPEARE[:300]
    assert plain.encode(text).ids == tok.encode(text)
    assert plain.decode(plain.encode(text).ids) == text
    assert plain.token_to_id(EOS_TOKEN) == tok.eos_id and plain.token_to_id(PAD_TOKEN) == tok.pad_id
    again = TextTokenizer.from_file(path)
    assert again.sha256 == tok.sha256 and again.encode(text) == tok.encode(text)


def test_missing_specials_raise():
    from tokenizers import models

    with pytest.raises(ValueError, match="lacks special tokens"):
        TextTokenizer(Tokenizer(models.BPE()).to_str())
