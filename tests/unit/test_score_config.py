"""jobs/score.py and jobs/nightly_score.py flags -> ScoreConfig (jobs/transforms/scoring_table.py) -> the options each
task's core receives (no JVM)."""

import json

import pytest

from jobs import score
from jobs.transforms import scoring_table
from udfs import batching, tasks


def _cfg(*flags):
    args = scoring_table.build_parser("test").parse_args(["--lake", "/tmp/lake", "--model", "/tmp/m", *flags])
    return scoring_table.build_config(args)


def test_defaults_leave_the_budget_to_each_task_and_score_in_fp32():
    cfg = _cfg()
    opts = cfg.task_options()
    assert "token_budget" not in opts and opts["precision"] == "fp32"
    assert tasks.score_texts.__kwdefaults__["token_budget"] is None  # by device
    gen = _cfg("--task", "generate").task_options()
    assert "precision" not in gen and "token_budget" not in gen
    assert tasks.generate_texts.__kwdefaults__["token_budget"] == batching.DEFAULT_GENERATE_TOKEN_BUDGET


def test_flags_reach_the_core_options():
    opts = _cfg("--task", "embed", "--precision", "bf16", "--token-budget", "512").task_options()
    assert opts["precision"] == "bf16" and opts["token_budget"] == 512
    assert set(opts) <= {"token_budget", "max_rows", "max_len", "precision", "pooling", "normalize"}


def test_bad_precision_from_a_config_file_is_refused(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"precision": "fp16"}))
    from jobs.common.cli import UsageError

    with pytest.raises(UsageError, match="precision"):
        _cfg("--config", str(cfg))
    with pytest.raises(SystemExit):  # argparse refuses it on the command line
        _cfg("--precision", "fp16")


@pytest.mark.parametrize(
    "flags, expected", [((), 0.01), (("--max-error-rate", "0"), 0.0), (("--max-error-rate", "1"), 1.0)]
)
def test_max_error_rate_default_and_bounds_accepted(flags, expected):
    assert _cfg(*flags).max_error_rate == expected


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_max_error_rate_out_of_range_is_a_usage_error(value, tmp_path):
    from jobs.common.cli import UsageError

    with pytest.raises(UsageError, match=r"--max-error-rate must be in \[0, 1\]"):
        _cfg("--max-error-rate", value)
    # through both CLIs: exit 2 before any session starts
    from jobs import nightly_score

    for main in (score.main, nightly_score.main):
        assert main(["--lake", str(tmp_path), "--model", str(tmp_path), "--max-error-rate", value]) == 2


@pytest.mark.parametrize(
    "counts, rate, fails",
    [
        ({"scored": 100, "input_errors": 0, "model_errors": 1}, 0.01, False),  # exactly at the rate
        ({"scored": 100, "input_errors": 0, "model_errors": 2}, 0.01, True),
        ({"scored": 10, "input_errors": 10, "model_errors": 0}, 0.0, False),  # bad input never reaches the model
        ({"scored": 12, "input_errors": 10, "model_errors": 2}, 0.5, True),  # 2 of the 2 sent failed
        ({"scored": 5, "input_errors": 0, "model_errors": 5}, 1.0, False),  # 1.0 = never fail
        ({"scored": 0}, 0.0, False),  # nothing to do
    ],
)
def test_check_error_rate(counts, rate, fails):
    if fails:
        with pytest.raises(
            scoring_table.ModelErrorRateExceeded,
            match=f"{counts['model_errors']} of {counts['scored'] - counts['input_errors']} rows",
        ):
            scoring_table.check_error_rate(counts, rate)
    else:
        scoring_table.check_error_rate(counts, rate)
