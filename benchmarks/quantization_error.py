"""Where does the full-int8 TFLite error of a trained FCN come from?

For each trained ``.keras`` FCN, on CamVid val images (agreement = % of pixels whose argmax
equals the float Keras model's):

1. Full int8 (``convert_to_tflite(quantization="int8")``, calibrated on CamVid train images)
   and dynamic-range int8 (int8 weights, float activations at run time): agreement, size,
   latency. The float32 TFLite model is measured too, as a check (it should agree 100%).
2. Weights-only int8, simulated in Keras: every Conv2D / DepthwiseConv2D / Conv2DTranspose
   kernel rounded to symmetric per-output-channel int8 (scale = max|w| / 127 per channel),
   biases and activations float. Per-channel rounding commutes with the per-channel scaling
   of batch-norm folding, so this is the weight rounding of the int8 file without any
   activation quantization.
3. Accumulated error by layer: the float32 and the int8 TFLite models run with
   ``experimental_preserve_all_tensors=True``; every op output of the float model (4-D,
   batch 1) is matched by name and shape to the dequantized int8 tensor, and the relative error
   ``std(int8 - float) / std(float)`` is averaged over ``--num_error_images`` images. It is
   the error reached at that point of the int8 network (all earlier layers quantized too),
   not the error of that layer alone.
4. One layer kept in float: ``tf.lite.experimental.QuantizationDebugger`` calibrates once,
   then requantizes with one CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV / ADD / SUB node
   denylisted (left float) at a time: agreement gain over the debugger's all-int8 model (float
   input/output) and size. For VGG16 models, also all conv5_* / fc6 / fc7 nodes together.
5. int16 activations / int8 weights
   (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``, float input/output):
   agreement, size and median latency (``--slow_runs`` runs).
6. int8 with one scale per kernel (``int8_per_tensor``): agreement and size.

Writes ``<output>.md`` and ``<output>.json``; the Markdown ends with a "What this means"
paragraph per model generated from the measured numbers. Skips (with a message) when the
CamVid folder has no val.txt.

Example:
    python benchmarks/quantization_error.py \\
        --models=runs/camvid/fcn8s/model.keras,runs/camvid_mnv2/best.keras \\
        --overwrite
"""

import csv
import io
import math
import os
import tempfile
import time

from absl import flags

import _outputs
from _outputs import camvid_found, refuse_to_overwrite, save_report

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A trained FCN .keras file.")
flags.DEFINE_list("models", [], "Trained FCN .keras files (comma list; added to --model).")
flags.DEFINE_string("camvid", _outputs.CAMVID_DIR, "CamVid folder (val.txt, train.txt).")
flags.DEFINE_string("input_size", "180x240", "HxW of the converted models.")
flags.DEFINE_integer("num_images", 20, "CamVid val images for the agreements.")
flags.DEFINE_integer("num_calibration", 32, "CamVid train images for int8 calibration.")
flags.DEFINE_integer("num_error_images", 3, "CamVid val images for the accumulated error.")
flags.DEFINE_integer("num_debug", 4, "Calibration images the QuantizationDebugger runs its "
                     "per-layer statistics on (only used to list the nodes).")
flags.DEFINE_integer("num_threads", 2, "Interpreter threads (TF intra-op threads too).")
flags.DEFINE_integer("runs", 10, "Timed runs for the TFLite latency medians.")
flags.DEFINE_integer("slow_runs", 3, "Timed runs for the (slow) int16x8 latency median.")
flags.DEFINE_integer("top_layers", 5, "Single float layers shown in the Markdown.")
flags.DEFINE_integer("max_error_rows", 25, "Rows of the accumulated-error table (Markdown).")
_outputs.define_absl_dirs(flags, name="quantization_error")
flags.DEFINE_bool("overwrite", False, "Replace existing results.")
_outputs.validate_absl_flags(flags, sizes=("input_size",), files=("model",), counts=(
    "num_images", "num_calibration", "num_error_images", "num_debug", "num_threads", "runs",
    "slow_runs", "top_layers", "max_error_rows"))
