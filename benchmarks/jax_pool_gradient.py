"""The JAX train step of a VGG16 FCN-8s with one of Keras' layers against keras_fcn's, in one
run: the max pools (``--stage pooling``, the default) or the input padding (``padding``).

On the JAX backend `keras_fcn.layers.MaxPooling2D` writes the gradient of its 2x2 stride-2
pools as masks (each window's first maximum) where Keras' layer leaves XLA a
select-and-scatter; both give the same gradient bit for bit. `keras_fcn.layers.ZeroPadding2D`
(the trunk's 100-pixel ``pad1``) is an optimization barrier where Keras' layer lets XLA fold
the padding into conv1_1 (whose kernel gradient then compiles for a GPU to an image-sized
window, benchmarks/jax_gpu_aot.py); the same gradient up to float round-off (the order of
the kernel gradient's sums). This script checks that on the real model and times
``jax.jit(jax.value_and_grad(loss of model.stateless_call))`` with each, alternating
(A B A B ...) so that background load hits both alike. Random weights (score layers random
too, so that gradients reach the trunk), random labels, 11 classes.

Usage:
    python benchmarks/jax_pool_gradient.py [--stage pooling|padding]
        [--widths 16,32,64,128,128] [--fc_units 256] [--batch 4] [--size 180x240]
        [--repeats 5] [--name jax_pool_gradient] [--overwrite]

``--widths ""`` (with ``--fc_units 0``) is the paper's full-width VGG16. Writes
benchmarks/results/<name>.md and .json; prints the CPU model and its ISA flags beside them.
"""

import datetime
import os
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _outputs  # noqa: E402
from _outputs import cpu_line, refuse_to_overwrite, save_report  # noqa: E402

MODES = ("keras", "keras_fcn")
# stage: (keras_fcn layer, what Keras' gradient program has, what keras_fcn's has)
STAGES = {"pooling": ("MaxPooling2D", "select-and-scatter", "masks, first maximum"),
          "padding": ("ZeroPadding2D", "padding folded into conv1_1",
                      "padded input (optimization barrier)")}


def parse_args(argv=None):
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=sorted(STAGES), default="pooling",
                        help="which layer to compare (report name jax_<stage>_gradient, "
                             "jax_pool_gradient for pooling)")
    parser.add_argument("--widths", default="16,32,64,128,128",
                        help="VGG16 block widths (empty: the paper's 64,128,256,512,512)")
    parser.add_argument("--fc_units", type=int, default=256, help="fc6/fc7 width (0: 4096)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", default="180x240", help="HxW of the training images")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per mode")
    _outputs.add_report_flags(parser, None)
    args = parser.parse_args(argv)
    if args.name is None:
        args.name = "jax_pool_gradient" if args.stage == "pooling" else f"jax_{args.stage}_gradient"
    try:
        args.size = tuple(int(v) for v in args.size.lower().split("x"))
        args.widths = tuple(int(v) for v in args.widths.split(",")) if args.widths else None
        if len(args.size) != 2 or min(args.size) < 1 or min(args.batch, args.repeats) < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--size must be HxW, --widths ints, --batch and --repeats >= 1. "
                     f"Received: --size={args.size} --widths={args.widths} "
                     f"--batch={args.batch} --repeats={args.repeats}")
    return args


