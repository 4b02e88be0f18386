"""Evaluation tasks, the pure part: task lines -> scoring requests (zero- or few-shot) -> item and task metrics.

Task files are JSONL in one of three layouts (those of llm-foundry's local ICL data, the data behind
DCLM's CORE tasks), told apart by their fields:

* multiple choice (``query``, ``choices``, ``gold``): one request per choice, context = the query,
  continuation = ``" " + choice`` (lm-eval-harness's default ``target_delimiter``);
* schema (``context_options``, ``continuation``, ``gold``): one request per option, context = the option,
  continuation = ``" " + continuation`` (lm-eval's ``multiple_input`` tasks, e.g. Winograd);
* language modelling (``context``, ``continuation``): one request. lm-eval's ``lambada_openai`` scores the
  last word *with* its leading space (``doc_to_target`` is ``" " + word`` and a ``loglikelihood`` request
  adds no delimiter); the files here store the word without it, so the delimiter is added unless the
  context already ends, or the continuation already starts, with whitespace. The scored text is then the
  same as lm-eval's in both layouts.

Each line is an item (``item_id`` = its 0-based line number in the file; blank lines are not items). A line
that cannot become requests gets a quarantine reason instead (``task_<why>``, exact strings in `REASONS`).
How a (context, continuation) pair is scored is ``udfs.tasks.loglikelihood_pairs``; this module turns the
scores into lm-eval's metrics: ``acc`` (argmax of the summed log-likelihood), ``acc_norm`` (argmax of the
log-likelihood divided by the choice's length in characters, as lm-eval's ``completion_len``; for schema
items the choice is the context option, as lm-eval's ``doc_to_choice`` of a ``multiple_input`` task), and
for language modelling ``acc`` = the continuation is the model's greedy continuation (LAMBADA accuracy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from random import Random

import numpy as np
import pandas as pd

MULTIPLE_CHOICE, SCHEMA, LANGUAGE_MODELING = "multiple_choice", "schema", "language_modeling"
KINDS = (MULTIPLE_CHOICE, SCHEMA, LANGUAGE_MODELING)
TARGET_DELIMITER = " "  # lm-eval-harness's default target_delimiter between context and choice
FEWSHOT_DELIMITER = "\n\n"  # lm-eval-harness's default fewshot_delimiter after each example
DEFAULT_FEWSHOT_SEED = 1234  # lm-eval-harness's default fewshot_random_seed

REASONS = (
    "task_bad_json",  # the line is not JSON
    "task_not_object",  # JSON, but not an object
    "task_unknown_layout",  # none of the three layouts' fields
    "task_bad_type",  # a field of the wrong type (query not a string, gold not an integer...)
    "task_empty_choices",  # choices / context_options is an empty list
    "task_empty_text",  # an empty choice, option or continuation (nothing to score, no length to normalise by)
    "task_gold_out_of_range",  # gold is not an index into the choices
)

REQUEST_COLUMNS = [
    "task",
    "item_id",
    "kind",
    "choice_index",
    "context",
    "continuation",
    "gold",
    "n_choices",
    "norm_chars",
]
QUARANTINE_COLUMNS = ["task", "item_id", "reason", "detail", "raw"]


@dataclass(frozen=True)
class TaskItem:
    """One parsed task line: what to score and what counts as right.

    Attributes:
        kind: one of `KINDS`.
        pairs: ``(context, continuation)`` per choice, in choice order (one pair for language modelling).
        gold: index of the right choice; None for language modelling (greedy match decides).
        norm_chars: per choice, the length in characters that ``acc_norm`` divides by.
    """

    kind: str
    pairs: tuple[tuple[str, str], ...]
    gold: int | None
    norm_chars: tuple[int, ...]

    def example(self) -> str:
        """This item as a solved few-shot example, exactly as lm-eval-harness writes one.

        lm-eval renders a shot as ``question + target_delimiter + answer + fewshot_delimiter``: multiple
        choice ``query + " " + choices[gold]``; schema (``multiple_input``) the gold context option, then
        ``" " + continuation``; language modelling ``context + " " + target``, where the target is the
        continuation as scored (lambada's ``doc_to_target`` already starts with its space, so the shot has
        two: lm-eval's own behaviour, kept for equal prompts).
        """
        if self.kind == LANGUAGE_MODELING:
            ctx, cont = self.pairs[0]
            return ctx + TARGET_DELIMITER + cont + FEWSHOT_DELIMITER
        ctx, cont = self.pairs[self.gold]
        return ctx + cont + FEWSHOT_DELIMITER


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


def _check_gold(gold, n: int) -> tuple[str, str] | None:
    if not _is_int(gold):
        return "task_bad_type", f"gold must be an integer, got {type(gold).__name__}"
    if not 0 <= gold < n:
        return "task_gold_out_of_range", f"gold {gold} is not in [0, {n})"
    return None


def _lm_continuation(context: str, continuation: str) -> str:
    """The continuation as lm-eval scores it: after one space, unless whitespace already separates them."""
    if context[-1:].isspace() or continuation[:1].isspace() or context == "":
        return continuation
    return TARGET_DELIMITER + continuation


def parse_task_line(line: str) -> tuple[TaskItem | None, str | None, str | None]:
    """Parse one JSONL task line into a `TaskItem`, or say why it cannot be scored.

    Args:
        line: one line of a task file (without its newline).

    Returns:
        ``(item, None, None)`` for a good line, ``(None, reason, detail)`` otherwise; ``reason`` is one of
        `REASONS` and ``detail`` says what was wrong in words.

    Example:
        >>> item, _, _ = parse_task_line('{"query": "Q:", "choices": ["a", "bb"], "gold": 1}')
        >>> item.pairs, item.gold, item.norm_chars
        ((('Q:', ' a'), ('Q:', ' bb')), 1, (1, 2))
        >>> parse_task_line('{"query": "Q:", "choices": ["a"], "gold": 3}')[1:]
        ('task_gold_out_of_range', 'gold 3 is not in [0, 1)')
    """
    return _parse(line)[1:]


def _parse(line: str) -> tuple[dict | None, TaskItem | None, str | None, str | None]:
    """`parse_task_line` that also returns the decoded JSON object (None when the line is not one)."""
    try:
        doc = json.loads(line)
    except ValueError as exc:
        return None, None, "task_bad_json", f"not JSON: {exc}"[:300]
    if not isinstance(doc, dict):
        return None, None, "task_not_object", f"a task line is a JSON object, got {type(doc).__name__}"
    return (doc, *_item(doc))


def _item(doc: dict) -> tuple[TaskItem | None, str | None, str | None]:
    """The `TaskItem` of one decoded task line, or ``(None, reason, detail)``."""
    if "choices" in doc or "query" in doc:
        query, choices = doc.get("query"), doc.get("choices")
        if not isinstance(query, str) or not _str_list(choices):
            return None, "task_bad_type", "multiple choice needs 'query' (string) and 'choices' (list of strings)"
        if not choices:
            return None, "task_empty_choices", "'choices' is empty"
        if any(c == "" for c in choices):
            return None, "task_empty_text", "a choice is the empty string"
        bad = _check_gold(doc.get("gold"), len(choices))
        if bad:
            return None, *bad
        pairs = tuple((query, TARGET_DELIMITER + c) for c in choices)
        return TaskItem(MULTIPLE_CHOICE, pairs, doc["gold"], tuple(len(c) for c in choices)), None, None
    if "context_options" in doc:
        options, cont = doc.get("context_options"), doc.get("continuation")
        if not _str_list(options) or not isinstance(cont, str):
            return None, "task_bad_type", "schema needs 'context_options' (list of strings) and 'continuation' (string)"
        if not options:
            return None, "task_empty_choices", "'context_options' is empty"
        if cont == "" or any(o == "" for o in options):
            return None, "task_empty_text", "an empty context option or continuation"
        bad = _check_gold(doc.get("gold"), len(options))
        if bad:
            return None, *bad
        pairs = tuple((o, TARGET_DELIMITER + cont) for o in options)
        return TaskItem(SCHEMA, pairs, doc["gold"], tuple(len(o) for o in options)), None, None
    if "context" in doc or "continuation" in doc:
        ctx, cont = doc.get("context"), doc.get("continuation")
        if not isinstance(ctx, str) or not isinstance(cont, str):
            return None, "task_bad_type", "language modelling needs 'context' and 'continuation' (strings)"
        if cont == "":
            return None, "task_empty_text", "'continuation' is empty"
        cont = _lm_continuation(ctx, cont)
        return TaskItem(LANGUAGE_MODELING, ((ctx, cont),), None, (len(cont),)), None, None
    return (
        None,
        "task_unknown_layout",
        f"fields {sorted(doc)[:10]}: expected query/choices/gold, context_options/continuation/gold "
        "or context/continuation",
    )


def fewshot_examples(
    docs: list[dict], num_fewshot: int, seed: int = DEFAULT_FEWSHOT_SEED, only: int | None = None
) -> list[list[int]]:
    """Which items serve as each item's few-shot examples, drawn as lm-eval-harness draws them.

    lm-eval's default sampler, with the few-shot split equal to the evaluation split: one
    ``random.Random(seed)`` per task, consumed item by item in file order; per item it samples
    ``num_fewshot + 1`` of all items, drops every copy of the item itself (equal JSON objects) and keeps
    the first ``num_fewshot``; when copies left too few, it samples ``num_fewshot`` again from the items
    unequal to this one. The draws depend on every earlier item's, so the whole file is drawn in one pass.

    Args:
        docs: the task's items (decoded JSON objects) in file order; the pool and the items to draw for.
        num_fewshot: examples per item (0 = none).
        seed: the task's seed (lm-eval's ``fewshot_random_seed``, 1234 by default).
        only: draw for the first ``only`` items (the pool stays all of ``docs``); None = every item.

    Returns:
        For each item drawn for, the indices into ``docs`` of its examples, in prompt order.

    Raises:
        ValueError: when the task has fewer than ``num_fewshot + 1`` items.

    Example:
        >>> fewshot_examples([{"q": i} for i in range(4)], 2, seed=0)
        [[3, 1], [2, 3], [3, 1], [2, 0]]
    """
    todo = docs if only is None else docs[:only]
    if num_fewshot <= 0:
        return [[] for _ in todo]
    if len(docs) < num_fewshot + 1:
        raise ValueError(f"{num_fewshot}-shot needs at least {num_fewshot + 1} items, the task has {len(docs)}")
    rnd = Random(seed)
    order = list(range(len(docs)))
    out = []
    for doc in todo:
        picked = [j for j in rnd.sample(order, num_fewshot + 1) if docs[j] != doc][:num_fewshot]
        if len(picked) < num_fewshot:
            picked = rnd.sample([j for j in order if docs[j] != doc], num_fewshot)
        out.append(picked)
    return out


def build_requests(
    task: str, lines: pd.Series, num_fewshot: int = 0, seed: int = DEFAULT_FEWSHOT_SEED, limit: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn a task file's lines into scoring requests and quarantine rows.

    Args:
        task: the task's name (written on every row).
        lines: the file's lines, indexed by their 0-based line number (the ``item_id``); blank or
            whitespace-only lines are skipped (they are not items).
        num_fewshot: solved examples before each item (`fewshot_examples`, drawn from the task's good items;
            each rendered by `TaskItem.example`, joined, then the item's own context), 0 = zero-shot.
        seed: the few-shot draw's seed.
        limit: only lines with ``item_id < limit`` become requests or quarantine rows (None = all); the
            few-shot examples are still drawn from every good line of the file, as lm-eval's ``--limit``
            keeps the whole split as the pool.

    Returns:
        ``(requests, quarantine)``: requests with `REQUEST_COLUMNS`, one row per (item, choice) in item
        then choice order; quarantine with `QUARANTINE_COLUMNS`, one row per bad line, ``raw`` = the line.
        Every non-blank line is in exactly one of them (requests by ``item_id``).

    Raises:
        ValueError: ``num_fewshot`` is more than the task's good items minus one.
    """
    good: list[tuple[int, dict, TaskItem]] = []
    bad: list[tuple] = []
    for item_id, line in lines.items():
        if line is None or not str(line).strip():
            continue
        doc, item, reason, detail = _parse(str(line))
        if item is None:
            if limit is None or int(item_id) < limit:
                bad.append((task, int(item_id), reason, detail, line))
        else:
            good.append((int(item_id), doc, item))
    wanted = [i for i, (item_id, _, _) in enumerate(good) if limit is None or item_id < limit]
    pool = [doc for _, doc, _ in good]
    shots = fewshot_examples(pool, num_fewshot, seed, only=len(wanted)) if num_fewshot else [[] for _ in wanted]
    reqs: list[tuple] = []
    for (item_id, _, item), picked in zip((good[i] for i in wanted), shots):
        prefix = "".join(good[j][2].example() for j in picked)
        n = len(item.pairs)
        for i, ((ctx, cont), chars) in enumerate(zip(item.pairs, item.norm_chars)):
            reqs.append((task, item_id, item.kind, i, prefix + ctx, cont, item.gold, n, chars))
    requests = pd.DataFrame(reqs, columns=REQUEST_COLUMNS)
    requests["gold"] = requests["gold"].astype("Int64")
    return requests, pd.DataFrame(bad, columns=QUARANTINE_COLUMNS)


