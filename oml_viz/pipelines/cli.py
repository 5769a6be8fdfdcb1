"""The ``oml-viz`` command: ``validate``, ``train`` and ``demo``.

    oml-viz validate configs/validate.yaml     # metrics of a model, logged to the config's tracker
    oml-viz train configs/train.yaml           # train, validating every valid_period epochs
    oml-viz demo [--work-dir demo_output] [--quick] [--force-retrain]

A config problem (unknown key, wrong type, missing file, bad dataframe row, a tracker package
that is not installed) prints one ``error:`` message naming the key, path or row, and exits with
status 2; nothing is trained. Only oml_viz's own input errors (:class:`oml_viz.errors.InputError`)
are shown that way: any other exception is a bug and shows its traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from oml_viz.errors import InputError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oml-viz", description="Validate and train retrieval models from YAML "
                                     "configs, and run the oml_viz demo.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{validate,train,demo}")
    for name, text in (("validate", "compute and log retrieval metrics of a model on the validation split"),
                       ("train", "train a model with a triplet loss, validating every valid_period epochs")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("config", help="the YAML config file")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p = sub.add_parser("demo", help="make the demo data, train (or reuse) the demo models, write demo_output/",
                       description="Make the demo dataset, train a small ViT and CNN on the CPU (or reuse "
                       "checkpoints trained earlier), validate, log to TensorBoard and write the demo outputs.")
    p.add_argument("--work-dir", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--quick", action="store_true", help="a reduced dataset and tiny models (for tests)")
    p.add_argument("--force-retrain", action="store_true", help="train again even when checkpoints exist")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``oml-viz``; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from oml_viz.pipelines.run_demo import run_demo

            run_demo(args.work_dir, quick=args.quick, force_retrain=args.force_retrain,
                     progress=not args.no_progress)
            return 0
        from oml_viz.pipelines.config import load_config
        from oml_viz.pipelines.steps import format_table

        cfg = load_config(args.config, args.command)
        if args.no_progress:
            cfg.progress = False
        if args.command == "validate":
            from oml_viz.pipelines.validate import validate_pipeline

            run = validate_pipeline(cfg)
        else:
            from oml_viz.pipelines.train import train_pipeline

            run = train_pipeline(cfg)
        print(format_table(run.metrics))
        if getattr(run, "comparison_table", None) is not None:
            print("\ncompared with the baseline (95% paired-bootstrap interval, sign-flip p-value):")
            print(format_table(run.comparison_table.T))
        if getattr(run, "checkpoint", None) is not None:
            print(f"checkpoint: {run.checkpoint}")
        return 0
    except InputError as e:
        # our validation errors name the key, file or row; a traceback would only hide it.
        # Anything else is a bug (ours or a library's) and keeps its traceback.
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
