"""The one CLI skeleton (jobs/common/cli.py) as every job uses it: the config loader, exit codes and --help (no JVM:
every case here stops before a session starts, or replaces the session factory)."""

import json
import logging
import os

import pytest

from jobs import build_dataset, dedup, demo, evaluate, export, ingest, nightly_score, report, score, serve, stats, train
from jobs.common import cli
from jobs.transforms import scoring_table

PARSERS = {
    "build_dataset": build_dataset.build_parser,
    "dedup": dedup.build_parser,
    "demo": demo.build_parser,
    "evaluate": evaluate.build_parser,
    "export": export.build_parser,
    "ingest": ingest.build_parser,
    "report": report.build_parser,
    "score": lambda: scoring_table.build_parser("score"),
    "nightly_score": lambda: scoring_table.build_parser("nightly", stream=False),
    "serve": serve.build_parser,
    "stats": stats.build_parser,
    "train": train.build_parser,
}
SPARK_JOBS = (
    "build_dataset",
    "dedup",
    "demo",
    "evaluate",
    "ingest",
    "report",
    "score",
    "nightly_score",
    "stats",
    "train",
)


def _write(tmp_path, values: dict) -> str:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(values))
    return str(path)


def _errors(caplog) -> str:
    return " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


@pytest.mark.parametrize(
    "main, flags",
    [
        (score.main, ["--model", "/m"]),
        (nightly_score.main, ["--model", "/m"]),
        (build_dataset.main, ["--tokenizer-out", "/t"]),
        (dedup.main, []),
        (evaluate.main, ["--model", "/m", "--tasks", "piqa", "--task-dir", "/d", "--output", "/o"]),
    ],
)
def test_an_unknown_key_in_the_config_file_exits_2_naming_it(main, flags, tmp_path, caplog):
    cfg = _write(tmp_path, {"thresold": 0.5})
    assert main(["--lake", str(tmp_path), "--config", cfg, *flags]) == cli.EXIT_USAGE
    assert "unknown keys in --config" in _errors(caplog) and "'thresold'" in _errors(caplog)
    assert not (tmp_path / "runs").exists()  # nothing started, nothing recorded


@pytest.mark.parametrize(
    "build, parser, tables, required",
    [
        (
            build_dataset.build_config,
            build_dataset.build_parser,
            {"input": "gold", "output": "tokens"},
            {"tokenizer_out": "/t"},
        ),
        (dedup.build_config, dedup.build_parser, {"input": "silver", "output": "gold", "rejected": "rejected"}, {}),
        (
            scoring_table.build_config,
            lambda: scoring_table.build_parser("t"),
            {"input": "gold", "output": "scores"},
            {"model": "/m"},
        ),
    ],
)
def test_table_paths_in_the_config_file_are_honoured_and_flags_override_them(build, parser, tables, required, tmp_path):
    lake = str(tmp_path / "lake")
    in_file = {name: str(tmp_path / "elsewhere" / name) for name in tables}
    cfg = build(parser().parse_args(["--lake", lake, "--config", _write(tmp_path, {**in_file, **required})]))
    assert {name: getattr(cfg, name) for name in tables} == in_file
    default = build(parser().parse_args(["--lake", lake, "--config", _write(tmp_path, required)]))
    assert {name: getattr(default, name) for name in tables} == {n: os.path.join(lake, t) for n, t in tables.items()}
    flag = str(tmp_path / "from_flag")
    argv = ["--lake", lake, "--config", _write(tmp_path, {**in_file, **required}), "--output", flag]
    cfg = build(parser().parse_args(argv))
    assert cfg.output == flag and cfg.input == in_file["input"]  # the flag given wins; the file fills the rest


def test_other_values_in_the_config_file_are_used_unless_a_flag_is_given(tmp_path):
    cfg_file = _write(tmp_path, {"threshold": 0.7, "ngram": 3})
    cfg = dedup.build_config(dedup.build_parser().parse_args(["--lake", str(tmp_path), "--config", cfg_file]))
    assert (cfg.threshold, cfg.ngram) == (0.7, 3)
    argv = ["--lake", str(tmp_path), "--config", cfg_file, "--ngram", "7"]
    assert dedup.build_config(dedup.build_parser().parse_args(argv)).ngram == 7