def build_step(args):
    """The value-and-gradient function of the model's loss (not jitted) and its inputs."""
    import jax
    import keras
    import numpy as np

    from keras_fcn.losses import SparseCategoricalCrossentropyIgnore
    from keras_fcn.models import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn("8s", num_classes=11, weights=None, widths=args.widths,
                      fc_units=args.fc_units or None)
    rng = np.random.default_rng(0)
    trainable = [np.float32(0.01) * rng.standard_normal(v.shape).astype("float32")
                 if v.path.startswith("score") else v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    x = rng.uniform(0, 255, (args.batch, *args.size, 3)).astype("float32")
    y = rng.integers(0, 11, (args.batch, *args.size)).astype("int32")
    loss_fn = SparseCategoricalCrossentropyIgnore(ignore_label=255)

    def loss_of(trainable, x, y):
        logits, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return loss_fn(y, logits)

    return jax.value_and_grad(loss_of), (trainable, x, y)


def run_mode(mode, grad, inputs, stage="pooling"):
    """A fresh jit of ``grad`` with ``mode``'s layer of ``stage`` (Keras' own call for
    "keras"), its output, first-call time, and what marks the stage's program: the
    select-and-scatter ops (pooling) or the convolutions padded by 100 (padding)."""
    import jax
    import keras

    from keras_fcn import layers

    name = STAGES[stage][0]
    owner = getattr(layers, name)
    original = owner.call
    if mode == "keras":
        owner.call = getattr(keras.layers, name).call
    try:
        # a new function each time: JAX reuses a function's trace, and would not see the patch
        step = jax.jit(lambda *arrays: grad(*arrays))
        start = time.perf_counter()
        out = jax.block_until_ready(step(*inputs))  # traced and compiled here
        first = time.perf_counter() - start
        if stage == "pooling":
            marks = step.lower(*inputs).as_text().count("select_and_scatter")
        else:
            marks = sum("convolution(" in line and "pad=100_100" in line
                        for line in step.lower(*inputs).compile().as_text().splitlines())
    finally:
        owner.call = original
    return step, out, first, marks


def main(argv=None):
    args = parse_args(argv)
    base = os.path.join(args.output_dir, args.name)
    refuse_to_overwrite(base, args.overwrite)
    import jax
    import numpy as np

    cpu = cpu_line()
    print(f"CPU: {cpu}; jax {jax.__version__} on {jax.default_backend()}", flush=True)
    grad, inputs = build_step(args)
    steps, outs, firsts, scatters = {}, {}, {}, {}
    for mode in MODES:
        steps[mode], outs[mode], firsts[mode], scatters[mode] = run_mode(
            mode, grad, inputs, args.stage)
    layer, keras_program, our_program = STAGES[args.stage]
    mark = "select-and-scatter ops" if args.stage == "pooling" else "convolutions padded by 100"
    print(f"{mark} in the programs: {scatters}", flush=True)
    (loss_a, grads_a), (loss_b, grads_b) = outs["keras"], outs["keras_fcn"]
    identical = bool(loss_a == loss_b) and all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(grads_a, grads_b))
    rel_diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                   / max(float(np.abs(np.asarray(a)).max()), 1e-30)
                   for a, b in zip(grads_a, grads_b))
    # the pools' gradient is the same bit for bit; the padding's up to the kernel gradient's
    # order of sums
    agree = identical if args.stage == "pooling" else rel_diff < 1e-4
    print(f"loss and gradients identical: {identical} (largest gradient difference "
          f"{rel_diff:.1e} of its scale)", flush=True)
    times = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES:
            start = time.perf_counter()
            jax.block_until_ready(steps[mode](*inputs))
            times[mode].append(time.perf_counter() - start)
        print(f"  step {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{mode} {times[mode][-1]:.3f} s" for mode in MODES), flush=True)
    median = {mode: statistics.median(times[mode]) for mode in MODES}
    speedup = median["keras"] / median["keras_fcn"]
    widths = ",".join(map(str, args.widths)) if args.widths else "64,128,256,512,512"
    setting = (f"VGG16 FCN-8s, widths {widths}, fc {args.fc_units or 4096}, batch "
               f"{args.batch}, {args.size[0]}x{args.size[1]}, 11 classes, float32")
    lines = [
        f"# JAX train step: Keras' {layer} against keras_fcn's ({datetime.date.today()})",
        "", f"CPU: {cpu}. jax {jax.__version__} ({jax.default_backend()}), "
        f"{sys.version.split()[0]}.", "", f"{setting}; value and gradient of the loss, "
        f"medians of {args.repeats} steps, alternating.", "",
        f"| layer | gradient program | {mark} | s/step | first call s |",
        "|---|---|---|---|---|",
        f"| keras.layers.{layer} | {keras_program} | {scatters['keras']} | "
        f"{median['keras']:.3f} | {firsts['keras']:.1f} |",
        f"| keras_fcn.layers.{layer} | {our_program} | {scatters['keras_fcn']} | "
        f"{median['keras_fcn']:.3f} | {firsts['keras_fcn']:.1f} |", "",
        f"keras_fcn's step: **{speedup:.2f}x** the speed of Keras' {layer}; loss and gradients "
        + ("bit-identical" if identical else
           f"{'equal to' if agree else 'DIFFERENT beyond'} {rel_diff:.1e} of their scale")
        + "."]
    print("\n".join(lines), flush=True)
    save_report(args.output_dir, args.name, "\n".join(lines),
                {"cpu": cpu, "jax": jax.__version__, "device": jax.default_backend(),
                 "setting": setting, "seconds": times, "median_s": median,
                 "first_call_s": firsts, "stage": args.stage, "program_marks": scatters,
                 "select_and_scatter_ops": scatters if args.stage == "pooling" else None,
                 "speedup": speedup, "identical": identical, "grad_rel_diff": rel_diff})
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
