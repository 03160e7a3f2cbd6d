"""Benchmark the TFLite exports of VGG16 FCN-8s and MobileNetV2 FCN-8s on CamVid val.

For each backbone: size and median latency (``--num_threads``) of the Keras float model and of
each TFLite variant (float32, float16, dynamic-range int8, full int8), pixel agreement with the
Keras float model and mean IU (and its delta) on CamVid val images (label 11 = void). int8 is
calibrated on CamVid train images. Targets (checked and reported): int8 >= 4x faster than
Keras float and <= 1/3.5 of its size, agreement >= 98%, mean IU drop <= 1 point; float16
half the size, agreement >= 99.9%.

Without ``--vgg_model`` / ``--mobilenet_model`` (trained ``.keras`` files) the models have
random weights (random score layers too) and the output says so: agreement on random weights
understates a trained model, and their mean IU means nothing.

Example:
    python benchmarks/export.py --input_size 360x480 --num_images 20 --overwrite
"""

import datetime
import os
import tempfile
import time

from absl import flags

import _outputs
from _outputs import camvid_found, refuse_to_overwrite, save_report

FLAGS = flags.FLAGS
flags.DEFINE_string("camvid", _outputs.CAMVID_DIR, "CamVid folder (val.txt, train.txt).")
flags.DEFINE_string("vgg_model", None, "Trained VGG16 FCN-8s .keras (else random weights).")
flags.DEFINE_string("mobilenet_model", None, "Trained MobileNetV2 FCN-8s .keras (else random).")
BACKBONES = ("vgg16", "mobilenet_v2")
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8", "int8_per_tensor")
flags.DEFINE_list("backbones", list(BACKBONES), "Backbones to benchmark.")
flags.DEFINE_list("quantizations", list(QUANTIZATIONS), "Variants.")
flags.DEFINE_string("input_size", "360x480", "HxW of the exported models (CamVid: 360x480).")
flags.DEFINE_integer("num_images", 20, "CamVid val images for agreement and mean IU.")
flags.DEFINE_integer("num_calibration", 32, "CamVid train images for int8 calibration.")
flags.DEFINE_integer("num_threads", 2, "Interpreter threads (TF intra-op threads too).")
flags.DEFINE_integer("runs", 5, "Timed runs for TFLite medians (Keras: 3).")
_outputs.define_absl_dirs(flags, name="export")
flags.DEFINE_bool("overwrite", False, "Replace existing results.")
_outputs.validate_absl_flags(flags, sizes=("input_size",), choices={
    "backbones": BACKBONES, "quantizations": QUANTIZATIONS},
    files=("vgg_model", "mobilenet_model"),
    counts=("num_images", "num_calibration", "num_threads", "runs"))

NUM_CLASSES = 11
IGNORE_LABEL = 11
CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
                  "Car", "Pedestrian", "Bicyclist"]
INT8_TARGETS = {"min_speedup": 4.0, "max_size_ratio": 1 / 3.5, "min_agreement": 98.0,
                "max_miou_drop": 1.0}
TARGETS = {"int8": INT8_TARGETS, "int8_per_tensor": INT8_TARGETS,
           "float16": {"max_size_ratio": 0.5 * 1.01, "min_agreement": 99.9}}


def random_model(backbone):
    """FCN-8s with random weights and random (non-zero) score layers."""
    import numpy as np
    import keras_fcn

    model = keras_fcn.build_fcn8s(NUM_CLASSES, weights=None, include_preprocessing=True,
                                  backbone=backbone)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name in ("score_fr", "score_pool4", "score_pool3"):
            kernel, bias = layer.get_weights()
            std = 1.0 / np.sqrt(kernel.shape[2])
            layer.set_weights([rng.normal(0, std, kernel.shape).astype("float32"), bias])
    return model


def load(backbone):
    from keras_fcn import export

    path = FLAGS.vgg_model if backbone == "vgg16" else FLAGS.mobilenet_model
    if path:
        return export.load_model(path), f"trained model {path}"
    return random_model(backbone), "RANDOM WEIGHTS (no trained model given)"


def target_failures(rows):
    from keras_fcn import export

    failures = []
    for variant, targets in TARGETS.items():
        selected = [rows[0]] + [r for r in rows if r["variant"] == variant]
        if len(selected) > 1:
            failures += export.check_thresholds(selected, **targets)
    return failures


