"""The default master gives local runs task retries; a master the user names is used as given."""

import pytest

from jobs.common.spark import (
    DEFAULTS_FILE,
    FALLBACK_MASTER,
    console_defaults,
    read_properties,
    submit_args_name_master,
)

SUBMIT = ["/usr/bin/java", "-cp", "jars/*", "-Xmx1g", "org.apache.spark.deploy.SparkSubmit"]


def test_the_repository_default_master_retries_tasks():
    master = read_properties(DEFAULTS_FILE)["spark.master"]
    assert master == FALLBACK_MASTER == "local[*,4]"  # local[N,F]: F attempts per task


@pytest.mark.parametrize(
    "options, named",
    [
        ([], False),
        (["--driver-memory", "1g", "--verbose"], False),
        (["--master", "local[2]"], True),
        (["--master=spark://h:7077"], True),
        (["--conf", "spark.master=local[1]"], True),
        (["-c", "spark.master = local[1]"], True),
        (["--conf=spark.master=local[1]"], True),
        (["--conf", "spark.masterish=x"], False),
        (["--supervise", "--conf", "spark.ui.enabled=false"], False),
    ],
)
def test_submit_args_name_master(options, named):
    assert submit_args_name_master([*SUBMIT, *options, "jobs/score.py", "--lake", "L"]) is named


def test_application_arguments_are_not_submit_options():
    assert not submit_args_name_master([*SUBMIT, "jobs/score.py", "--master", "local[1]"])
    assert not submit_args_name_master(["python", "-m", "jobs.score", "--master", "x"])  # not spark-submit


def test_a_properties_file_that_sets_the_master_names_it(tmp_path):
    with_master, without = tmp_path / "a.conf", tmp_path / "b.conf"
    with_master.write_text("spark.master local[3]\n")
    without.write_text("spark.ui.enabled false\n")
    assert submit_args_name_master([*SUBMIT, "--properties-file", str(with_master), "app.py"])
    assert not submit_args_name_master([*SUBMIT, "--properties-file", str(without), "app.py"])
    assert submit_args_name_master([*SUBMIT, "--properties-file", str(DEFAULTS_FILE), "app.py"])


def test_spark_progress_bar_only_on_a_terminal():
    """The properties file leaves the console progress bar to the session factory, which turns it on for a
    terminal and off for a file or CI (one log line per stage there)."""
    assert "spark.ui.showConsoleProgress" not in read_properties(DEFAULTS_FILE)
    assert console_defaults(True) == {"spark.ui.showConsoleProgress": "true"}
    assert console_defaults(False) == {"spark.ui.showConsoleProgress": "false"}
