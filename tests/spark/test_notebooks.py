"""The notebooks run top to bottom on a tiny lake (executed with nbclient in a kernel on this
interpreter), print numbers that match the tables, and are stored without outputs."""

from __future__ import annotations

import json
import re
import sys

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.tiny_model import corpus_text, save_tiny_artifact
from udfs import tasks

NOTEBOOKS = REPO / "notebooks"
EXPLORE, SCORE = NOTEBOOKS / "01_explore_corpus.ipynb", NOTEBOOKS / "02_score_and_inspect.ipynb"
KERNEL = "lakelm-tests-venv"


def test_notebooks_are_stored_without_outputs():
    for path in (EXPLORE, SCORE):
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code, f"{path.name} has no code cells"
        dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
        assert not dirty, f"{path.name}: code cells {dirty} have outputs; clear them before committing"


def _texts(n: int) -> list[str]:
    lines = [ln for ln in corpus_text().splitlines() if len(ln) > 20]
    return [f"{lines[2 * i]}\n{lines[2 * i + 1]}" for i in range(n)]


@pytest.fixture(scope="module")
def tiny_lake(spark, tmp_path_factory):
    """A lake with bronze, quarantine, silver, rejected, gold and clusters tables, and a tiny model."""
    root = tmp_path_factory.mktemp("nb_lake")
    texts = _texts(10)
    bronze = pd.DataFrame(
        {"doc_id": [f"d{i:02d}" for i in range(10)], "text": texts, "source": ["play"] * 6 + ["verse"] * 4}
    )
    rejected = pd.DataFrame(
        {
            "doc_id": ["d07", "d08", "d09", "d05"],
            "text": [texts[i] for i in (7, 8, 9, 5)],
            "drop_reason": ["gopher_short_doc", "gopher_short_doc", "c4_curly_bracket", "dedup_near_duplicate"],
        }
    )
    quarantine = pd.DataFrame({"reason": ["invalid_json"], "raw": ["{oops"]})
    silver = bronze[~bronze.doc_id.isin(["d07", "d08", "d09"])][["doc_id", "text"]]
    gold = silver[silver.doc_id != "d05"]
    clusters = pd.DataFrame(
        {
            "doc_id": ["d03", "d05", "d00"],
            "cluster_id": ["d03", "d03", "d00"],
            "cluster_size": [2, 2, 1],
            "drop_reason": [None, "dedup_near_duplicate", None],
        }
    )
    schemas = {"clusters": "doc_id string, cluster_id string, cluster_size int, drop_reason string"}
    for name, pdf in (
        ("bronze", bronze),
        ("quarantine", quarantine),
        ("silver", silver),
        ("rejected", rejected),
        ("gold", gold),
        ("clusters", clusters),
    ):
        spark.createDataFrame(pdf, schemas.get(name)).write.format("delta").save(str(root / name))
    model = root / "_artifacts" / "gpt-tiny"
    save_tiny_artifact(model)
    return root, model, gold


def _kernel_env(tmp_path, monkeypatch):
    """A kernelspec that runs this interpreter, found through JUPYTER_PATH (no user-wide spec is used)."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _run(path, tmp_path, monkeypatch, env: dict[str, str]) -> str:
    """Execute a notebook (plus one cell printing the kernel's interpreter) and return all its stdout."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    _kernel_env(tmp_path, monkeypatch)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(f'kernel-python {sys.executable}')"))
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    out = "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "stream"
    )
    assert f"kernel-python {sys.executable}\n" in out, "the kernel did not run this interpreter"
    return out


@pytest.mark.spark
@pytest.mark.slow
def test_explore_corpus_notebook(tiny_lake, tmp_path, monkeypatch):
    root, _, _ = tiny_lake
    out = _run(EXPLORE, tmp_path, monkeypatch, {"LAKELM_LAKE": str(root), "LAKELM_NOTEBOOK_MASTER": "local[1]"})
    rows = dict(re.findall(r"^rows (\w+) (\S+)$", out, flags=re.MULTILINE))
    assert rows == {"bronze": "10", "quarantine": "1", "silver": "7", "rejected": "4", "gold": "6", "clusters": "3"}
    dropped = dict(re.findall(r"^dropped (\S+) (\d+)$", out, flags=re.MULTILINE))
    assert dropped == {
        "rejected:gopher_short_doc": "2",
        "rejected:c4_curly_bracket": "1",
        "rejected:dedup_near_duplicate": "1",
        "quarantine:invalid_json": "1",
    }
    assert "cluster d03 size 2" in out
    assert re.findall(r"^member (\S+) (\S+) \|", out, flags=re.MULTILINE) == [
        ("d03", "kept"),
        ("d05", "dedup_near_duplicate"),
    ]


@pytest.mark.spark
@pytest.mark.slow
def test_score_and_inspect_notebook(tiny_lake, tmp_path, monkeypatch):
    import torch

    from model.artifact import load_artifact

    root, model, gold = tiny_lake
    out = _run(
        SCORE,
        tmp_path,
        monkeypatch,
        {"LAKELM_LAKE": str(root), "LAKELM_ARTIFACT": str(model), "LAKELM_NOTEBOOK_MASTER": "local[1]"},
    )
    torch.set_num_threads(1)
    art = load_artifact(model)
    want = tasks.score_texts(art.model, art.tokenizer, pd.Series(gold.text.tolist(), dtype=object))
    want.insert(0, "doc_id", gold.doc_id.tolist())
    want = want.sort_values(["perplexity", "doc_id"])
    assert re.search(r"^scored 6 errors 0 model ", out, flags=re.MULTILINE)
    lowest = re.findall(r"^lowest (\S+) ([\d.]+) \|", out, flags=re.MULTILINE)
    highest = re.findall(r"^highest (\S+) ([\d.]+) \|", out, flags=re.MULTILINE)
    assert [d for d, _ in lowest] == want.doc_id.head(3).tolist()
    assert [d for d, _ in highest] == want.doc_id.tail(3).tolist()[::-1]
    for (_, got), ppl in zip(lowest, want.perplexity.head(3)):
        assert float(got) == pytest.approx(ppl, rel=1e-3)
    samples = re.findall(r"^sample (\d+) (eos|length) \|", out, flags=re.MULTILINE)
    assert len(samples) == 3 and all(0 <= int(n) <= 48 for n, _ in samples)
