"""FCN-8s's transposed convolutions on the JAX backend, as Keras writes them and in two other forms.

Keras' ``Conv2DTranspose`` on JAX is a convolution with input dilation, a form JAX and XLA are
known to run slowly (jax-ml/jax#23783, #31662). This script times, at the shapes of an FCN-8s
train step, each upsampling layer's forward pass and input gradient (the frozen layers need no
kernel gradient) in three forms, checked against Keras' output:

- ``keras``: ``keras.layers.Conv2DTranspose`` (the library's layer);
- ``polyphase``: one stride-1 convolution to the output's stride x stride phases, interleaved
  (any kernel; ``benchmarks/gpu.py``'s variant (h));
- ``separable``: two interpolation matrices per channel (the frozen bilinear kernel only;
  variant (g)).

With ``--whole_step`` it also times the whole train step (value and gradient of the loss,
full-width VGG16 FCN-8s) with Keras' layer and with the polyphase form, alternating, and
compares their losses and gradients: whether the layers' share is worth a change. Random
weights, 21 classes, float32.

Usage:
    python benchmarks/jax_upsampling.py [--batch 8] [--size 360x480] [--repeats 5]
        [--whole_step] [--step_batch 1] [--widths 8,8,16,16,16 --fc_units 16]
        [--name jax_upsampling] [--overwrite]

Writes benchmarks/results/<name>.md and .json; prints the CPU model and its ISA flags beside
them (on a GPU machine the device too).
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

FORMS = ("keras", "polyphase", "separable")
NUM_CLASSES = 21


def parse_args(argv=None):
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=_outputs.positive_int, default=8,
                        help="batch of the per-layer timings")
    parser.add_argument("--size", type=_outputs.size_type, default=(360, 480),
                        help="HxW of the training images")
    parser.add_argument("--repeats", type=_outputs.positive_int, default=5)
    parser.add_argument("--whole_step", action="store_true",
                        help="also time the whole train step with each form (slow on a CPU)")
    parser.add_argument("--step_batch", type=_outputs.positive_int, default=1,
                        help="batch of the whole train step")
    parser.add_argument("--widths", type=_outputs.widths_type, default=None,
                        help="narrow VGG16 block widths, e.g. 8,8,16,16,16 (default: the "
                        "paper's; the upsampling layers' shapes do not depend on them)")
    parser.add_argument("--fc_units", type=_outputs.positive_int, default=None,
                        help="fc6/fc7 width (default 4096)")
    _outputs.add_report_flags(parser, "jax_upsampling")
    return parser.parse_args(argv)


def forms(jax):
    """name -> f(layer, x): the layer's output in that form."""
    import gpu  # the forms of gpu.py's variants (g) and (h)

    return {
        "keras": lambda layer, x: layer(x),
        "polyphase": lambda layer, x: gpu.polyphase_upsampling(jax, x, layer.kernel.value,
                                                               layer.strides),
        "separable": lambda layer, x: gpu.separable_upsampling(
            jax.numpy, x, layer.kernel_size[0], layer.strides[0]),
    }


def median_ms(call, repeats):
    import jax

    jax.block_until_ready(call())  # compiled here
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def upsampling_inputs(model, batch, size):
    """(layer, input shape at ``batch``) of each transposed convolution, from one forward."""
    import keras
    import numpy as np

    ups = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    probe = keras.Model(model.inputs, [layer.input for layer in ups])
    shapes = probe.predict(np.zeros((1, *size, 3), "float32"), verbose=0)
    return [(layer, (batch, *shape.shape[1:])) for layer, shape in zip(ups, shapes)]


def time_layers(args, model):
    import jax
    import numpy as np

    rows = []
    rng = np.random.default_rng(0)
    for layer, shape in upsampling_inputs(model, args.batch, args.size):
        x = jax.numpy.asarray(rng.standard_normal(shape).astype("float32"))
        reference = None
        for name, form in forms(jax).items():
            forward = jax.jit(lambda x, form=form: form(layer, x))
            out = np.asarray(forward(x))
            if reference is None:
                reference = out
                g = jax.numpy.asarray(rng.standard_normal(out.shape).astype("float32"))
            grad = jax.jit(lambda x, g, form=form: jax.vjp(lambda v: form(layer, v), x)[1](g)[0])
            row = {"layer": layer.name, "input": list(shape), "kernel": layer.kernel_size[0],
                   "stride": layer.strides[0], "form": name,
                   "rel_diff": float(np.abs(out - reference).max() / np.abs(reference).max()),
                   "forward_ms": median_ms(lambda: forward(x), args.repeats),
                   "input_grad_ms": median_ms(lambda: grad(x, g), args.repeats)}
            rows.append(row)
            print(f"  {row['layer']:14s} {name:10s} forward {row['forward_ms']:9.2f} ms, "
                  f"input gradient {row['input_grad_ms']:9.2f} ms (vs keras "
                  f"{row['rel_diff']:.1e})", flush=True)
    return rows


