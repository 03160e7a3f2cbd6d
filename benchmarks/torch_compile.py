"""The Keras-torch train step of an FCN-8s, eager against ``torch.compile``, in one run.

On the PyTorch backend Keras runs ``fit``/``train_on_batch`` eagerly unless the model is
compiled with ``jit_compile=True``, which Keras' torch trainer turns into
``torch.compile`` of its step. Two models with the same random weights, one of each, are
trained side by side on the same batch with the library's loss and SGD momentum: the losses
of their first steps are compared, then their steps are timed alternating (A B A B ...) so
that background load hits both alike. dynamo's settings: the recompile limit raised to 64
(Keras' layer functions are traced once per layer: the default 8 sends the rest back to
eager) and static shapes (with dynamic shapes guessed after a recompile, a shape check of a
later layer fails).

Usage:
    python benchmarks/torch_compile.py [--widths 16,32,64,128,128] [--fc_units 256]
        [--batch 2] [--size 180x240] [--warmup 4] [--repeats 5] [--name torch_compile]
        [--overwrite] [--output_dir DIR]

``--widths ""`` (with ``--fc_units 0``) is the paper's full-width VGG16. Writes
benchmarks/results/<name>.md and .json; prints the CPU model and its ISA flags beside them.
"""

import datetime
import os
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _outputs  # noqa: E402
from _outputs import cpu_line, refuse_to_overwrite, save_report  # noqa: E402

MODES = ("eager", "compiled")
RECOMPILE_LIMIT = 64


def parse_args(argv=None, name="torch_compile", doc=__doc__, warmup=4):
    """The flags of this script, also benchmarks/torch_layout.py's (its ``name``, ``doc``
    and ``warmup`` default)."""
    parser = _outputs.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--widths", default="16,32,64,128,128",
                        help="VGG16 block widths (empty: the paper's 64,128,256,512,512)")
    parser.add_argument("--fc_units", type=int, default=256, help="fc6/fc7 width (0: 4096)")
    parser.add_argument("--batch", type=_outputs.positive_int, default=2)
    parser.add_argument("--size", type=_outputs.size_type, default=(180, 240),
                        help="HxW of the training images")
    parser.add_argument("--warmup", type=_outputs.positive_int, default=warmup,
                        help="untimed steps per mode (dynamo recompiles over the first two)")
    parser.add_argument("--repeats", type=_outputs.positive_int, default=5,
                        help="timed steps per mode")
    _outputs.add_report_flags(parser, name)
    args = parser.parse_args(argv)
    text = args.widths
    try:
        args.widths = tuple(int(v) for v in text.split(",")) if text else None
    except ValueError:
        args.widths = ()
    if args.widths is not None and (len(args.widths) != 5 or min(args.widths) < 1):
        parser.error(f"--widths must be 5 comma-separated ints. Received: {text!r}")
    if args.fc_units < 0:
        parser.error(f"--fc_units must be >= 0. Received: {args.fc_units}")
    return args


def configure_dynamo():
    import torch._dynamo.config as config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, RECOMPILE_LIMIT)
    config.automatic_dynamic_shapes = False


def build(args, jit_compile):
    """The FCN-8s (random weights, seed 0), compiled with the library's loss."""
    import keras

    from keras_fcn.losses import SparseCategoricalCrossentropyIgnore
    from keras_fcn.models import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn("8s", num_classes=11, weights=None, widths=args.widths,
                      fc_units=args.fc_units or None)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-4, momentum=0.9),
                  loss=SparseCategoricalCrossentropyIgnore(ignore_label=255),
                  jit_compile=jit_compile)
    return model


