"""Our evaluation prompts equal lm-eval-harness's, string for string: the harness builds its requests from
the task definitions `udfs.lm_eval_adapter.harness_task_config` writes for the task slices in
tests/data/eval_tasks, and `udfs.eval_tasks.build_requests` must give the same (context, continuation) pairs,
zero-shot and few-shot with the harness's sampler and seed. No model is run here (the scores are compared in
tests/spark/test_evaluate_parity.py)."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from tests.conftest import DATA
from udfs import eval_tasks as E
from udfs.lm_eval_adapter import harness_task_config, task_kind

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the json builder reads local files only
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TASK_DIR = DATA / "eval_tasks"
TASKS = sorted(p.stem for p in TASK_DIR.glob("*.jsonl"))


def _harness_requests(name: str, num_fewshot: int, seed: int, limit=None) -> dict[tuple[int, int], tuple[str, str]]:
    """{(doc_id, choice index): (context, continuation)} as the harness builds them."""
    from lm_eval.tasks import TaskManager, get_task_dict

    cfg = harness_task_config(name, TASK_DIR / f"{name}.jsonl")
    task = get_task_dict([cfg], TaskManager(include_defaults=False))[name]
    task.set_config(key="num_fewshot", value=num_fewshot)
    task.set_fewshot_seed(seed=seed)
    task.build_all_requests(rank=0, world_size=1, limit=limit)
    return {(inst.doc_id, inst.idx): tuple(inst.arguments) for inst in task.instances}


def _our_requests(name: str, num_fewshot: int, seed: int, limit=None) -> dict[tuple[int, int], tuple[str, str]]:
    lines = (TASK_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    requests, bad = E.build_requests(name, pd.Series(lines), num_fewshot=num_fewshot, seed=seed, limit=limit)
    assert bad.empty
    return {(int(r.item_id), int(r.choice_index)): (r.context, r.continuation) for r in requests.itertuples()}


def test_every_layout_is_covered():
    assert {task_kind(TASK_DIR / f"{t}.jsonl") for t in TASKS} == set(E.KINDS)


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("num_fewshot,seed", [(0, 1234), (3, 1234), (2, 7)])
def test_prompts_equal_the_harness(name, num_fewshot, seed):
    theirs = _harness_requests(name, num_fewshot, seed)
    ours = _our_requests(name, num_fewshot, seed)
    assert ours.keys() == theirs.keys()
    for key in sorted(theirs):
        assert ours[key] == theirs[key], key
    if num_fewshot:  # the examples really are there: every context holds num_fewshot solved examples
        assert all(ctx.count(E.FEWSHOT_DELIMITER) >= num_fewshot for ctx, _ in ours.values())


@pytest.mark.parametrize("name", ["arc_easy", "winograd_wsc"])
def test_limit_scores_the_first_items_and_draws_examples_from_the_whole_file(name):
    theirs = _harness_requests(name, 3, 1234, limit=4)
    ours = _our_requests(name, 3, 1234, limit=4)
    assert {k[0] for k in ours} == {0, 1, 2, 3} and ours == theirs
    docs = [json.loads(line) for line in (TASK_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert max(j for shots in E.fewshot_examples(docs, 3, 1234, only=4) for j in shots) >= 4  # beyond the limit


def test_fewshot_never_uses_the_item_itself_and_depends_on_the_seed():
    docs = [{"query": f"q{i}", "choices": ["a", "b"], "gold": i % 2} for i in range(6)]
    for seed in (0, 1, 1234):
        shots = E.fewshot_examples(docs, 3, seed)
        assert all(len(s) == 3 and i not in s and len(set(s)) == 3 for i, s in enumerate(shots))
    assert E.fewshot_examples(docs, 3, 0) != E.fewshot_examples(docs, 3, 1)
    dup = docs + [dict(docs[0])]  # a copy of item 0 is item 0 too: never its example
    assert all(0 not in s and 6 not in s for s in (E.fewshot_examples(dup, 5, 3)[0], E.fewshot_examples(dup, 5, 3)[6]))


def test_too_few_items_for_the_shots_is_an_error():
    with pytest.raises(ValueError, match="3-shot needs at least 4 items, the task has 3"):
        E.fewshot_examples([{"q": i} for i in range(3)], 3)