def time_whole_step(args, model):
    """Keras' layer against the polyphase form in the whole step, alternating."""
    import jax
    import keras
    import numpy as np

    from keras_fcn.losses import SparseCategoricalCrossentropyIgnore

    rng = np.random.default_rng(0)
    trainable = [np.float32(0.01) * rng.standard_normal(v.shape).astype("float32")
                 if v.path.startswith("score") else v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    x = rng.uniform(0, 255, (args.step_batch, *args.size, 3)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, (args.step_batch, *args.size)).astype("int32")
    loss_fn = SparseCategoricalCrossentropyIgnore(ignore_label=255)
    polyphase = forms(jax)["polyphase"]
    original = keras.layers.Conv2DTranspose.call
    steps, outs = {}, {}
    for name in ("keras", "polyphase"):
        if name == "polyphase":
            keras.layers.Conv2DTranspose.call = lambda self, v: polyphase(self, v)
        try:
            def loss_of(trainable, x, y):
                logits, _ = model.stateless_call(trainable, non_trainable, x, training=False)
                return loss_fn(y, logits)

            steps[name] = jax.jit(jax.value_and_grad(loss_of))  # traced here, under the patch
            outs[name] = jax.block_until_ready(steps[name](trainable, x, y))
        finally:
            keras.layers.Conv2DTranspose.call = original
    (loss_a, grads_a), (loss_b, grads_b) = outs["keras"], outs["polyphase"]
    scale = max(float(np.abs(np.asarray(g)).max()) for g in grads_a) or 1.0
    diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
               for a, b in zip(grads_a, grads_b)) / scale
    times = {name: [] for name in steps}
    for repeat in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(step(trainable, x, y))
            times[name].append(time.perf_counter() - start)
        print(f"  whole step {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{name} {times[name][-1]:.3f} s" for name in times), flush=True)
    return {"median_s": {name: statistics.median(t) for name, t in times.items()},
            "seconds": times, "loss": {"keras": float(loss_a), "polyphase": float(loss_b)},
            "grad_rel_diff": diff}


def main(argv=None):
    args = parse_args(argv)
    base = os.path.join(args.output_dir, args.name)
    refuse_to_overwrite(base, args.overwrite)
    import jax
    import keras

    from keras_fcn.models import build_fcn

    cpu = cpu_line()
    device = jax.devices()[0].device_kind
    print(f"CPU: {cpu}; jax {jax.__version__} on {jax.default_backend()} ({device})", flush=True)
    keras.utils.set_random_seed(0)
    model = build_fcn("8s", num_classes=NUM_CLASSES, weights=None, widths=args.widths,
                      fc_units=args.fc_units)
    rows = time_layers(args, model)
    whole = time_whole_step(args, model) if args.whole_step else None
    h, w = args.size
    lines = [
        f"# FCN-8s's transposed convolutions on JAX, three forms ({datetime.date.today()})", "",
        f"CPU: {cpu}. jax {jax.__version__} on {jax.default_backend()} ({device}), keras "
        f"{keras.__version__}.", "",
        f"Inputs of the upsampling layers of a {h}x{w} train step at batch {args.batch}, "
        f"{NUM_CLASSES} classes, float32; medians of {args.repeats} jitted calls.", "",
        "| layer | input | kernel / stride | form | forward ms | input gradient ms | "
        "x keras (both) | max diff / max |", "|---|---|---|---|---|---|---|---|"]
    keras_total = {r["layer"]: r["forward_ms"] + r["input_grad_ms"] for r in rows
                   if r["form"] == "keras"}
    for r in rows:
        total = r["forward_ms"] + r["input_grad_ms"]
        lines.append(f"| {r['layer']} | {'x'.join(map(str, r['input']))} | {r['kernel']} / "
                     f"{r['stride']} | {r['form']} | {r['forward_ms']:.2f} | "
                     f"{r['input_grad_ms']:.2f} | {keras_total[r['layer']] / total:.2f}x | "
                     f"{r['rel_diff']:.1e} |")
    if whole:
        m = whole["median_s"]
        trunk = (f"VGG16 widths {','.join(map(str, args.widths))}" if args.widths
                 else "full-width VGG16")
        lines += ["", f"Whole train step (value and gradient of the loss, {trunk}, fc "
                  f"{args.fc_units or 4096}, batch {args.step_batch}): Keras' layer {m['keras']:.3f} s, polyphase "
                  f"{m['polyphase']:.3f} s: **{m['keras'] / m['polyphase']:.2f}x**; gradients "
                  f"equal to {whole['grad_rel_diff']:.1e} of their scale."]
    print("\n".join(lines), flush=True)
    save_report(args.output_dir, args.name, "\n".join(lines),
                {"cpu": cpu, "jax": jax.__version__, "device": device,
                 "keras": keras.__version__, "batch": args.batch, "size": list(args.size),
                 "layers": rows, "whole_step": whole})
    return 0


if __name__ == "__main__":
    sys.exit(main())