flags.register_validator("models", lambda paths: all(os.path.isfile(p) for p in paths),
                         message="expected existing .keras files")

IGNORE_LABEL = 11
DEBUG_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "ADD", "SUB")
LAST_BLOCK_KEYS = ("/conv5_", "/fc6_", "/fc7_")


def short_name(name):
    """``"fcn8s_1/conv5_2_1/Relu;fcn8s_1/..."`` -> ``"fcn8s_1/conv5_2_1/Relu"``."""
    return name.split(";")[0]


class Evaluator:
    """Agreement of class ids with the float Keras model over the val images."""

    def __init__(self, model, images):
        import numpy as np
        from keras_fcn import export

        self.images = images
        predict = export.keras_predictor(model)
        self.reference = [np.argmax(predict(image), axis=-1) for image in images]

    def agreement_of(self, labels_fn):
        same = sum(int((labels_fn(image) == ref).sum())
                   for image, ref in zip(self.images, self.reference))
        return 100.0 * same / sum(ref.size for ref in self.reference)

    def tflite(self, flatbuffer, runs=0):
        """Agreement (and median latency in ms when ``runs``) of a TFLite model."""
        from keras_fcn import export

        runner = export.TFLiteRunner(flatbuffer, FLAGS.num_threads)
        row = {"agreement": self.agreement_of(runner.labels),
               "size_mb": len(flatbuffer) / 1e6}
        if runs:
            row["latency_ms"] = 1000 * runner.latency(self.images[0], runs)
        return row


# ------------------------------------------------------------------------------------------
# 2. Weights-only int8 in Keras
# ------------------------------------------------------------------------------------------


def quantize_kernel(kernel, axis):
    """Symmetric int8 rounding with one scale (max|w| / 127) per index of ``axis``."""
    import numpy as np

    reduce = tuple(i for i in range(kernel.ndim) if i != axis)
    scale = np.abs(kernel).max(axis=reduce, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0)
    return (np.clip(np.round(kernel / scale), -127, 127) * scale).astype(kernel.dtype)


def quantize_depthwise(kernel):
    """Depthwise kernel ``(h, w, in, mult)``: one scale per ``in * mult`` output channel."""
    h, w, cin, mult = kernel.shape
    flat = kernel.reshape(h, w, cin * mult)
    return quantize_kernel(flat, axis=2).reshape(h, w, cin, mult)


def weights_only_int8(path):
    """A fresh copy of the model with every conv kernel rounded to per-channel int8."""
    import keras
    from keras_fcn import export

    model = export.load_model(path)
    counts = {}
    for layer in model._flatten_layers(include_self=False):
        kind = type(layer)
        if issubclass(kind, keras.layers.DepthwiseConv2D):
            new = quantize_depthwise(layer.kernel.numpy())
        elif issubclass(kind, keras.layers.Conv2DTranspose):
            new = quantize_kernel(layer.kernel.numpy(), axis=2)  # (h, w, out, in)
        elif issubclass(kind, keras.layers.Conv2D):
            new = quantize_kernel(layer.kernel.numpy(), axis=3)  # (h, w, in, out)
        else:
            continue
        layer.kernel.assign(new)
        counts[kind.__name__] = counts.get(kind.__name__, 0) + 1
    return model, counts


# ------------------------------------------------------------------------------------------
# 3. Accumulated error by tensor
# ------------------------------------------------------------------------------------------


