"""Forward time of the FCN-8s in every mode, side by side in one run: Keras, PyTorch, TFLite.

Batch 1, random weights, ``--threads`` (2) threads everywhere. Every mode runs in a worker
process (benchmarks/_workers.py) and the modes are interleaved (A B C A B C ...), so
background load hits them alike; the table gives medians, the load average, and ratios
against PyTorch's best float32 mode and PyTorch bf16 autocast. The CPU model and its ISA flags
are printed with the figures.

Modes:
- Keras: ``graph`` (``tf.function``, oneDNN: TF's default), ``matmul`` (the same with fc6 as
  one matrix multiply, ``runtime.convolutions_as_matmul``), ``xla`` (``jit_compile=True``),
  ``eigen`` (``TF_ENABLE_ONEDNN_OPTS=0``), ``bf16`` (``runtime.with_precision``, head and
  logits float32), ``bf16_matmul``, ``bf16_xla``, ``default`` (what ``keras_fcn.predict``
  runs with no arguments: ``forward_fn(model)``, the path of ``runtime.fast_path``) and
  ``auto`` (``forward_fn(model, precision="auto")``).
- PyTorch (the VGG16 FCN-8s only): ``torch_fp32``, ``torch_channels_last``,
  ``torch_compile`` (skipped when compiling takes over 3 minutes), ``torch_bf16`` (autocast).
- TFLite (``keras_fcn.export.convert_to_tflite``, run by ``keras_fcn.export.TFLiteRunner``,
  LiteRT with XNNPACK): ``tflite_float32``, ``tflite_float16`` (float16 weights) and
  ``tflite_int8`` (full integer, calibrated on ``CALIBRATION_IMAGES`` random images). The
  TFLite models take uint8 RGB and do the preprocessing inside.

Usage:
    python benchmarks/inference.py [--models vgg16,mobilenet_v2] [--sizes 500x500,360x480]
        [--modes graph,xla,...] [--repeats 3] [--threads 2] [--overwrite]

Writes benchmarks/results/inference.md and .json (about 20-25 minutes with the defaults on
2 cores).
"""

import datetime
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _workers  # noqa: E402
import _outputs  # noqa: E402
from _outputs import refuse_to_overwrite  # noqa: E402

DEFAULT_MODES = ("default", "auto")
TFLITE_MODES = ("tflite_float32", "tflite_float16", "tflite_int8")
MODES = (_workers.KERAS_MODES + DEFAULT_MODES + _workers.TORCH_MODES + TFLITE_MODES)
BF16_MODES = ("bf16", "auto")
CALIBRATION_IMAGES = 4


def parse_args(argv=None):
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16,mobilenet_v2",
                        help="vgg16 and/or mobilenet_v2")
    parser.add_argument("--sizes", default="500x500,360x480", help="HEIGHTxWIDTH, comma-separated")
    return _workers.parse_run_args(parser, "inference", MODES, argv)


def default_runner(mode, model_name, size):
    """keras_fcn's own prediction function: its defaults (``default``) or ``precision="auto"``."""
    from keras_fcn import runtime
    from keras_fcn.inference.forward import forward_fn

    model = _workers.keras_model(model_name, tuple(size), False)
    precision = "auto" if mode == "auto" else None
    fn = forward_fn(model, precision=precision)
    resolved = runtime.resolve_precision(precision or "float32", model=model)
    print(f"{mode} {model_name}: {runtime.fast_path(resolved, model=model)}", file=sys.stderr,
          flush=True)  # the worker's stdout carries the answers
    images, _ = _workers.keras_inputs(tuple(size))
    return lambda: fn(images).numpy()


def tflite_runner(mode, model_name, size, threads):
    """A TFLite conversion of the Keras model in the LiteRT interpreter."""
    import numpy as np

    from keras_fcn.export import TFLiteRunner, convert_to_tflite

    rng = np.random.default_rng(0)
    quantization = mode.removeprefix("tflite_")
    calibration = [rng.integers(0, 256, (*size, 3)).astype("uint8")
                   for _ in range(CALIBRATION_IMAGES)]
    flatbuffer = convert_to_tflite(
        _workers.keras_model(model_name, tuple(size), False), input_size=tuple(size),
        quantization=quantization, num_calibration_images=CALIBRATION_IMAGES,
        representative_data=calibration if quantization == "int8" else None)
    runner = TFLiteRunner(flatbuffer, num_threads=threads)
    image = calibration[0]
    return lambda: runner.invoke(image)


