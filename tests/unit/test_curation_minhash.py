"""MinHash: simplification, shingles, exact modular signatures, Jaccard estimates, bands, determinism."""

from __future__ import annotations

import ast
import importlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xxhash

from udfs.curation.minhash import (
    MERSENNE_61,
    PRIME_32,
    MinHashConfig,
    _permutation_params,
    band_hashes,
    estimate_jaccard,
    jaccard,
    minhash_batch,
    minhash_signatures,
    optimal_bands_rows,
    shingle_hashes,
    shingle_set,
    signature_max,
    simplify_text,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Café  No. 42, opened 3.5 years ago!", "cafe no 0 opened 0 years ago"),
        ("Ünïcödé\tTEXT\n\nhere", "unicode text here"),
        ("Prices: 1,000 or 2.50 or ٣٤ or 12,5", "prices 0 or 0 or 0 or 0"),
        ("«Quotes» — and dashes – here…", "quotes and dashes here"),
        ("", ""),
    ],
)
def test_simplify_text(raw, expected):
    assert simplify_text(raw) == expected


def _sig(texts, cfg=None):
    cfg = cfg or MinHashConfig()
    per_doc = [shingle_hashes(t, cfg.n_grams) for t in texts]
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in per_doc])])
    return minhash_signatures(np.concatenate(per_doc), offsets, cfg)


def test_shingles_are_xxh64_of_space_joined_words():
    hashes = shingle_hashes("One, two; three four FIVE six!", 5)
    assert hashes.dtype == np.uint64
    assert hashes.tolist() == [
        xxhash.xxh64_intdigest(b"one two three four five"),
        xxhash.xxh64_intdigest(b"two three four five six"),
    ]
    assert shingle_hashes("Just three words", 5).tolist() == [xxhash.xxh64_intdigest(b"just three words")]
    assert shingle_hashes("  ...  ", 5).size == 0


def test_signature_is_exact_modular_minimum():
    cfg = MinHashConfig(num_perm=16, bands=4, rows=4)
    for precision, p in ((64, MERSENNE_61), (32, PRIME_32)):
        cfg = MinHashConfig(num_perm=16, bands=4, rows=4, precision=precision)
        text = "the quick brown fox jumps over the lazy dog and keeps running far away"
        a, b = _permutation_params(16, precision, cfg.seed)
        xs = [int(h) % p for h in shingle_hashes(text)]
        expected = [min((int(ai) * x + int(bi)) % p for x in xs) for ai, bi in zip(a, b)]
        sig = _sig([text], cfg)[0]
        assert sig.dtype == (np.uint64 if precision == 64 else np.uint32)
        assert [int(v) for v in sig] == expected


def test_identical_texts_identical_signatures_and_bands():
    text = "The committee met on Tuesday to review the budget for the new public library in town."
    df = minhash_batch(pd.Series([text, text, text + " Extra words change some shingles here."]))
    sigs = np.stack(df["minhash_signature"])
    assert (sigs[0] == sigs[1]).all() and not (sigs[0] == sigs[2]).all()
    assert (df["minhash_bands"][0] == df["minhash_bands"][1]).all()


