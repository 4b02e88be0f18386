"""lakelm and lm-eval-harness, both ways: our JSONL task files as harness tasks, our models as a harness model.

* `harness_task_config` writes the lm-eval task definition of one of our task files (the layouts of
  ``udfs.eval_tasks``): ``dataset_path: json`` with the file as the ``test`` split (nothing downloaded), the
  few-shot split equal to it (so an item is never its own example), and ``doc_to_*`` fields that give the
  prompts ``udfs.eval_tasks.build_requests`` builds. It is how the parity tests run the harness on the very
  files ``jobs/evaluate.py`` reads, and how a user can.
* `LakelmLM` is a harness model (registered as ``lakelm``) over any model ``model.loading.load_model`` opens
  (a lakelm artifact or a local Hugging Face folder): ``loglikelihood`` through
  ``udfs.tasks.loglikelihood_pairs`` (the scoring core of the Spark job, so the numbers are the job's),
  ``loglikelihood_rolling`` over the harness's own disjoint token windows, ``generate_until`` greedy through
  ``udfs.tasks.generate_texts``, cut at the first stop string. The harness has no plug-in hook for models,
  so run it through this module, which registers the model and hands every other flag to the harness:

      python -m udfs.lm_eval_adapter --model lakelm --model_args path=models/m1 --tasks piqa,arc_easy

Needs the ``lm-eval`` package (the ``eval`` extra: ``pip install lakelm[eval]``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from udfs import eval_tasks as E

# The harness's metrics per layout: what `udfs.eval_tasks.task_metrics` computes for the same items.
_METRICS = {
    E.MULTIPLE_CHOICE: ["acc", "acc_norm"],
    E.SCHEMA: ["acc", "acc_norm"],
    E.LANGUAGE_MODELING: ["acc"],
}
# lambada-style files store the last word without its space; the harness target carries it, as
# `udfs.eval_tasks` scores it (no space added when whitespace already separates the two).
_LM_TARGET = (
    "{{ continuation if (context == '' or context[-1:] in [' ', '\\n', '\\t', '\\r'] "
    "or continuation[:1] in [' ', '\\n', '\\t', '\\r']) else ' ' + continuation }}"
)


def task_kind(path: str | os.PathLike) -> str:
    """The layout of a task file (`udfs.eval_tasks.KINDS`), from its first line that parses.

    Raises:
        ValueError: no line of the file is a valid task item.
    """
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                item, _, _ = E.parse_task_line(line.rstrip("\n"))
                if item is not None:
                    return item.kind
    raise ValueError(f"{path} holds no valid task item")


def harness_task_config(name: str, path: str | os.PathLike, kind: str | None = None) -> dict:
    """The lm-eval-harness task definition of one of our task files.

    Args:
        name: the harness task name.
        path: the JSONL file (absolute paths are safest: the harness resolves ``data_files`` itself).
        kind: its layout; None = `task_kind` (path).

    Returns:
        A task config dict (write it as YAML, or as JSON, which YAML reads, into an ``--include_path``
        folder).
    """
    kind = kind or task_kind(path)
    cfg: dict = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(path).resolve())}},
        "test_split": "test",
        "fewshot_split": "test",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in _METRICS[kind]],
        "metadata": {"version": 1.0},
    }
    if kind == E.MULTIPLE_CHOICE:
        cfg.update(output_type="multiple_choice", doc_to_text="query", doc_to_choice="choices", doc_to_target="gold")
    elif kind == E.SCHEMA:  # the harness's multiple_input: doc_to_text is the gold option's index
        cfg.update(
            output_type="multiple_choice",
            doc_to_text="gold",
            doc_to_choice="context_options",
            doc_to_target="continuation",
        )
    else:
        cfg.update(output_type="loglikelihood", doc_to_text="context", doc_to_target=_LM_TARGET)
    return cfg


def write_harness_tasks(tasks: dict[str, str | os.PathLike], out_dir: str | os.PathLike) -> list[str]:
    """Write `harness_task_config` of each ``{name: path}`` as ``OUT_DIR/<name>.yaml``; return the names."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, path in tasks.items():
        (out / f"{name}.yaml").write_text(json.dumps(harness_task_config(name, path), indent=1), encoding="utf-8")
    return list(tasks)


