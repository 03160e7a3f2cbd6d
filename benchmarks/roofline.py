"""How close each forward mode is to this CPU's matrix-multiply rate, and what the targets need.

The speed targets of issue 13 are ratios to PyTorch (float32 forward <= 0.85x of PyTorch's best
float32 mode, bf16 forward <= 0.5x of PyTorch bf16 autocast). When both frameworks already run
near the machine's arithmetic rate, a ratio target can ask for more arithmetic per second than
the machine has. This script measures that, in one run:

1. the FLOPs of the FCN-8s forward pass (VGG16 and MobileNetV2 trunks, 500x500 and 360x480),
   counted layer by layer from the Keras model (2 x multiply-adds of every convolution,
   depthwise convolution and transposed convolution);
2. this CPU's matrix-multiply rate with ``--threads`` threads: TensorFlow ``tf.linalg.matmul``
   of 2048 x 2048 matrices in float32 and bfloat16 (and PyTorch's ``torch.mm``, when installed),
   median of ``--repeats``;
3. each convolution of the VGG16 FCN-8s timed alone with XLA, with oneDNN, on keras_fcn's
   path (oneDNN, fc6 as one matmul) and on that path in bfloat16 (``--layers``): where the
   time goes, and which layers run far from the matmul rate;
4. from benchmarks/results/inference.json (forward medians measured on this kind of CPU: the
   script says when its CPU differs), each mode's GFLOP/s and its share of the matmul rate, and
   the GFLOP/s each target would need.

Usage:
    python benchmarks/roofline.py [--threads 2] [--repeats 5] [--overwrite]

Writes benchmarks/results/roofline.md and .json (about two minutes on 2 cores).
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _outputs  # noqa: E402
from _outputs import (add_output_dir, median_seconds, refuse_to_overwrite,  # noqa: E402
                      save_report)

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = ((500, 500), (360, 480))
MATMUL_SIZE = 2048


def conv_flops(layer):
    """2 x multiply-adds of one convolution-like Keras layer (0 for other layers)."""
    import keras

    kernel = getattr(layer, "kernel_size", None)
    if kernel is None or not isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose,
                                                keras.layers.DepthwiseConv2D)):
        return 0
    taps = int(kernel[0]) * int(kernel[1])
    in_channels = int(layer.input.shape[-1])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        height, width, channels = layer.output.shape[1:]
        return 2 * height * width * taps * channels
    if isinstance(layer, keras.layers.Conv2DTranspose):  # every input pixel meets the kernel
        height, width = layer.input.shape[1:3]
        return 2 * height * width * taps * in_channels * int(layer.filters)
    height, width = layer.output.shape[1:3]
    return 2 * height * width * taps * in_channels // int(layer.groups) * int(layer.filters)


def model_flops(model):
    """FLOPs of one forward pass of a Keras model built for a fixed input size."""
    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested trunk (the MobileNetV2 application)
            total += model_flops(layer)
        else:
            total += conv_flops(layer)
    return total


def fcn_flops(trunk, size, num_classes=21):
    import keras

    from keras_fcn.models import build_fcn8s

    keras.backend.clear_session()
    model = build_fcn8s(num_classes=num_classes, input_shape=(*size, 3), backbone=trunk,
                        weights=None)
    return model_flops(model)


def tf_matmul_rates(threads, repeats):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rates = {}
    for dtype in ("float32", "bfloat16"):
        a = tf.random.stateless_normal([MATMUL_SIZE] * 2, [0, 1], dtype=dtype)
        b = tf.random.stateless_normal([MATMUL_SIZE] * 2, [0, 2], dtype=dtype)
        step = tf.function(lambda: tf.linalg.matmul(a, b)[0, 0])
        flops = 2 * MATMUL_SIZE ** 3
        rates[f"tf_{dtype}"] = flops / median_seconds(lambda: step().numpy(), repeats) / 1e9
    return rates


def torch_matmul_rates(threads, repeats):
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(threads)
    rates = {}
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(MATMUL_SIZE, MATMUL_SIZE).to(getattr(torch, dtype))
        b = torch.randn(MATMUL_SIZE, MATMUL_SIZE).to(getattr(torch, dtype))
        rates[f"torch_{dtype}"] = 2 * MATMUL_SIZE ** 3 / median_seconds(lambda: torch.mm(a, b),
                                                               repeats) / 1e9
    return rates


LAYER_MODES = ("xla", "onednn", "default", "bf16")


def layer_table(size, repeats, rates):
    """Each convolution of the VGG16 FCN-8s at ``size`` timed alone (batch 1) beside its
    FLOPs, in four modes: ``xla`` (float32, ``jit_compile=True``), ``onednn`` (float32
    ``tf.function``, TF's default kernels), ``default`` (keras_fcn's path: ``onednn`` with the
    large-kernel convolutions as one matmul, ``runtime.convolutions_as_matmul``) and ``bf16``
    (``default`` on the bf16 inference copy, ``runtime.with_precision(inference=True)``).
    Which layers run far from the matmul ``rates``; the whole forward pass is timed alike."""
    import keras
    import tensorflow as tf

    from keras_fcn import runtime
    from keras_fcn.models import build_fcn8s

    keras.backend.clear_session()
    model = build_fcn8s(num_classes=21, input_shape=(*size, 3), weights=None)
    bf16 = runtime.with_precision(model, "bfloat16", inference=True)
    nets = {"xla": model, "onednn": model, "default": model, "bf16": bf16}

    def seconds_of(mode, name=None):
        net = nets[mode]
        fn = net if name is None else net.get_layer(name)
        shape = [1, *size, 3] if name is None else [1, *fn.input.shape[1:]]
        x = tf.cast(tf.random.stateless_normal(shape, [0, 3]), fn.compute_dtype
                    if name is not None else "float32")
        with runtime.convolutions_as_matmul(net, mode in ("default", "bf16")):
            step = tf.function(fn, jit_compile=mode == "xla")
            step(x)  # traced in the block
        return median_seconds(lambda: step(x).numpy().flat[0], repeats)

    def share(gflop, seconds, mode):
        return f"{gflop / seconds / rates['bfloat16' if mode == 'bf16' else 'float32']:.0%}"

    header = " | ".join(f"{mode} ms | {mode} %" for mode in LAYER_MODES)
    lines = [f"Each convolution of the VGG16 FCN-8s at {size[0]}x{size[1]} timed alone (batch 1, "
             f"median of {repeats}); % of the matmul rate of its precision (float32 "
             f"{rates['float32']:,.0f}, bfloat16 {rates['bfloat16']:,.0f} GFLOP/s). `default` "
             "is keras_fcn's float32 path (oneDNN, fc6 as one matmul), `bf16` the same on the "
             "bf16 inference copy (head float32):", "",
             f"| layer | output | GFLOP | {header} |", "|---" * (3 + 2 * len(LAYER_MODES)) + "|"]
    rows, totals = [], dict.fromkeys(LAYER_MODES, 0.0)
    for layer in model.layers:
        gflop = conv_flops(layer) / 1e9
        if not gflop:
            continue
        seconds = {mode: seconds_of(mode, layer.name) for mode in LAYER_MODES}
        rows.append({"layer": layer.name, "output": list(layer.output.shape[1:]),
                     "gflop": gflop, **seconds})
        for mode in LAYER_MODES:
            totals[mode] += seconds[mode]
        cells = " | ".join(f"{1000 * seconds[m]:,.0f} | {share(gflop, seconds[m], m)}"
                           for m in LAYER_MODES)
        lines.append(f"| {layer.name} | {'x'.join(map(str, layer.output.shape[1:]))} | "
                     f"{gflop:.1f} | {cells} |")
    whole = {mode: seconds_of(mode) for mode in LAYER_MODES}
    gflop = model_flops(model) / 1e9
    lines += [f"| sum of the convolutions | | {sum(r['gflop'] for r in rows):.1f} | "
              + " | ".join(f"{1000 * totals[m]:,.0f} | " for m in LAYER_MODES) + " |",
              f"| whole forward pass | | {gflop:.1f} | "
              + " | ".join(f"{1000 * whole[m]:,.0f} | {share(gflop, whole[m], m)}"
                           for m in LAYER_MODES) + " |"]
    return lines, {"rows": rows, "whole": whole}


def forward_medians(path):
    """{(model, size): {mode: median seconds}} and the CPU of benchmarks/results/inference.json."""
    from keras_fcn import io

    if not os.path.exists(path):
        return {}, None
    data = io.read_json(path, "Inference results")
    medians = {(r["model"], r["size"]): {m: statistics.median(s) for m, s in r["seconds"].items()}
               for r in data["results"]}
    return medians, data.get("cpu")


def machine_rate(rates, dtype):
    """The machine's matmul rate for ``dtype``: the best framework's (PyTorch's float32
    ``torch.mm`` goes through MKL, which is slow on AMD CPUs; its convolutions use oneDNN)."""
    return max(rate for name, rate in rates.items() if name.endswith(dtype))


def report(cpu_line, same_cpu, rates, flops, medians, args):
    lines = ["# Roofline: forward modes against this CPU's matrix-multiply rate", "",
             f"Written by `benchmarks/roofline.py` on {time.strftime('%Y-%m-%d %H:%M')}. "
             f"CPU: {cpu_line}, {args.threads} threads. Matmul: {MATMUL_SIZE}x{MATMUL_SIZE}, "
             f"median of {args.repeats}.", "",
             "| matmul | GFLOP/s |", "|---|---|"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in rates.items()]
    lines += ["", "Forward times: benchmarks/results/inference.json"
              + ("" if same_cpu else " (**measured on another CPU**: the ratios below mix "
                 "machines)") + ".", "",
              "| model | size | GFLOP | mode | ms | GFLOP/s | of the matmul rate |",
              "|---|---|---|---|---|---|---|"]
    notes = []
    for (trunk, size), gflop in flops.items():
        times = medians.get((trunk, size), {})
        for mode, seconds in sorted(times.items(), key=lambda item: item[1]):
            dtype = "bfloat16" if "bf16" in mode or mode == "auto" else "float32"
            rate = machine_rate(rates, dtype)
            achieved = gflop / seconds
            lines.append(f"| {trunk} | {size} | {gflop:.0f} | {mode} | {1000 * seconds:,.0f} | "
                         f"{achieved:,.0f} | {achieved / rate:.0%} |")
        fp32 = [times[m] for m in ("torch_fp32", "torch_channels_last", "torch_compile")
                if m in times]
        if fp32:
            need = gflop / (0.85 * min(fp32))
            notes.append(f"- {trunk} {size}: float32 target (0.85x of PyTorch's best, "
                         f"{850 * min(fp32):,.0f} ms) needs {need:,.0f} GFLOP/s = "
                         f"{need / machine_rate(rates, 'float32'):.0%} of the float32 matmul rate.")
        if "torch_bf16" in times:
            need = gflop / (0.5 * times["torch_bf16"])
            notes.append(f"- {trunk} {size}: bf16 target (0.5x of PyTorch bf16, "
                         f"{500 * times['torch_bf16']:,.0f} ms) needs {need:,.0f} GFLOP/s = "
                         f"{need / machine_rate(rates, 'bfloat16'):.0%} of the bfloat16 "
                         "matmul rate.")
    lines += ["", "What the targets need (above 100%: faster than this CPU multiplies matrices, "
              "reachable only with fewer FLOPs, e.g. Winograd or int8):", ""] + notes
    return "\n".join(lines)


def main(argv=None):
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=_outputs.positive_int, default=2)
    parser.add_argument("--repeats", type=_outputs.positive_int, default=5)
    parser.add_argument("--layers", type=lambda text: text and _outputs.size_type(text),
                        default=(500, 500),
                        help="Size of the per-layer table of the VGG16 FCN-8s ('' to skip).")
    parser.add_argument("--inference", default=os.path.join(HERE, "results", "inference.json"))
    add_output_dir(parser)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    output = os.path.join(args.output_dir, "roofline")
    refuse_to_overwrite(output, args.overwrite)
    from keras_fcn import runtime

    info = runtime.cpu_info()
    cpu_line = runtime.describe(info)
    print(f"CPU: {cpu_line}", flush=True)
    rates = {**tf_matmul_rates(args.threads, args.repeats),
             **torch_matmul_rates(args.threads, args.repeats)}
    print({name: round(rate) for name, rate in rates.items()}, flush=True)
    flops = {(trunk, f"{h}x{w}"): fcn_flops(trunk, (h, w)) / 1e9
             for trunk in ("vgg16", "mobilenet_v2") for h, w in SIZES}
    medians, measured_on = forward_medians(args.inference)
    same_cpu = measured_on is not None and (measured_on["model"], list(measured_on["isa"])) == (
        info["model"], list(info["isa"]))
    markdown = report(cpu_line, same_cpu, rates, flops, medians, args)
    layers = None
    if args.layers:
        table, layers = layer_table(args.layers, args.repeats, {
            dtype: machine_rate(rates, dtype) for dtype in ("float32", "bfloat16")})
        markdown += "\n\n" + "\n".join(table)
    print(markdown)
    save_report(args.output_dir, "roofline", markdown,
                {"cpu": info, "threads": args.threads, "matmul_gflops": rates,
                 "forward_gflop": {f"{t} {s}": g for (t, s), g in flops.items()},
                 "inference_cpu": measured_on, "same_cpu": same_cpu, "layers": layers})
    return 0


if __name__ == "__main__":
    sys.exit(main())