def _pair_at_jaccard(length: int, shift: int, prefix: str = "w") -> tuple[str, str]:
    """Two texts of unique words, the second shifted by ``shift`` words: exact Jaccard of their 5-gram sets
    is (length - shift - 4) / (length + shift - 4)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    # letters only: simplify_text would turn digits into "0" and make every word equal
    words = [f"{prefix}{letters[i // 676]}{letters[i // 26 % 26]}{letters[i % 26]}" for i in range(length + shift)]
    return " ".join(words[:length]), " ".join(words[shift:])


@pytest.mark.parametrize("shift", [0, 10, 30, 60, 100, 150, 250])
def test_estimated_jaccard_is_close_to_exact(shift):
    a, b = _pair_at_jaccard(300, shift)
    exact = jaccard(shingle_set(a), shingle_set(b))
    assert exact == pytest.approx((300 - shift - 4) / (300 + shift - 4))
    sigs = _sig([a, b])
    assert abs(estimate_jaccard(sigs[0], sigs[1]) - exact) <= 0.1


def test_mean_estimation_error_is_small():
    """No bias: over 40 independent pairs (distinct words per pair), the mean error is near 0."""
    errors = []
    for k, shift in enumerate(range(0, 200, 5)):
        a, b = _pair_at_jaccard(200, shift, prefix="p" + "abcdefghijklmnopqrstuvwxyz"[k % 26] * (1 + k // 26))
        sigs = _sig([a, b])
        errors.append(estimate_jaccard(sigs[0], sigs[1]) - (200 - shift - 4) / (200 + shift - 4))
    assert abs(np.mean(errors)) < 0.02 and np.std(errors) < 0.06  # std of one estimate at J=0.5: 0.047


def test_empty_and_short_documents_are_flagged():
    df = minhash_batch(pd.Series(["", None, "two words", "one two three four five six"], index=[3, 4, 5, 6]))
    assert list(df.index) == [3, 4, 5, 6]
    assert df["minhash_flag"].tolist() == ["empty", "empty", "short", None]
    assert df["minhash_n_shingles"].tolist() == [0, 0, 1, 2] and df["minhash_n_shingles"].dtype == np.int32
    assert (df["minhash_signature"].iloc[0] == signature_max(64)).all()
    assert (df["minhash_signature"].iloc[2] <= MERSENNE_61).all()
    assert df["minhash_bands"].iloc[0].dtype == np.int64 and df["minhash_bands"].iloc[0].shape == (14,)


def test_chunking_does_not_change_signatures():
    texts = [" ".join(f"t{i}w{j}" for j in range(n)) for i, n in enumerate([3, 400, 50, 1200, 7, 90])]
    texts = [t.translate(str.maketrans("0123456789", "abcdefghij")) for t in texts]  # digits would collapse
    big = _sig(texts, MinHashConfig(chunk_elements=1 << 24))
    for chunk in (112, 112 * 5, 112 * 64, 1 << 16):
        np.testing.assert_array_equal(_sig(texts, MinHashConfig(chunk_elements=chunk)), big)


def test_precision_32():
    cfg = MinHashConfig(precision=32)
    sigs = _sig(["alpha beta gamma delta epsilon zeta eta theta", ""], cfg)
    assert sigs.dtype == np.uint32 and (sigs[0] < PRIME_32).all() and (sigs[1] == signature_max(32)).all()


def test_band_hashes():
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, MERSENNE_61, size=(3, 12), dtype=np.uint64)
    sigs[1] = sigs[0]
    sigs[2] = sigs[0]
    sigs[2, 5] += 1  # band 1 (rows 4..7) differs
    bands = band_hashes(sigs, bands=3, rows=4)
    assert bands.shape == (3, 3) and bands.dtype == np.int64
    assert (bands[0] == bands[1]).all()
    assert (bands[0] == bands[2]).tolist() == [True, False, True]
    same_values = np.zeros((1, 12), dtype=np.uint64)
    assert len(set(band_hashes(same_values, 3, 4)[0].tolist())) == 3  # the band index is mixed in
    with pytest.raises(AssertionError, match="bands \\* rows"):
        band_hashes(sigs, bands=5, rows=4)


def test_optimal_bands_rows():
    assert optimal_bands_rows(0.8, 112) == (9, 12)
    assert optimal_bands_rows(0.7, 250) == (25, 10)  # text-dedup's setting at 0.7
    for threshold in (0.5, 0.72, 0.9):
        b, r = optimal_bands_rows(threshold, 112)
        assert b * r <= 112
        assert abs((1 / b) ** (1 / r) - threshold) < 0.1  # the S-curve's midpoint sits near the threshold
    b, r = optimal_bands_rows(0.8, 112, fp_weight=0.05, fn_weight=0.95)
    assert (1 / b) ** (1 / r) < 0.8  # weighting false negatives moves the curve left (more recall)


def test_config_validation():
    with pytest.raises(AssertionError, match="bands \\* rows must equal num_perm"):
        MinHashConfig(num_perm=100)
    with pytest.raises(AssertionError, match="precision"):
        MinHashConfig(precision=16)


def test_jaccard_edge_cases():
    assert jaccard([], []) == 0.0
    assert jaccard(np.array([1, 2], dtype=np.uint64), [2, 1]) == 1.0
    assert jaccard([1, 1, 2], [2, 3]) == pytest.approx(1 / 3)


def test_deterministic_across_processes():
    code = (
        "import pandas as pd; from udfs.curation.minhash import minhash_batch;"
        "df = minhash_batch(pd.Series(['the same text in every process, with several words in it']));"
        "print(df['minhash_signature'][0][:8].tolist(), df['minhash_bands'][0][:4].tolist())"
    )
    outputs = set()
    for seed in ("0", "12345"):
        env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
        )
        outputs.add(out.stdout)
    df = minhash_batch(pd.Series(["the same text in every process, with several words in it"]))
    outputs.add(f"{df['minhash_signature'][0][:8].tolist()} {df['minhash_bands'][0][:4].tolist()}\n")
    assert len(outputs) == 1, outputs


# --- compiled kernels (numba) against the numpy + xxhash reference path -----------------------------------------


def _numba_is_declared() -> bool:
    """Whether setup.py's INSTALL_REQUIRES lists numba (then a missing kernel is a broken install, not a skip)."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "INSTALL_REQUIRES" for t in node.targets):
            return any(
                req.split(">")[0].split("=")[0].split("<")[0].strip() == "numba" for req in ast.literal_eval(node.value)
            )
    return False


def _require_kernels():
    """The kernels module; fails the test when numba is declared but cannot be imported, else skips."""
    if not _numba_is_declared():
        return pytest.importorskip("udfs.curation._minhash_kernels")
    try:
        return importlib.import_module("udfs.curation._minhash_kernels")
    except ImportError as exc:
        pytest.fail(f"numba is in setup.py install_requires but the MinHash kernels do not import: {exc}")