def all_tensors(flatbuffer, image):
    """``{name: (op_index, float array)}`` of every 4-D batch-1 op output (dequantized)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=FLAGS.num_threads,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    x = image[None].astype("float32")
    if scale:
        info = np.iinfo(detail["dtype"])
        x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
    interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
    interpreter.invoke()
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    tensors = {}
    for op in interpreter._get_ops_details():
        for index in op["outputs"]:
            t = details.get(index)
            if t is None or len(t["shape"]) != 4 or t["shape"][0] != 1:
                continue
            value = interpreter.get_tensor(index)
            scale, zero_point = t["quantization"]
            if value.dtype in (np.int8, np.uint8, np.int16) and scale:
                value = (value.astype("float32") - zero_point) * scale
            elif value.dtype != np.float32:
                continue
            tensors[t["name"]] = (op["index"], value)
    return tensors


def accumulated_error(float_flat, int8_flat, images):
    """Rows ``{tensor, name, shape, rel_error}`` in the float model's op order."""
    import numpy as np

    sums = {}
    for image in images:
        ref, quant = all_tensors(float_flat, image), all_tensors(int8_flat, image)
        by_short = {}
        for name, (_, value) in quant.items():
            by_short.setdefault((short_name(name), value.shape), []).append(value)
        for name, (op_index, value) in ref.items():
            other = quant.get(name, (None, None))[1]
            if other is None or other.shape != value.shape:
                same = by_short.get((short_name(name), value.shape), [])
                other = same[0] if len(same) == 1 else None
            if other is None:
                continue
            rel = float(np.std(other - value) / max(float(np.std(value)), 1e-12))
            entry = sums.setdefault(name, [op_index, list(value.shape), 0.0, 0])
            entry[2] += rel
            entry[3] += 1
    rows = [{"tensor": name, "name": short_name(name), "shape": shape,
             "rel_error": total / count, "images": count}
            for name, (op_index, shape, total, count) in sorted(
                sums.items(), key=lambda item: item[1][0])]
    return rows


def error_rows_for_markdown(rows, limit):
    """First, last and every k-th row (at most ``limit``), plus the max row."""
    if len(rows) <= limit:
        return list(range(len(rows)))
    step = math.ceil((len(rows) - 1) / (limit - 3))
    keep = set(range(0, len(rows), step)) | {len(rows) - 1}
    keep.add(max(range(len(rows)), key=lambda i: rows[i]["rel_error"]))
    return sorted(keep)


# ------------------------------------------------------------------------------------------
# 4. Single layers kept in float (QuantizationDebugger)
# ------------------------------------------------------------------------------------------


def single_float_layers(saved_model_dir, representative, debug_data, evaluator):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    start = time.perf_counter()
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                         debug_dataset=debug_data)
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    nodes = []
    for row in csv.DictReader(dump):
        if row["op_name"] in DEBUG_OPS and row["tensor_name"] not in [n for n, _ in nodes]:
            nodes.append((row["tensor_name"], row["op_name"]))
    calibration_seconds = time.perf_counter() - start

    def quantize(denylisted):
        # Setting the private attribute (not the ``options`` setter) skips rebuilding the
        # instrumented debug model: only get_nondebug_quantized_model reads it.
        debugger._debug_options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=denylisted or None)
        return evaluator.tflite(debugger.get_nondebug_quantized_model())

    start = time.perf_counter()
    baseline = quantize([])
    rows = []
    for name, op in nodes:
        row = quantize([name])
        row.update(tensor=name, name=short_name(name), op=op,
                   gain=row["agreement"] - baseline["agreement"])
        rows.append(row)
        print(f"    float {short_name(name)} ({op}): {row['agreement']:.2f}% "
              f"({row['gain']:+.2f})", flush=True)
    block = [name for name, _ in nodes if any(k in name for k in LAST_BLOCK_KEYS)]
    last_block = None
    if block:
        last_block = quantize(block)
        last_block.update(nodes=[short_name(n) for n in block],
                          gain=last_block["agreement"] - baseline["agreement"])
    return {"baseline": baseline, "rows": sorted(rows, key=lambda r: -r["gain"]),
            "last_block": last_block, "calibration_seconds": round(calibration_seconds, 1),
            "requantization_seconds": round(time.perf_counter() - start, 1)}


# ------------------------------------------------------------------------------------------
# Per model
# ------------------------------------------------------------------------------------------