ITEM_COLUMNS = [
    "task",
    "item_id",
    "kind",
    "gold",
    "n_choices",
    "loglik",
    "token_logprobs",
    "n_tokens",
    "is_greedy",
    "prediction",
    "prediction_norm",
    "correct",
    "correct_norm",
    "error",
]


def item_metrics(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per item from its scored requests: per-choice scores, predictions and whether they are right.

    Args:
        scored: `build_requests` rows plus the columns of ``udfs.tasks.loglikelihood_pairs``
            (``sum_logprob``, ``token_logprobs``, ``n_tokens``, ``is_greedy``, ``error``), any row order.

    Returns:
        DataFrame with `ITEM_COLUMNS`, sorted by task and item_id: ``loglik`` (summed log-likelihood per
        choice, nats), ``token_logprobs`` (per choice, per continuation token), ``n_tokens`` and
        ``is_greedy`` per choice; ``prediction`` = argmax of loglik and ``prediction_norm`` = argmax of
        loglik / ``norm_chars`` (first index on ties, as ``np.argmax``), both null for language modelling;
        ``correct`` (multiple choice, schema: prediction == gold; language modelling: the continuation is
        greedy) and ``correct_norm`` (prediction_norm == gold; language modelling: as ``correct``). An item
        with any failed request keeps the first ``error`` and has null predictions and correctness.
    """
    rows = []
    for (task, item_id), g in scored.sort_values(["task", "item_id", "choice_index"]).groupby(
        ["task", "item_id"], sort=True
    ):
        first = g.iloc[0]
        errors = [e for e in g["error"] if isinstance(e, str)]
        err = errors[0] if errors else None
        gold = None if pd.isna(first["gold"]) else int(first["gold"])
        ll = [None if pd.isna(v) else float(v) for v in g["sum_logprob"]]
        toks = [None if t is None else [float(x) for x in t] for t in g["token_logprobs"]]
        n_tok = [None if pd.isna(v) else int(v) for v in g["n_tokens"]]
        greedy = [None if pd.isna(v) else bool(v) for v in g["is_greedy"]]
        pred = pred_norm = correct = correct_norm = None
        if err is None:
            if first["kind"] == LANGUAGE_MODELING:
                correct = correct_norm = bool(greedy[0])
            else:
                lls = np.array(ll, dtype=np.float64)
                pred = int(np.argmax(lls))
                pred_norm = int(np.argmax(lls / g["norm_chars"].to_numpy(dtype=np.float64)))
                correct, correct_norm = pred == gold, pred_norm == gold
        rows.append(
            (task, int(item_id), first["kind"], gold, int(first["n_choices"]), ll, toks, n_tok, greedy)
            + (pred, pred_norm, correct, correct_norm, err)
        )
    out = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    for col in ("gold", "prediction", "prediction_norm"):
        out[col] = out[col].astype("Int64")
    for col in ("correct", "correct_norm"):
        out[col] = out[col].astype("boolean")
    return out


TASK_COLUMNS = ["task", "kind", "acc", "acc_norm", "random_baseline", "acc_centered", "n_items", "n_errors"]


def random_baseline(kind: str, n_choices: pd.Series) -> float:
    """Expected accuracy of guessing: mean of 1 / n_choices over the items; 0 for language modelling."""
    if kind == LANGUAGE_MODELING or len(n_choices) == 0:
        return 0.0
    return float((1.0 / n_choices.astype(np.float64)).mean())


def centered(acc: float, random: float) -> float:
    """Centred accuracy ``(acc - random) / (1 - random)``: 0 = chance, 1 = perfect (DCLM's CORE, arXiv 2406.11794).

    Example:
        >>> centered(0.75, 0.5), centered(0.25, 0.25)
        (0.5, 0.0)
    """
    return (acc - random) / (1.0 - random)


def task_metrics(items: pd.DataFrame) -> pd.DataFrame:
    """Per-task accuracy from `item_metrics` rows.

    Args:
        items: `item_metrics` output (one or more tasks).

    Returns:
        DataFrame with `TASK_COLUMNS`, one row per task (sorted): ``acc`` and ``acc_norm`` are means of
        ``correct`` / ``correct_norm`` over the items without an error (NaN when there are none),
        ``random_baseline`` as `random_baseline`, ``acc_centered`` = `centered` (acc, random_baseline),
        ``n_items`` = all items scored (errors included), ``n_errors`` = items with an error.
    """
    rows = []
    for task, g in items.groupby("task", sort=True):
        ok = g[g["error"].isna()]
        kind = g["kind"].iloc[0]
        acc = float(ok["correct"].astype(float).mean()) if len(ok) else float("nan")
        acc_norm = float(ok["correct_norm"].astype(float).mean()) if len(ok) else float("nan")
        rnd = random_baseline(kind, g["n_choices"])
        rows.append((task, kind, acc, acc_norm, rnd, centered(acc, rnd), len(g), len(g) - len(ok)))
    return pd.DataFrame(rows, columns=TASK_COLUMNS)


def core_centered_mean(tasks: pd.DataFrame) -> float:
    """The CORE-style summary: mean of ``acc_centered`` over the tasks (NaN tasks left out; NaN if none)."""
    vals = tasks["acc_centered"].dropna()
    return float(vals.mean()) if len(vals) else float("nan")
