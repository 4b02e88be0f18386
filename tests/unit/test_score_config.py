"""jobs/score.py flags -> ScoreConfig -> the options each task's core receives (no JVM)."""

import json

import pytest

from jobs import score
from udfs import scoring as S


def _cfg(*flags):
    args = score.build_parser("test").parse_args(["--lake", "/tmp/lake", "--model", "/tmp/m", *flags])
    return score.build_config(args)


def test_defaults_leave_the_budget_to_each_task_and_score_in_fp32():
    cfg = _cfg()
    opts = cfg.task_options()
    assert "token_budget" not in opts and opts["precision"] == "fp32"
    assert S.score_texts.__kwdefaults__["token_budget"] is None  # by device
    gen = _cfg("--task", "generate").task_options()
    assert "precision" not in gen and "token_budget" not in gen
    assert S.generate_texts.__kwdefaults__["token_budget"] == S.DEFAULT_GENERATE_TOKEN_BUDGET


def test_flags_reach_the_core_options():
    opts = _cfg("--task", "embed", "--precision", "bf16", "--token-budget", "512").task_options()
    assert opts["precision"] == "bf16" and opts["token_budget"] == 512
    assert set(opts) <= {"token_budget", "max_rows", "max_len", "precision"}


def test_bad_precision_from_a_config_file_is_refused(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"precision": "fp16"}))
    from jobs.cli import UsageError

    with pytest.raises(UsageError, match="precision"):
        _cfg("--config", str(cfg))
    with pytest.raises(SystemExit):  # argparse refuses it on the command line
        _cfg("--precision", "fp16")
