"""Packaging for lakelm: the ``jobs`` (Spark CLIs), ``udfs`` (pandas UDFs over pure functions) and
``model`` (pure PyTorch) packages. ``pip install -e .[dev]`` is what ``make`` runs."""

from setuptools import find_namespace_packages, setup

# Pins that work together (checked on the project's CI machine):
# - delta-spark 4.4.x declares pyspark<=4.2.0 in its metadata, so pyspark is pinned to 4.2.0.
# - pyspark 4.2 warns that pandas 3 is not fully supported (nulls arrive as NaN), so pandas<3.
INSTALL_REQUIRES = [
    "pyspark==4.2.0",
    "delta-spark==4.4.0",  # same version as the io.delta jars (jobs/common/delta_install.py)
    "pandas>=2.2,<3",
    "pyarrow>=15",
    "numpy>=1.26,<2.6",  # numba 0.68 declares numpy>=1.22,<2.6; a newer numpy makes `import numba` fail
    "torch>=2.4,<3",
    "tokenizers>=0.20",
    "safetensors>=0.4",
    "xxhash>=3.4",
    # compiled MinHash kernels (udfs/curation/_minhash_kernels.py); without them MinHash warns once and runs
    # the numpy fallback, about 3x slower. Pinned to the release line whose numpy bound is copied above.
    "numba>=0.68,<0.69",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "langid>=1.1.6",  # language ID whose model ships inside the package: nothing downloads at run time
    "resiliparse>=0.14",  # boilerplate-aware HTML-to-text for records that are HTML
    "ftfy>=6.1",  # optional mojibake repair (curation config normalize.fix_mojibake)
    "zstandard>=0.22",  # jobs/ingest.py reads .jsonl.zst line files as streams (udfs/ingest.py)
]

# Spark Connect client (grpcio, zstandard, ...): SPARK_REMOTE / --remote sessions (jobs/common/spark.py).
CONNECT = ["pyspark[connect]==4.2.0"]

# lm-eval-harness: the `lakelm` harness model and the harness task definitions (udfs/lm_eval_adapter.py).
# Pinned: the parity tests compare our prompts and scores with this release's, string for string.
EVAL = ["lm-eval[hf]==0.4.13"]  # [hf]: the harness's own hf model, the parity tests' reference

EXTRAS = {
    "connect": CONNECT,
    "eval": EVAL,
    "html": ["trafilatura>=1.8"],  # alternative HTML extractor (normalize.html_extractor="trafilatura")
    "hf": ["transformers>=4.56"],  # other HF architectures (from_pretrained(dtype=) needs 4.56)
    "dev": [
        *CONNECT,  # tests/spark/test_demo.py also runs the demo through a local Spark Connect server
        *EVAL,  # tests/unit/test_eval_harness_prompts.py, tests/spark/test_evaluate.py: parity with the harness
        "pytest>=8",
        "transformers>=4.56",  # tests/unit/test_model_hf.py builds tiny reference checkpoints with it
        "deltalake>=0.20",  # delta-rs: proves our tables are readable outside Spark
        "ruff==0.17.6",  # pinned: `make lint` (CI) must judge the same way everywhere
        "onnx>=1.17",  # model/export.py: ONNX export checked against PyTorch in the tests
        "onnxruntime>=1.20",
        "onnxscript>=0.2",  # the dynamo ONNX exporter needs it
        "spacy>=3.7",  # curation parity mode: datatrove's word splitting, checked in the tests
        "warcio>=1.7",  # tests/warc_files.py writes the WARC test archives
        "fastwarc>=0.14",  # bench/ingest: the one-process WARC reading baseline the ingest job is compared with
        "nbclient>=0.10",  # tests/spark/test_notebooks.py executes notebooks/*.ipynb
        "nbformat>=5.10",
        "ipykernel>=6.29",  # the kernel those notebooks run in (this venv's python)
    ],
}

setup(
    name="lakelm",
    version="0.1.0",
    description="A Spark + Delta Lake platform for the whole life of a GPT-style model",
    python_requires=">=3.10",
    # the data folders under jobs/ (configs, sample_data) are declared as namespace packages with their files,
    # so setuptools ships them without warning that importable folders are missing from `packages`
    packages=find_namespace_packages(include=["jobs", "jobs.*", "udfs", "udfs.*", "model", "model.*"]),
    package_data={
        "jobs.configs": ["*.json"],
        "jobs.sample_data": ["*.jsonl", "*.md"],
        "jobs.sample_data.eval_tasks": ["*"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