def alternate(args, models, scope=None):
    """Trains ``models`` ({mode: model}) side by side on one random batch, a step of each in
    turn (A B A B ...) so that background load hits all alike, within ``scope(mode)`` if
    given; prints each step. Returns (timed seconds, every loss, first step's seconds), each
    {mode: ...}."""
    import contextlib

    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, *args.size, 3)).astype("float32")
    y = rng.integers(0, 11, (args.batch, *args.size)).astype("int32")
    y[rng.random(y.shape) < 0.05] = 255
    times, losses = {mode: [] for mode in models}, {mode: [] for mode in models}
    first, last = {}, {}
    for step in range(args.warmup + args.repeats):
        for mode, model in models.items():
            with scope(mode) if scope else contextlib.nullcontext():
                start = time.perf_counter()
                logs = model.train_on_batch(x, y)  # a list [loss, metrics...] with metrics
                losses[mode].append(float(logs[0] if isinstance(logs, list) else logs))
                last[mode] = time.perf_counter() - start
            first.setdefault(mode, last[mode])
            if step >= args.warmup:
                times[mode].append(last[mode])
        print(f"  step {step + 1}/{args.warmup + args.repeats}"
              f"{' (warm-up)' if step < args.warmup else ''}: " + ", ".join(
                  f"{mode} loss {losses[mode][-1]:.6f} in {last[mode]:.3f} s" for mode in models),
              flush=True)
    return times, losses, first


def main(argv=None):
    args = parse_args(argv)
    base = os.path.join(args.output_dir, args.name)
    refuse_to_overwrite(base, args.overwrite)
    import keras  # before anything imports TensorFlow (README: torch's triton and TF clash)
    import torch

    configure_dynamo()
    from torch._dynamo.utils import counters

    cpu = cpu_line()
    print(f"CPU: {cpu}; torch {torch.__version__}, keras {keras.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    models = {mode: build(args, mode == "compiled") for mode in MODES}
    times, losses, first = alternate(args, models)
    median = {mode: statistics.median(times[mode]) for mode in MODES}
    speedup = median["eager"] / median["compiled"]
    first_diff = abs(losses["eager"][0] - losses["compiled"][0]) / abs(losses["eager"][0])
    breaks = {}
    for reason, count in counters["graph_break"].items():
        key = reason.strip().splitlines()[0][:100]
        breaks[key] = breaks.get(key, 0) + count
    widths = ",".join(map(str, args.widths)) if args.widths else "64,128,256,512,512"
    setting = (f"VGG16 FCN-8s, widths {widths}, fc {args.fc_units or 4096}, batch "
               f"{args.batch}, {args.size[0]}x{args.size[1]}, 11 classes, float32, SGD momentum")
    lines = [
        f"# Keras-torch train step: eager against torch.compile ({datetime.date.today()})", "",
        f"CPU: {cpu}. torch {torch.__version__}, keras {keras.__version__}, "
        f"{torch.get_num_threads()} threads, Python {sys.version.split()[0]}.", "",
        f"{setting}; `train_on_batch`, medians of {args.repeats} steps after {args.warmup} "
        "warm-up steps, alternating. dynamo: recompile limit "
        f"{RECOMPILE_LIMIT}, static shapes.", "",
        "| mode | s/step | first step s |", "|---|---|---|",
        f"| eager (`jit_compile=False`, the torch backend's default) | {median['eager']:.3f} | "
        f"{first['eager']:.1f} |",
        f"| `jit_compile=True` (torch.compile of Keras' step) | {median['compiled']:.3f} | "
        f"{first['compiled']:.1f} |", "",
        f"torch.compile: **{speedup:.2f}x** the eager step's speed. First step's loss: "
        f"{losses['eager'][0]:.6f} eager, {losses['compiled'][0]:.6f} compiled (relative "
        f"difference {first_diff:.1e}). Graph breaks: {sum(breaks.values())} "
        f"({'; '.join(f'{k}: {v}' for k, v in sorted(breaks.items(), key=lambda i: -i[1]))})."]
    print("\n".join(lines), flush=True)
    save_report(args.output_dir, args.name, "\n".join(lines),
                {"cpu": cpu, "torch": torch.__version__, "keras": keras.__version__,
                 "threads": torch.get_num_threads(), "setting": setting, "seconds": times,
                 "median_s": median, "first_step_s": first, "speedup": speedup,
                 "losses": losses, "first_loss_rel_diff": first_diff, "graph_breaks": breaks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
