"""Installing the Delta jars: Ivy's resolution report goes to a file, the terminal gets one summary line."""

from __future__ import annotations

import os
import subprocess
import sys

from jobs import delta_jars
from jobs.common import delta_install


def test_a_child_process_report_goes_to_the_file_not_the_terminal(tmp_path, capfd):
    report = tmp_path / "resolve.log"
    noise = ":: resolving dependencies :: org.apache.spark#spark-submit-parent"
    with delta_install.stderr_to(report):
        subprocess.run([sys.executable, "-c", f"import sys; sys.stderr.write({noise!r})"], check=True)
    print("after", file=sys.stderr)  # fd 2 is the terminal's again
    err = capfd.readouterr().err
    assert noise not in err and "after" in err
    assert report.read_text() == noise


def test_an_unreachable_repository_fails_with_the_end_of_the_report(tmp_path, monkeypatch, caplog):
    # no network and no jars: main() exits 1 with one error naming the report, never a wall of Ivy output
    monkeypatch.setenv("LAKELM_CACHE", str(tmp_path))
    monkeypatch.setattr(delta_jars, "jars_installed", lambda jars_dir=None: False)

    def fail(ivy_dir, repositories=None):
        with delta_install.stderr_to(ivy_dir / "resolve.log"):
            os.write(
                2, f"unresolved dependency: {delta_install.DELTA_PACKAGE}: not found\n".encode()
            )  # as the JVM does
        raise RuntimeError("Java gateway process exited before sending its port number")

    monkeypatch.setattr(delta_jars, "resolve_with_ivy", fail)
    assert delta_jars.main([]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "unresolved dependency" in errors[0] and "resolve.log" in errors[0], errors
