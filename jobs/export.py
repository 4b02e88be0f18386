"""CLI of export (core: model/export.py): a lakelm artifact as a Hugging Face GPT-2 folder, or an ONNX graph.

    python -m jobs.export --model lake/_artifacts/gpt-v1 --format hf --output exports/gpt-v1-hf \\
        [--expect-model-hash HASH]
    python -m jobs.export --model lake/_artifacts/gpt-v1 --format onnx --output exports/gpt-v1-onnx

``--format hf`` writes the folder ``transformers.GPT2LMHeadModel.from_pretrained(DIR)`` and
``AutoTokenizer.from_pretrained(DIR)`` load (same logits, same token ids), which also loads back
through ``--model DIR`` in our own jobs. ``--format onnx`` writes ``model.onnx`` (idx -> logits, checked
in onnxruntime when it is installed) with the tokenizer. Both name the source artifact's hash in
``lakelm_export.json``. No Spark: this runs on one machine.

Exit codes: 0 exported; 2 a usage error, before anything is written (a damaged or missing artifact,
a hash that is not ``--expect-model-hash``, an output that exists and is not an empty folder, a
missing optional package); 1 any other failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from jobs.common import cli

log = logging.getLogger("jobs.export")


def build_parser() -> argparse.ArgumentParser:
    """Flags: the artifact, the format, the output folder, the expected hash and torch threads."""
    from model.export import FORMATS

    p = cli.job_parser(__doc__.splitlines()[0], lake=False, config=False, spark=False)
    p.add_argument("--model", required=True, help="a lakelm artifact folder (written by jobs/train.py)")
    p.add_argument("--format", required=True, choices=FORMATS, help="hf: Hugging Face GPT-2 folder; onnx: model.onnx")
    p.add_argument("--output", required=True, help="folder to create (it may exist only as an empty folder)")
    p.add_argument(
        "--expect-model-hash",
        metavar="HASH",
        help="refuse (exit 2) unless the artifact's hash (sha256 of manifest.json) is HASH (default: any intact one)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    return p


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    args = build_parser().parse_args(argv)
    import torch
    from safetensors import SafetensorError

    from model.artifact import ArtifactIntegrityError, load_artifact
    from model.export import ExportError, check_output_dir, export_artifact
    from model.loading import is_artifact

    try:  # everything about the input and the output folder is checked before anything is written
        if args.threads < 1:
            raise ExportError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        check_output_dir(args.output)
        if not os.path.isdir(args.model):
            raise ExportError(f"artifact folder {args.model} does not exist")
        if not is_artifact(args.model):
            raise ExportError(
                f"{args.model} is not a lakelm artifact (no manifest.json); give a folder written by "
                "jobs/train.py (a Hugging Face folder needs no export: --model takes it as it is)"
            )
        art = load_artifact(args.model, expected_hash=args.expect_model_hash)
    # beyond the manifest check: a manifest rewritten over broken files fails to parse or to load
    except (ArtifactIntegrityError, ExportError, OSError, ValueError, RuntimeError, SafetensorError) as exc:
        log.error("cannot export: %s", exc)
        return cli.EXIT_USAGE
    log.info("exporting artifact %s (hash %s) as %s to %s", args.model, art.hash, args.format, args.output)
    try:
        out = export_artifact(art, args.output, args.format)
    except ExportError as exc:
        log.error("cannot export: %s", exc)
        return cli.EXIT_USAGE
    except ImportError as exc:
        log.error(
            "cannot export as %s: %s; install the optional packages (pip install onnx onnxscript onnxruntime)",
            args.format,
            exc,
        )
        return cli.EXIT_USAGE
    except Exception:
        log.exception("export failed")
        return cli.EXIT_FAILED
    print(out, flush=True)
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