def measure_model(path, size, val_images, calibration_list, workdir):
    import numpy as np
    import tensorflow as tf
    from keras_fcn import export

    model = export.load_model(path)
    evaluator = Evaluator(model, val_images)
    result = {"model": path, "name": model.name, "params": int(model.count_params())}

    def representative():
        for image in export.calibration_images(calibration_list, size, FLAGS.num_calibration):
            yield [image.astype("float32")]

    def debug_data():
        for image in export.calibration_images(calibration_list, size, FLAGS.num_debug):
            yield [image.astype("float32")]

    # 1 and 6: the library's conversions.
    flats, variants = {}, []
    for quantization in ("float32", "dynamic_int8", "int8", "int8_per_tensor"):
        start = time.perf_counter()
        flats[quantization] = export.convert_to_tflite(
            model, input_size=size, quantization=quantization,
            representative_data=calibration_list, num_calibration_images=FLAGS.num_calibration)
        seconds = time.perf_counter() - start
        row = evaluator.tflite(flats[quantization], runs=FLAGS.runs)
        row.update(variant=quantization, conversion_seconds=round(seconds, 1))
        variants.append(row)
        print(f"  {quantization}: {row['agreement']:.2f}%, {row['size_mb']:.2f} MB, "
              f"{row['latency_ms']:.1f} ms", flush=True)

    # 5: int16 activations, int8 weights (float input/output).
    with tempfile.TemporaryDirectory(prefix="qerr_", dir=workdir) as saved_model_dir:
        export.save_tflite_graph(model, saved_model_dir, input_size=size, quantization="int8")
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        start = time.perf_counter()
        flat16 = converter.convert()
        seconds = time.perf_counter() - start
        row = evaluator.tflite(flat16, runs=FLAGS.slow_runs)
        row.update(variant="int16x8", conversion_seconds=round(seconds, 1))
        variants.append(row)
        print(f"  int16x8: {row['agreement']:.2f}%, {row['size_mb']:.2f} MB, "
              f"{row['latency_ms']:.1f} ms", flush=True)

        # 4: one node at a time kept in float.
        print("  QuantizationDebugger: calibrating ...", flush=True)
        result["single_float_layers"] = single_float_layers(
            saved_model_dir, representative, debug_data, evaluator)

    # 2: weights-only int8 in Keras.
    quantized, counts = weights_only_int8(path)
    predict_quantized = export.keras_predictor(quantized)
    result["weights_only"] = {
        "agreement": evaluator.agreement_of(
            lambda image: np.argmax(predict_quantized(image), axis=-1)),
        "quantized_layers": counts}
    print(f"  weights-only int8 (Keras): {result['weights_only']['agreement']:.2f}%", flush=True)

    # 3: accumulated error, float32 vs int8 TFLite.
    result["accumulated_error"] = accumulated_error(
        flats["float32"], flats["int8"], val_images[: FLAGS.num_error_images])
    result["variants"] = variants
    return result


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def _variant(result, name):
    return next(r for r in result["variants"] if r["variant"] == name)


def summary_table(result):
    int8 = _variant(result, "int8")
    labels = {"float32": "float32 TFLite (check)", "dynamic_int8": "dynamic-range int8",
              "int8": "full int8 (per-channel kernels)",
              "int8_per_tensor": "full int8, per-tensor kernels (int8_per_tensor)",
              "int16x8": "int16 activations / int8 weights (16x8)"}
    lines = ["| variant | agreement (%) | size (MB) | latency (ms) |", "|---|---|---|---|"]

    def add(label, agreement, size=None, latency=None):
        lines.append(f"| {label} | {agreement:.2f} | "
                     f"{'-' if size is None else format(size, '.2f')} | "
                     f"{'-' if latency is None else format(latency, '.1f')} |")

    for name in ("float32", "dynamic_int8", "int8", "int8_per_tensor", "int16x8"):
        row = _variant(result, name)
        add(labels[name], row["agreement"], row["size_mb"], row["latency_ms"])
    add("weights-only int8, float activations (Keras simulation)",
        result["weights_only"]["agreement"])
    single = result["single_float_layers"]
    add("debugger all-int8 (float input/output): baseline of the rows below",
        single["baseline"]["agreement"], single["baseline"]["size_mb"])
    for row in single["rows"][: FLAGS.top_layers]:
        add(f"full int8, `{row['name']}` ({row['op']}) float ({row['gain']:+.2f})",
            row["agreement"], row["size_mb"])
    block = single["last_block"]
    if block:
        add(f"full int8, conv5_* / fc6 / fc7 float ({len(block['nodes'])} nodes, "
            f"{block['gain']:+.2f}, {block['size_mb'] / int8['size_mb']:.1f}x int8 size)",
            block["agreement"], block["size_mb"])
    return lines