def make_runner(mode, model_name, size, what, threads):
    if mode in DEFAULT_MODES:
        return default_runner(mode, model_name, size)
    if mode in TFLITE_MODES:
        return tflite_runner(mode, model_name, size, threads)
    return _workers.step_runner(mode, model_name, size, what, threads)


def ratios(medians):
    """``{mode: (x best torch float32, x torch bf16)}``, None where there is no baseline."""
    fp32 = [medians[m] for m in _workers.TORCH_FP32_MODES if m in medians]
    best = min(fp32) if fp32 else None
    bf16 = medians.get("torch_bf16")
    return {mode: (t / best if best else None, t / bf16 if bf16 else None)
            for mode, t in medians.items()}


def verdicts(result):
    """Plain-language answers for one model and size: the fastest float32 and bf16 Keras
    modes against PyTorch, and Keras bf16 against TFLite int8."""
    medians = _workers.medians(result["seconds"])
    lines = []
    fp32 = [m for m in _workers.TORCH_FP32_MODES if m in medians]
    if fp32 and "default" in medians:
        best = min(fp32, key=medians.get)
        lines.append(f"default float32 path {1000 * medians['default']:,.0f} ms = "
                     f"{medians['default'] / medians[best]:.2f}x PyTorch's best float32 "
                     f"({best}, {1000 * medians[best]:,.0f} ms; target <= 0.85x)")
    bf16 = [m for m in BF16_MODES if m in medians]
    if bf16 and "torch_bf16" in medians:
        fastest = min(bf16, key=medians.get)
        lines.append(f"Keras bf16 ({fastest}) {medians[fastest] / medians['torch_bf16']:.2f}x "
                     "PyTorch bf16 autocast (target <= 0.5x)")
    if bf16 and "tflite_int8" in medians:
        fastest = min(bf16, key=medians.get)
        faster = medians[fastest] < medians["tflite_int8"]
        lines.append(f"Keras bf16 ({fastest}, {1000 * medians[fastest]:,.0f} ms) is "
                     f"{'faster' if faster else 'slower'} than TFLite int8 "
                     f"({1000 * medians['tflite_int8']:,.0f} ms): "
                     f"{medians[fastest] / medians['tflite_int8']:.2f}x")
    return lines


def table(results, info_line):
    lines = [f"# FCN-8s forward, batch 1 ({datetime.date.today()})", "", f"CPU: {info_line}",
             "", "| model | size | mode | median ms | x default | x best torch fp32 | "
             "x torch bf16 | load |", "|---|---|---|---|---|---|---|---|"]
    answers = []
    for r in results:
        medians = _workers.medians(r["seconds"])
        load = f"{min(r['loads']):.1f}-{max(r['loads']):.1f}"
        for mode, t in r["seconds"].items():
            if mode not in medians:
                lines.append(f"| {r['model']} | {r['size']} | {mode} | failed: {t} | | | | |")
                continue
            versus = [f"{x:.2f}" if x else "" for x in ratios(medians)[mode]]
            default = f"{medians[mode] / medians['default']:.2f}" if "default" in medians else ""
            lines.append(f"| {r['model']} | {r['size']} | {mode} | {1000 * medians[mode]:,.0f} "
                         f"| {default} | {versus[0]} | {versus[1]} | {load} |")
        answers += [f"- {r['model']} {r['size']}: {line}." for line in verdicts(r)]
    return "\n".join(lines + ["", *answers])


def main():
    args = parse_args()
    if args.worker:
        return _workers.serve(args.worker, args.threads, make_runner)
    from keras_fcn import runtime

    refuse_to_overwrite(os.path.join(args.output_dir, args.name), args.overwrite)
    info = runtime.cpu_info(gpu=False)
    modes = args.modes.split(",")
    if not _workers.torch_available():
        print("PyTorch is not installed: no PyTorch modes.")
        modes = [m for m in modes if m not in _workers.TORCH_MODES]
    info_line = (f"{runtime.describe(info)}, {args.threads} threads, median of {args.repeats}, "
                 f"load average at the start {os.getloadavg()[0]:.1f}")
    print(info_line, flush=True)
    workers = _workers.start_workers(modes, __file__, args.threads)
    log = lambda mode, answer: print(f"  {mode}: {answer}", flush=True)  # noqa: E731
    results = _workers.run_grid(workers, args, modes, ["forward"], table, info_line, log=log)
    _workers.finish(workers, args, results, table, info, info_line)
    return None


if __name__ == "__main__":
    main()