def main(argv: list[str] | None = None) -> int:
    """``python -m udfs.lm_eval_adapter [lm_eval flags]``: the harness's CLI with ``lakelm`` registered."""
    import lm_eval.models  # noqa: F401  (the harness's own models first: its registry loads them only when empty)
    from lm_eval.__main__ import cli_evaluate

    register()
    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()
    return 0


_REGISTERED: list = []


def register():
    """Register `LakelmLM` with the harness as ``lakelm`` (once); return the class."""
    if not _REGISTERED:
        import lm_eval.models  # noqa: F401  (the harness's own models first: its registry loads them only when empty)
        from lm_eval.api.registry import register_model

        _REGISTERED.append(register_model("lakelm")(_lm_class()))
    return _REGISTERED[0]


def _stop_at(text: str, until: list[str]) -> str:
    """``text`` cut before the first of the stop strings (the harness's rule for ``until``)."""
    cut = min((i for i in (text.find(u) for u in until if u) if i >= 0), default=len(text))
    return text[:cut]


def _lm_class():
    """The harness model class (built on first use: the harness is an optional dependency)."""
    import pandas as pd
    from lm_eval.api.model import LM
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from model.loading import load_model
    from udfs.tasks import generate_texts, loglikelihood_pairs, loglikelihood_token_pairs

    class LakelmLM(LM):
        """A lakelm artifact or local Hugging Face folder as an lm-eval-harness model.

        ``--model_args path=DIR[,precision=fp32|bf16|auto][,token_budget=N][,max_rows=N][,threads=N]``; the
        harness's ``--batch_size`` is accepted and unused (micro-batches follow the token budget, as in the
        Spark job). ``generate_until`` reads ``prefix + context`` (a document start, as our generate task does;
        the harness's ``hf`` model reads the context alone). A request the core cannot score (e.g. a
        character the tokenizer does not know) raises, since the harness has no per-request error.
        """

        def __init__(self, path: str, precision: str = "fp32", token_budget=None, max_rows=None, threads=None, **_):
            super().__init__()
            import torch

            if threads:
                torch.set_num_threads(int(threads))
            art = load_model(path)
            if art.metadata.get("kind") != "causal_lm":
                raise ValueError(f"{path} is an encoder; the harness needs a causal language model")
            self.model, self.tok = art.model, art.tokenizer
            self.opts = {
                "precision": precision,
                "token_budget": int(token_budget) if token_budget else None,
                "max_rows": int(max_rows) if max_rows else None,
            }

        @staticmethod
        def _checked(out: pd.DataFrame) -> pd.DataFrame:
            bad = out["error"].dropna()
            if len(bad):
                raise RuntimeError(f"{len(bad)} requests could not be scored; first: {bad.iloc[0]}")
            return out

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            ctx = pd.Series([r.args[0] for r in requests], dtype=object)
            cont = pd.Series([r.args[1] for r in requests], dtype=object)
            out = self._checked(loglikelihood_pairs(self.model, self.tok, ctx, cont, **self.opts))
            return [(float(s), bool(g)) for s, g in zip(out["sum_logprob"], out["is_greedy"])]

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            if self.tok.prefix_id is None:
                raise ValueError("rolling log-likelihood starts from BOS/EOS; this tokenizer has neither")
            pairs, owner = [], []
            for i, r in enumerate(requests):
                ids = list(self.tok.encode(r.args[0]))
                for w in get_rolling_token_windows(ids, int(self.tok.prefix_id), self.model.config.block_size, 1):
                    pairs.append(make_disjoint_window(w))
                    owner.append(i)
            out = self._checked(loglikelihood_token_pairs(self.model, self.tok.pad_id, pairs, **self.opts))
            totals = [0.0] * len(requests)
            for i, s in zip(owner, out["sum_logprob"]):
                totals[i] += float(s)
            return totals

        def generate_until(self, requests, disable_tqdm: bool = False):
            results = []
            for r in requests:
                ctx, kw = r.args[0], dict(r.args[1] or {})
                until = kw.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                if kw.get("do_sample") or float(kw.get("temperature", 0) or 0) > 0:
                    raise ValueError("lakelm's harness model generates greedily; sampling is not supported")
                out = generate_texts(
                    self.model,
                    self.tok,
                    pd.Series([ctx]),
                    max_new_tokens=int(kw.get("max_gen_toks", 256)),
                    temperature=0.0,
                )
                self._checked(out)
                results.append(_stop_at(out["generated"].iloc[0], until))
            return results

    return LakelmLM


if __name__ == "__main__":
    sys.exit(main())