def error_table(result):
    rows = result["accumulated_error"]
    keep = error_rows_for_markdown(rows, FLAGS.max_error_rows)
    worst = max(range(len(rows)), key=lambda i: rows[i]["rel_error"]) if rows else None
    lines = ["| # | tensor (int8 vs float32 TFLite) | shape | relative error |",
             "|---|---|---|---|"]
    for i in keep:
        r = rows[i]
        mark = " **(max)**" if i == worst else ""
        mark += " (logits)" if i == len(rows) - 1 else ""
        lines.append(f"| {i} | `{r['name']}` | {'x'.join(map(str, r['shape'][1:]))} | "
                     f"{r['rel_error']:.3f}{mark} |")
    step = math.ceil((len(rows) - 1) / (FLAGS.max_error_rows - 3))
    note = f"{len(rows)} matched tensors" + (
        f"; shown: the first, the last, one in {step} and the max (all in the JSON)"
        if len(keep) < len(rows) else "")
    return lines, note


def what_this_means(result):
    int8 = _variant(result, "int8")
    dynamic = _variant(result, "dynamic_int8")
    per_tensor = _variant(result, "int8_per_tensor")
    w16 = _variant(result, "int16x8")
    weights = result["weights_only"]["agreement"]
    single = result["single_float_layers"]
    errors = result["accumulated_error"]
    loss = 100 - int8["agreement"]
    text = [f"Full int8 agrees on {int8['agreement']:.2f}% of the pixels ({loss:.2f} points "
            f"lost). Rounding only the kernels to per-channel int8, with float activations, "
            f"keeps {weights:.2f}% ({100 - weights:.2f} points lost), so "
            + ("most of the full-int8 loss comes from the quantized activations, not from the "
               "int8 weights."
               if 100 - weights < 0.5 * loss else
               "the int8 weights alone already account for a large part of the loss.")]
    if errors:
        # The first tensors can be exact (a reordering of the uint8 input): start at the first
        # one with an error.
        first = next((r for r in errors if r["rel_error"] > 1e-6), errors[0])
        last = errors[-1]
        worst = max(errors, key=lambda r: r["rel_error"])
        text.append(f"The relative error of the int8 activations is {first['rel_error']:.3f} at "
                    f"`{first['name']}`, reaches {worst['rel_error']:.3f} at `{worst['name']}` "
                    f"and is {last['rel_error']:.3f} at the logits output `{last['name']}`; each "
                    "value is the error accumulated through all earlier quantized layers.")
    if single["rows"]:
        best = single["rows"][0]
        text.append(f"Keeping one layer in float helps at most {best['gain']:+.2f} points "
                    f"(`{best['name']}`, {best['agreement']:.2f}% vs the debugger's all-int8 "
                    f"{single['baseline']['agreement']:.2f}%), so no single layer is "
                    "responsible" if best["gain"] < 0.5 * loss else
                    f"Keeping `{best['name']}` in float recovers {best['gain']:+.2f} points "
                    f"({best['agreement']:.2f}% vs {single['baseline']['agreement']:.2f}%)")
        block = single["last_block"]
        if block:
            text[-1] += (f"; keeping the whole conv5 block and fc6/fc7 in float gives "
                         f"{block['gain']:+.2f} points at {block['size_mb']:.2f} MB "
                         f"({block['size_mb'] / int8['size_mb']:.1f}x the int8 file)")
        text[-1] += "."
    slow = w16["latency_ms"] / int8["latency_ms"]
    text.append(f"int16 activations with int8 weights reach {w16['agreement']:.2f}% at "
                f"{w16['size_mb']:.2f} MB, but take {w16['latency_ms']:.0f} ms against "
                f"{int8['latency_ms']:.1f} ms for int8 ({slow:.0f}x slower with this LiteRT build "
                f"on this CPU, {FLAGS.num_threads} threads; both measured in the same run).")
    text.append(f"Dynamic-range int8 (int8 weights, activations quantized on the fly per "
                f"tensor) agrees on {dynamic['agreement']:.2f}% at "
                f"{dynamic['latency_ms']:.1f} ms. One scale per kernel (int8_per_tensor): "
                f"{per_tensor['agreement']:.2f}% at {per_tensor['size_mb']:.2f} MB, against "
                f"{int8['agreement']:.2f}% at {int8['size_mb']:.2f} MB per channel.")
    return " ".join(text)


