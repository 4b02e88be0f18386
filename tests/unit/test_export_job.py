"""``python -m jobs.export``: exit 0 with a folder transformers and our loaders read, exit 2 with the reason
for a damaged, missing or unexpected artifact or an output that holds something, no Spark started."""

import json
import subprocess
import sys

import pytest
import torch

from jobs.export import main
from model.artifact import artifact_hash
from tests.conftest import REPO
from tests.tiny_model import corpus_text, save_tiny_artifact


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path = tmp_path_factory.mktemp("art") / "tiny"
    save_tiny_artifact(path)
    return path


def test_export_hf_folder_loads_in_transformers_and_natively(artifact, tmp_path):
    from model.loading import load_model

    out = tmp_path / "hf"
    assert main(["--model", str(artifact), "--format", "hf", "--output", str(out)]) == 0
    assert json.loads((out / "lakelm_export.json").read_text())["source_artifact_hash"] == artifact_hash(artifact)
    theirs = load_model(out)
    ours = load_model(artifact)
    idx = torch.tensor([[ours.tokenizer.eos_id] + ours.tokenizer.encode(corpus_text()[:31])])
    with torch.no_grad():
        assert (theirs.model(idx) - ours.model(idx)[0]).abs().max() < 1e-4
    transformers = pytest.importorskip("transformers")
    _, info = transformers.GPT2LMHeadModel.from_pretrained(out, output_loading_info=True)
    assert not any(info.values())


def test_export_onnx(artifact, tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    assert main(["--model", str(artifact), "--format", "onnx", "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "lakelm_export.json", "model.onnx", "tokenizer.json"]
    assert json.loads((out / "lakelm_export.json").read_text())["onnx_max_abs_diff"] < 1e-4


def _damage(art, tmp_path):
    bad = tmp_path / "damaged"
    save_tiny_artifact(bad)
    with open(bad / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\0")
    return bad


def _hf_folder(art, tmp_path):
    out = tmp_path / "already-hf"
    assert main(["--model", str(art), "--format", "hf", "--output", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "case, message",
    [
        ("damaged", "do not match manifest.json"),
        ("missing", "does not exist"),
        ("hf_folder", "is not a lakelm artifact"),
        ("non_empty_output", "not an empty folder"),
        ("wrong_hash", "was expected"),
    ],
)
def test_usage_errors_exit_2_with_the_reason_and_write_nothing(artifact, tmp_path, caplog, case, message):
    model, out, extra = artifact, tmp_path / "out", []
    if case == "damaged":
        model = _damage(artifact, tmp_path)
    elif case == "missing":
        model = tmp_path / "nope"
    elif case == "hf_folder":
        model = _hf_folder(artifact, tmp_path)
    elif case == "non_empty_output":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    elif case == "wrong_hash":
        extra = ["--expect-model-hash", "0" * 64]
    before = sorted(p.name for p in tmp_path.iterdir())
    with caplog.at_level("ERROR"):
        assert main(["--model", str(model), "--format", "hf", "--output", str(out), *extra]) == 2
    assert message in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temporary folder
    if case == "non_empty_output":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_unknown_format_is_a_usage_error(artifact, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--model", str(artifact), "--format", "gguf", "--output", str(tmp_path / "o")])
    assert exc.value.code == 2


def test_python_m_exports_without_starting_spark(artifact, tmp_path):
    out = tmp_path / "hf"
    code = (
        "import sys; from jobs.export import main; rc = main(sys.argv[1:]); "
        "assert 'pyspark' not in sys.modules, 'export imported pyspark'; sys.exit(rc)"
    )
    args = ["--model", str(artifact), "--format", "hf", "--output", str(out)]
    run = subprocess.run(
        [sys.executable, "-c", code, *args], check=False, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == str(out) and (out / "model.safetensors").is_file()
    again = subprocess.run(
        [sys.executable, "-m", "jobs.export", *args], check=False, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 2 and "not an empty folder" in again.stderr