def bench_backbone(backbone, size, pairs, calibration, workdir):
    from keras_fcn import export

    model, source = load(backbone)
    paths, seconds = {}, {}
    for quantization in FLAGS.quantizations:
        path = os.path.join(workdir, f"{backbone}_{quantization}.tflite")
        start = time.perf_counter()
        meta = export.export_tflite(model, path, input_size=size, quantization=quantization,
                                    representative_data=calibration,
                                    num_calibration_images=FLAGS.num_calibration,
                                    class_names=CAMVID_CLASSES, ignore_label=IGNORE_LABEL)
        seconds[quantization] = time.perf_counter() - start
        print(f"  {backbone} {quantization}: {meta['size_bytes'] / 1e6:.1f} MB, "
              f"converted in {seconds[quantization]:.0f} s, ops {sorted(meta['ops'])}", flush=True)
        paths[quantization] = path
    rows = export.compare_tflite(model, paths, pairs, num_classes=NUM_CLASSES,
                                 ignore_label=IGNORE_LABEL, num_threads=FLAGS.num_threads,
                                 runs=FLAGS.runs)
    for row in rows[1:]:
        row["conversion_seconds"] = round(seconds[row["variant"]], 1)
    return {"backbone": backbone, "weights": source, "params": model.count_params(),
            "rows": rows, "target_failures": target_failures(rows)}


def main(argv):
    del argv
    if not camvid_found(FLAGS.camvid, "--camvid or set $KERAS_FCN_CAMVID",
                        needs=("val.txt", "train.txt")):
        return
    import tensorflow as tf
    from keras_fcn import export

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.num_threads)
    val_list = os.path.join(FLAGS.camvid, "val.txt")
    refuse_to_overwrite(_outputs.absl_report_base(FLAGS), FLAGS.overwrite)
    height, width = _outputs.size_type(FLAGS.input_size)
    pairs = export.read_list(val_list)[: FLAGS.num_images]
    calibration = os.path.join(FLAGS.camvid, "train.txt")
    results = []
    with tempfile.TemporaryDirectory(prefix="fcn_export_bench_") as workdir:
        for backbone in FLAGS.backbones:
            print(f"{backbone}: converting at {height}x{width} ...", flush=True)
            results.append(bench_backbone(backbone, (height, width), pairs, calibration, workdir))
    write_report(results, (height, width), len(pairs))


def write_report(results, size, num_images):
    from keras_fcn import export

    setup = (f"{datetime.date.today()}, CPU {_outputs.cpu_line()}; "
             f"input {size[0]}x{size[1]} (CamVid images resized from 360x480 when different), "
             f"{num_images} CamVid val images (void label 11 ignored), int8 calibrated on "
             f"{FLAGS.num_calibration} CamVid train images, {FLAGS.num_threads} threads, median "
             f"of {FLAGS.runs} TFLite runs / 3 Keras runs (Keras: tf.function, float32). "
             "Keras size = float32 weight bytes.")
    parts = ["# TFLite export benchmark (benchmarks/export.py)", "", f"Setup: {setup}", ""]
    for result in results:
        notes = [f"weights: {result['weights']}", f"parameters: {result['params']:,}",
                 "conversion seconds: " + ", ".join(
                     f"{r['variant']} {r['conversion_seconds']}" for r in result["rows"][1:]),
                 "targets (int8 >= 4x faster, <= 1/3.5 size, >= 98% agreement, mean IU drop <= 1;"
                 " float16 half size, >= 99.9% agreement): " + (
                     "MISSED: " + "; ".join(result["target_failures"])
                     if result["target_failures"] else "all met")]
        parts.append(export.rows_to_markdown(result["rows"], f"FCN-8s, {result['backbone']}",
                                             notes).replace("# ", "## ", 1))
    markdown = "\n".join(parts)
    print(markdown)
    save_report(*os.path.split(_outputs.absl_report_base(FLAGS)), markdown,
                {"setup": setup, "results": results})


if __name__ == "__main__":
    from keras_fcn.training import run_main  # --help exits 0, a bad flag 2 (one line)

    run_main(main)
