"""GPU check of the native Llama path: score the inference bench texts in fp32 and bf16 on CUDA, compare
every row's summed log-prob with a CPU fp32 run, print texts per second.

    python bench/gpu/gpu_check.py --data ../shared/data --n-texts 600 [--out /tmp/gpu_check] [--raw PATH]

The model is a random-weight Llama (6 layers x 384 wide, 6 query heads, 2 key/value heads, block 1024,
RoPE theta 500000) built here with ``transformers`` and saved as a local Hugging Face folder with a BPE
trained on the texts (nothing is downloaded), then loaded by ``model.loading.load_model`` (the native
path of the score job) and scored by ``udfs.tasks.score_texts`` with its default options (length
bucketing, token budget by device). Reported per device/precision: texts/s (median of ``--repeats``
after one warm-up pass), model load seconds, and the max relative difference of ``sum_logprob`` against
CPU fp32 (the CPU run scores a ``--cpu-texts`` subset, default 100, so the check stays short).

Exit 0 when CUDA is present and every run finished; 3 when there is no CUDA device (nothing to check).
The project never needs a GPU: this script is run by hand whenever a CUDA machine is at hand, and its
output goes to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchlib import default_raw_path, median, write_raw  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from bench_scoring import load_texts  # noqa: E402


def build_llama(out: Path, texts: list[str], block: int) -> Path:
    """A random Llama folder (safetensors + tokenizer.json) for the check; reused when it exists."""
    import transformers

    from model.tokenizer import train_bpe

    path = out / "llama-6x384"
    if (path / "model.safetensors").is_file():
        return path
    tok = train_bpe(texts, vocab_size=8192)
    cfg = transformers.LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=block,
        rope_theta=500000.0,
        bos_token_id=tok.eos_id,
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
        initializer_range=0.05,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    tok.save(path / "tokenizer.json")
    return path


def run(path: Path, texts: list[str], device: str, precision: str, repeats: int) -> dict:
    from model.loading import load_model
    from udfs.tasks import score_texts

    t0 = time.perf_counter()
    art = load_model(path, device)
    load_s = time.perf_counter() - t0
    series = pd.Series(texts, dtype=object)
    score_texts(art.model, art.tokenizer, series.iloc[:32], precision=precision)  # warm-up
    times, out = [], None
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = score_texts(art.model, art.tokenizer, series, precision=precision)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    errors = int(out["error"].notna().sum())
    return {
        "device": device,
        "precision": precision,
        "load_s": load_s,
        "wall_s_runs": times,
        "texts_per_s": len(texts) / median(times),
        "errors": errors,
        "sum_logprob": out["sum_logprob"].astype(float).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    p.add_argument("--n-texts", type=int, default=600)
    p.add_argument("--cpu-texts", type=int, default=100, help="texts scored on CPU fp32 for the comparison")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--out", type=Path, default=Path("/tmp/gpu_check"))
    p.add_argument("--raw", help="raw JSON (default bench/gpu/raw/gpu_check-<UTC>.json)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (the project never needs one)")
        return 3
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    texts = load_texts(args.data, args.n_texts)
    path = build_llama(args.out, texts, args.block)
    from model.loading import load_model
    from model.tokenizer import load_tokenizer

    tok = load_tokenizer(path / "tokenizer.json")
    max_tokens = args.block - 1
    texts = [tok.decode(tok.encode(t)[:max_tokens]) for t in texts]  # one window per text everywhere
    cpu = run(path, texts[: args.cpu_texts], "cpu", "fp32", 1)
    rows = [cpu]
    for precision in ("fp32", "bf16"):
        rows.append(run(path, texts, "cuda", precision, args.repeats))
    ref = np.array(cpu["sum_logprob"])
    report = {
        "bench": "gpu/gpu_check",
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "n_texts": len(texts),
        "model": str(path),
        "model_hash": load_model(path).hash,
        "runs": [],
    }
    for r in rows:
        got = np.array(r["sum_logprob"][: len(ref)])
        rel = float(np.nanmax(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-9)))
        line = {k: v for k, v in r.items() if k != "sum_logprob"} | {"max_rel_diff_vs_cpu_fp32": rel}
        report["runs"].append(line)
        print(
            f"{r['device']:5s} {r['precision']}: {r['texts_per_s']:9.1f} texts/s (median of "
            f"{len(r['wall_s_runs'])}), load {r['load_s']:.2f} s, errors {r['errors']}, "
            f"max rel diff vs CPU fp32 {rel:.2e}"
        )
    print("raw output:", write_raw(args.raw or default_raw_path("gpu", "gpu_check"), report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
