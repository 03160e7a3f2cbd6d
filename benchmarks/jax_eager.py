"""The JAX train step of an FCN-8s compiled by ``keras_fcn.training.compile_model``: its
default (XLA, Keras' jitted step) against ``jit_compile=False`` (the default until
2026-12-07, which on JAX runs the step op by op, uncompiled), in one run.

Two models with the same random weights are compiled with the library's loss, metrics and
SGD momentum, one each way, and trained side by side on the same batch; their steps are timed
alternating (A B A B ...) so that background load hits both alike, and the losses of their
first steps are compared. XLA compiles at -O2 here (no ``XLA_FLAGS`` of the tests).

Usage:
    python benchmarks/jax_eager.py [--widths 16,32,64,128,128] [--fc_units 256]
        [--batch 2] [--size 180x240] [--warmup 2] [--repeats 5] [--name jax_eager]
        [--overwrite] [--output_dir DIR]

``--widths ""`` (with ``--fc_units 0``) is the paper's full-width VGG16. Writes
benchmarks/results/<name>.md and .json; prints the CPU model and its ISA flags beside them.
"""

import datetime
import os
import statistics
import sys

from torch_compile import alternate, parse_args  # noqa: E402 (sets KERAS_BACKEND=torch)

os.environ["KERAS_BACKEND"] = "jax"
os.environ.pop("KERAS_FCN_JIT", None)  # compile_model's own default

from _outputs import cpu_line, refuse_to_overwrite, save_report  # noqa: E402

MODES = ("eager", "default")
LABELS = {"eager": "`jit_compile=False` (op by op, uncompiled)",
          "default": "`compile_model`'s default (XLA)"}


def build(args, mode):
    """The FCN-8s (random weights, seed 0), compiled by the library."""
    import keras

    from keras_fcn.models import build_fcn
    from keras_fcn.training import compile_model

    keras.utils.set_random_seed(0)
    model = build_fcn("8s", num_classes=11, weights=None, widths=args.widths,
                      fc_units=args.fc_units or None)
    compile_model(model, num_classes=11, ignore_label=255,
                  optimizer=keras.optimizers.SGD(learning_rate=1e-4, momentum=0.9),
                  jit_compile=False if mode == "eager" else None)
    return model


def main(argv=None):
    args = parse_args(argv, name="jax_eager", doc=__doc__, warmup=2)
    base = os.path.join(args.output_dir, args.name)
    refuse_to_overwrite(base, args.overwrite)
    import jax
    import keras

    cpu = cpu_line()
    print(f"CPU: {cpu}; jax {jax.__version__}, keras {keras.__version__}", flush=True)
    models = {mode: build(args, mode) for mode in MODES}
    compiled = {mode: bool(model.jit_compile) for mode, model in models.items()}
    times, losses, first = alternate(args, models)
    median = {mode: statistics.median(times[mode]) for mode in MODES}
    speedup = median["eager"] / median["default"]
    first_diff = abs(losses["eager"][0] - losses["default"][0]) / abs(losses["eager"][0])
    widths = ",".join(map(str, args.widths)) if args.widths else "64,128,256,512,512"
    setting = (f"VGG16 FCN-8s, widths {widths}, fc {args.fc_units or 4096}, batch "
               f"{args.batch}, {args.size[0]}x{args.size[1]}, 11 classes, float32, SGD momentum, "
               "the library's loss and four metrics")
    lines = [
        f"# JAX train step: compile_model's default against jit_compile=False "
        f"({datetime.date.today()})", "",
        f"CPU: {cpu}. jax {jax.__version__}, keras {keras.__version__}, "
        f"Python {sys.version.split()[0]}.", "",
        f"{setting}; `train_on_batch`, medians of {args.repeats} steps after {args.warmup} "
        "warm-up steps, alternating.", "",
        "| mode | model.jit_compile | s/step | first step s |", "|---|---|---|---|",
        *(f"| {LABELS[mode]} | {compiled[mode]} | {median[mode]:.3f} | {first[mode]:.1f} |"
          for mode in MODES), "",
        f"The default: **{speedup:.2f}x** the uncompiled step's speed. First step's loss: "
        f"{losses['eager'][0]:.6f} uncompiled, {losses['default'][0]:.6f} compiled (relative "
        f"difference {first_diff:.1e})."]
    print("\n".join(lines), flush=True)
    save_report(args.output_dir, args.name, "\n".join(lines),
                {"cpu": cpu, "jax": jax.__version__, "keras": keras.__version__,
                 "setting": setting, "jit_compile": compiled, "seconds": times,
                 "median_s": median, "first_step_s": first, "speedup": speedup,
                 "losses": losses, "first_loss_rel_diff": first_diff})
    return 0


if __name__ == "__main__":
    sys.exit(main())
