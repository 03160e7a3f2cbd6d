"""Epochs per CPU-minute of a training recipe in each execution mode, in one run.

Issue 13 asks the recipes to use the fastest stable mode and to report the epochs per
CPU-minute before and after. This trains the CamVid recipe (``examples/train_camvid.py``, by
default the VGG16 FCN-8s at the paper's widths) for a few short epochs in each mode, one
process at a time pinned to one core, and reads the CPU seconds of each epoch from the run's
``history.json`` (the first epoch, which traces the step, is left out):

- ``float32`` / ``bfloat16`` (``--precision``), each with fc6 as one matrix multiply
  (``--conv_matmul``, the default on CPUs) and without (``--noconv_matmul``).

Usage:
    python benchmarks/recipe_speed.py --data_dir=../shared/data/camvid [--backbone vgg16]
        [--steps 6] [--epochs 3] [--core 0] [--runs_dir ../runs/recipe_speed]

Writes benchmarks/results/recipe_speed.md and .json.
"""

import os
import statistics
import sys

from _outputs import cpu_line
from camvid_ablation import ROOT, run

from keras_fcn import io

MODES = {"float32, fc6 as matmul": ["--precision=float32", "--conv_matmul"],
         "float32, fc6 as convolution": ["--precision=float32", "--noconv_matmul"],
         "bfloat16, fc6 as matmul": ["--precision=bfloat16", "--conv_matmul"],
         "bfloat16, fc6 as convolution": ["--precision=bfloat16", "--noconv_matmul"]}


def epoch_seconds(args, name, flags):
    """Median CPU seconds of the epochs after the first, of one mode (cached in runs_dir)."""
    run_dir = os.path.join(args.runs_dir, name.replace(", ", "_").replace(" ", "_"))
    history_path = os.path.join(run_dir, "history.json")
    if not os.path.exists(history_path):
        os.makedirs(args.runs_dir, exist_ok=True)
        run([sys.executable, "examples/train_camvid.py", f"--data_dir={args.data_dir}",
             f"--backbone={args.backbone}", f"--epochs={args.epochs}",
             f"--steps_per_epoch={args.steps}", "--validation_steps=1", "--export=false",
             "--verbose=2", f"--output_dir={run_dir}", "--overwrite", *flags],
            run_dir + ".log", args.core)
    history = io.read_json(history_path, "Training history")
    return statistics.median(e["cpu_seconds"] for e in history[1:])


def main(argv=None):
    import _outputs
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=_outputs.CAMVID_DIR)
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--steps", type=_outputs.positive_int, default=6,
                        help="Train steps per epoch.")
    parser.add_argument("--epochs", type=int, default=3, help="2 or more (the first epoch, "
                        "with its tracing, is not timed).")
    parser.add_argument("--core", type=int, default=0)
    _outputs.add_runs_dir(parser, os.path.join(ROOT, "..", "runs", "recipe_speed"))
    parser.add_argument("--note", default="", help="Conditions of the run, for the report.")
    _outputs.add_output_dir(parser)
    parser.add_argument("--overwrite", action="store_true", help="Replace existing results.")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be 2 or more (epoch 1 is not timed). Received: {args.epochs}")
    if not _outputs.camvid_found(args.data_dir, "--data_dir", needs=("train.txt", "val.txt")):
        return
    _outputs.refuse_to_overwrite(os.path.join(args.output_dir, "recipe_speed"), args.overwrite)

    cpu = cpu_line()
    print(f"CPU: {cpu}", flush=True)
    seconds = {name: epoch_seconds(args, name, flags) for name, flags in MODES.items()}
    slowest = max(seconds.values())
    lines = ["# Epochs per CPU-minute of the CamVid recipe", "",
             f"`benchmarks/recipe_speed.py`: `examples/train_camvid.py --backbone={args.backbone}` "
             f"(180x240 crops, batch 4, Adam), {args.steps} steps + 1 validation batch an "
             f"epoch, median CPU seconds of epochs 2-{args.epochs}, one process at a time "
             f"pinned to core {args.core}. CPU: {cpu}. {args.note}", "",
             "| mode | CPU-s per epoch | epochs per CPU-minute | x slowest |", "|---|---|---|---|"]
    for name, value in seconds.items():
        lines.append(f"| {name} | {value:.1f} | {60 / value:.2f} | {slowest / value:.2f} |")
    markdown = "\n".join(lines)
    print(markdown)
    _outputs.save_report(args.output_dir, "recipe_speed", markdown,
                         {"cpu": cpu, "backbone": args.backbone, "steps": args.steps,
                          "epoch_cpu_seconds": seconds})


if __name__ == "__main__":
    main()