def test_numba_is_a_declared_dependency():
    assert _numba_is_declared()  # so the kernel tests below fail instead of skipping when numba breaks


def test_fallback_without_numba_warns_once_and_matches(monkeypatch, caplog):
    import udfs.curation
    from udfs.curation._compiled import optional_module

    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    monkeypatch.delitem(sys.modules, "udfs.curation._minhash_kernels", raising=False)
    monkeypatch.delattr(udfs.curation, "_minhash_kernels", raising=False)  # else `from ... import` reuses it
    optional_module.cache_clear()
    texts = ["one two three four five six seven", "a b c d e f g h", ""]
    try:
        with caplog.at_level(logging.WARNING, logger="udfs.curation._compiled"):
            minhash_batch(texts, use_kernels=False)
            assert "numpy fallback" not in caplog.text  # the reference path asked for explicitly: no warning
            first, second = minhash_batch(texts), minhash_batch(texts)
            minhash_signatures(np.array([1, 2], dtype=np.uint64), np.array([0, 2]))
    finally:
        optional_module.cache_clear()  # the next caller imports the real kernels again
    assert caplog.text.count("using the numpy fallback, about 3x slower") == 1, caplog.text
    assert [r.levelname for r in caplog.records if "numpy fallback" in r.getMessage()] == ["WARNING"]
    ref = minhash_batch(texts, use_kernels=False)
    for a, b, c in zip(first.minhash_signature, second.minhash_signature, ref.minhash_signature):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)


def test_kernel_xxh64_equals_xxhash_for_every_length():
    kernels = _require_kernels()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=300, dtype=np.uint8)
    for start in (0, 3):
        for end in range(start, 140):  # covers < 4, < 8, < 32 and several 32-byte stripes plus tails
            assert kernels.xxh64(data, start, end) == xxhash.xxh64_intdigest(data[start:end].tobytes())


def test_kernels_match_the_reference_path_on_real_text():
    _require_kernels()
    root = Path(__file__).resolve().parents[1] / "data"
    texts = [line for p in sorted(root.glob("*.jsonl")) for line in p.read_text(encoding="utf-8").splitlines()]
    texts = [json.loads(t).get("text") for t in texts][:300]
    texts += [
        None,
        "",
        "   ",
        "one",
        "one two three four",
        "one two three four five",
        "Ünïcödé wörds hère " * 30,
        "x " * 5000,
    ]
    for n_grams, precision in ((1, 64), (3, 64), (5, 64), (5, 32), (2, 32)):
        cfg = MinHashConfig(n_grams=n_grams, precision=precision)
        fast, ref = minhash_batch(texts, cfg), minhash_batch(texts, cfg, use_kernels=False)
        assert fast.minhash_signature[0].dtype == (np.uint64 if precision == 64 else np.uint32)
        assert len(fast) == len(texts)
        for a, b in zip(fast.minhash_signature, ref.minhash_signature):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(fast.minhash_bands, ref.minhash_bands):
            np.testing.assert_array_equal(a, b)
        assert fast.minhash_flag.tolist() == ref.minhash_flag.tolist()
        np.testing.assert_array_equal(fast.minhash_n_shingles.values, ref.minhash_n_shingles.values)


def test_compiled_simplify_equals_simplify_text_for_every_code_point():
    """Every code point of the kernel's table (and some beyond it), alone and between letters, digits and
    separators: the compiled pass, or its Python fallback, gives ``simplify_text``'s bytes exactly."""
    kernels = _require_kernels()
    from udfs.curation import minhash

    cps = [cp for cp in range(minhash._TABLE_SIZE + 0x400) if not 0xD800 <= cp < 0xE000]
    texts = [f"{chr(cp)} Ab{chr(cp)}cD 1{chr(cp)}2 x 3.{chr(cp)} {chr(cp)}{chr(cp)} {chr(cp)}" for cp in cps]
    texts += [
        "ΣΑΣ σας.",
        "Café  No. 42, opened 3.5 years ago!",
        "a\u0301 b",
        "x \u0301 y \u0301",
        "\u0301 \u0301x",
        "१२३ ١٢٣ ٤٫٥ 4٫5 6،7 8⎖9",
        "ＡＢＣ１２３",
        "İstanbul",
        "x²",
        "\u00a0lead and trail\u3000",
        "한국어 텍스트",
        "தமிழ் ಕನ್ನಡ",
        "🙂 emoji",
        None,
        "",
    ]
    buf, starts, ends = minhash._simplified_buffer(texts, kernels)
    cls = minhash._simplify_table()[0]
    assert (cls == kernels.KEEP).sum() > 100_000 and (cls == kernels.REPLACE).sum() > 1_000  # the fast path is used
    assert (cls == kernels.MARK).sum() > 1_000 and (cls == kernels.FALLBACK).sum() - 2048 < 1_500  # 2048 surrogates
    wrong = [
        t
        for i, t in enumerate(texts)
        if bytes(buf[starts[i] : ends[i]]) != (minhash.simplify_text(t) if isinstance(t, str) else "").encode()
    ]
    assert wrong == []