def write_report(results, size, num_images):
    setup = (f"{time.strftime('%Y-%m-%d')}, CPU {_outputs.cpu_line()}; "
             f"input {size[0]}x{size[1]} (CamVid images resized bilinearly), {num_images} "
             f"CamVid val images (agreement = % of pixels whose argmax equals the float Keras "
             f"model's), int8 calibrated on {FLAGS.num_calibration} CamVid train images, "
             f"accumulated error averaged over {FLAGS.num_error_images} val images, "
             f"{FLAGS.num_threads} threads, median of {FLAGS.runs} TFLite runs "
             f"({FLAGS.slow_runs} for 16x8).")
    parts = ["# Where the full-int8 error of a trained FCN comes from "
             "(benchmarks/quantization_error.py)", "", f"Setup: {setup}", ""]
    for result in results:
        errors, note = error_table(result)
        parts += [f"## {result['name']}: {result['model']}", "",
                  f"{result['params']:,} parameters. 1-minute load average at the start / end "
                  f"of this model's measurements: {result['load_average_1min'][0]:.2f} / "
                  f"{result['load_average_1min'][1]:.2f} on {os.cpu_count()} cores; this "
                  f"benchmark uses up to {FLAGS.num_threads} threads, so values well above that "
                  "mean other processes competed for the CPU and the latencies are slower than "
                  "on an idle machine.", "",
                  *summary_table(result), "",
                  "Relative error `std(int8 - float) / std(float)` of the int8 TFLite "
                  "activations against the float32 TFLite ones, accumulated from the input "
                  f"({note}):", "", *errors, "", "### What this means", "",
                  what_this_means(result), ""]
    markdown = "\n".join(parts)
    print(markdown)
    save_report(*os.path.split(_outputs.absl_report_base(FLAGS)), markdown,
                {"setup": setup, "results": results})


def main(argv):
    del argv
    paths = ([FLAGS.model] if FLAGS.model else []) + list(FLAGS.models)
    if not paths:
        raise ValueError("Give a trained model: --model=... or --models=a.keras,b.keras")
    if not camvid_found(FLAGS.camvid, "--camvid or set $KERAS_FCN_CAMVID",
                        needs=("val.txt", "train.txt")):
        return
    import tensorflow as tf
    from keras_fcn import export

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.num_threads)
    val_list = os.path.join(FLAGS.camvid, "val.txt")
    calibration_list = os.path.join(FLAGS.camvid, "train.txt")
    refuse_to_overwrite(_outputs.absl_report_base(FLAGS), FLAGS.overwrite)
    height, width = _outputs.size_type(FLAGS.input_size)
    pairs = export.read_list(val_list)[: FLAGS.num_images]
    val_images = [export.load_image(p, (height, width)) for p, _ in pairs]
    results = []
    with tempfile.TemporaryDirectory(prefix="fcn_qerr_bench_") as workdir:
        for path in paths:
            print(f"{path}: measuring at {height}x{width} ...", flush=True)
            start, load = time.perf_counter(), os.getloadavg()[0]
            result = measure_model(path, (height, width), val_images, calibration_list,
                                   workdir)
            result["seconds"] = round(time.perf_counter() - start, 1)
            result["load_average_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]
            results.append(result)
    write_report(results, (height, width), len(val_images))


if __name__ == "__main__":
    from keras_fcn.training import run_main  # --help exits 0, a bad flag 2 (one line)

    run_main(main)