@pytest.mark.parametrize(
    "main, flags, message",
    [
        (build_dataset.main, ["--tokenizer-out", "/t", "--val-fraction", "1.5"], "val_fraction must be in [0, 1)"),
        (dedup.main, ["--recheck-window", "0"], "--recheck-window must be >= 1, got 0"),
        (dedup.main, ["--bands", "4"], "give both --bands and --rows"),
        (score.main, ["--model", "/m", "--max-error-rate", "2"], "--max-error-rate must be in [0, 1]"),
        (
            evaluate.main,
            ["--model", "/m", "--tasks", "piqa", "--task-dir", "/d", "--output", "/o", "--limit", "0"],
            "--limit must be > 0, got 0",
        ),
        (train.main, ["--out", "/a", "--distributed", "-1"], "--distributed must be >= 0, got -1"),
        (build_dataset.main, [], "--tokenizer-out required"),
        (score.main, [], "--model required"),
        (ingest.main, ["--format", "jsonl"], "--input required"),
    ],
)
def test_a_bad_or_missing_value_exits_2_with_its_message(main, flags, message, tmp_path, caplog):
    assert main(["--lake", str(tmp_path), *flags]) == cli.EXIT_USAGE
    assert message in _errors(caplog)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("job", sorted(PARSERS))
def test_every_flag_has_help_that_shows_its_default(job):
    parser = PARSERS[job]()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{job} {action.option_strings[0]} has no help"
        shown = formatter._get_help_string(action)
        assert "default" in shown or "(required)" in shown or action.required, f"{job} {action.option_strings[0]}"
    assert ("--remote" in parser.format_help()) == (job in SPARK_JOBS)


def test_help_shows_the_config_default_of_a_flag_left_unset():
    text = " ".join(dedup.build_parser().format_help().split())
    assert "makes a duplicate (default: 0.8)" in text  # DedupConfig.threshold; the flag itself defaults to None
    assert "words per shingle (default: 5)" in text
    assert dedup.build_parser().parse_args([]).threshold is None  # so a --config value is not overridden
    text = " ".join(scoring_table.build_parser("t").format_help().split())
    assert "--max-error-rate MAX_ERROR_RATE fail (exit 1, after writing)" in text and "(default: 0.01)" in text


def test_remote_reaches_the_session_factory_and_a_session_that_fails_exits_1(tmp_path, monkeypatch, caplog):
    import jobs.common.spark

    calls = []

    def no_session(app_name, master=None, conf=None, remote=None):
        calls.append((app_name, remote))
        raise RuntimeError("connection refused")

    monkeypatch.setattr(jobs.common.spark, "get_spark", no_session)
    assert stats.main(["--lake", str(tmp_path), "--remote", "sc://nowhere:15002"]) == cli.EXIT_FAILED
    assert calls == [("lakelm-stats", "sc://nowhere:15002")]
    assert "cannot start a Spark session" in _errors(caplog)
    assert dedup.main(["--lake", str(tmp_path)]) == cli.EXIT_FAILED
    assert calls[-1] == ("lakelm-dedup", None)  # no --remote: the factory decides ($SPARK_REMOTE, else classic)


def test_a_config_file_that_is_not_an_object_or_not_json_exits_2(tmp_path, caplog):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert dedup.main(["--lake", str(tmp_path), "--config", str(bad)]) == cli.EXIT_USAGE
    assert "must hold a JSON object" in _errors(caplog)
    bad.write_text("{not json")
    assert dedup.main(["--lake", str(tmp_path), "--config", str(bad)]) == cli.EXIT_USAGE
    assert f"cannot read --config {bad}" in _errors(caplog)


def test_ingest_takes_its_input_format_and_tables_from_the_config_file(tmp_path):
    out = str(tmp_path / "bronze2")
    cfg_file = _write(tmp_path, {"input": "/data/x.jsonl", "format": "jsonl", "output": out, "text_col": "body"})
    cfg = ingest.build_config(ingest.build_parser().parse_args(["--lake", str(tmp_path), "--config", cfg_file]))
    assert (cfg.input, cfg.format, cfg.output, cfg.text_col) == ("/data/x.jsonl", "jsonl", out, "body")
    assert cfg.quarantine == os.path.join(str(tmp_path), "quarantine")
    bad = _write(tmp_path, {"input": "/data/x.jsonl", "format": "xml"})
    with pytest.raises(cli.UsageError, match="--format must be one of"):
        ingest.build_config(ingest.build_parser().parse_args(["--config", bad]))
