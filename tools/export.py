"""Export a trained FCN to SavedModel and TFLite, and check the TFLite variants.

Examples:

```
# SavedModel (any image size) + four TFLite variants at the CamVid size, int8 calibrated
python tools/export.py --model runs/fcn8s_camvid.keras --output_dir export \
    --input_size 360x480 --calibration_data /work/shared/data/camvid/train.txt \
    --class_names Sky,Building,Pole,Road,Pavement,Tree,SignSymbol,Fence,Car,Pedestrian,Bicyclist \
    --ignore_label 11

# quality gate on validation images: fails (exit 1) below the thresholds
python tools/export.py --model runs/fcn8s_camvid.keras --output_dir export \
    --input_size 360x480 --calibration_data camvid/train.txt --check camvid/val.txt \
    --ignore_label 11 --min_agreement 98 --max_miou_drop 1 --overwrite
```

The check writes ``<output_dir>/<name>_check.md`` and ``.json``: size, median latency
(``--num_threads``, ``--runs``), pixel agreement with the Keras float model and, when the list
file gives masks, mean IU of each variant and its delta.
"""

import json
import os
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Trained model (.keras).", required=True)
flags.DEFINE_string("output_dir", None, "Where to write the exports.", required=True)
flags.DEFINE_string("name", None, "Base file name (default: the model name).")
flags.DEFINE_string("input_size", None, "HxW of the TFLite models, e.g. 360x480.")
flags.DEFINE_list("quantizations", ["float32", "float16", "dynamic_int8", "int8"],
                  "TFLite variants to write (empty: none); also int8_per_tensor (one scale "
                  "per kernel: a smaller file, see keras_fcn.export.FULL_INT8).")
flags.DEFINE_enum("int8_io", "uint8", ["uint8", "int8"], "Input/output type of the int8 model.")
flags.DEFINE_bool("argmax", False, "Put the argmax in the TFLite models (uint8 label map out).")
flags.DEFINE_bool("saved_model", True, "Also write a SavedModel.")
flags.DEFINE_bool("saved_model_any_size", True,
                  "SavedModel accepts any image size (else --input_size).")
flags.DEFINE_bool("probabilities", True, "SavedModel also returns softmax probabilities.")
flags.DEFINE_string("calibration_data", None, "Folder of images or list file for int8.")
flags.DEFINE_integer("num_calibration", 100, "Calibration images.")
flags.DEFINE_list("class_names", None, "Class names by id (comma list) ...")
flags.DEFINE_string("class_names_file", None, "... or a file with one name per line.")
flags.DEFINE_string("palette", None, "JSON file with a list of [R, G, B] by class id.")
flags.DEFINE_integer("ignore_label", 255, "Void label of the masks.")
flags.DEFINE_string("check", None, "Folder of images or list file ('image [mask]' lines).")
flags.DEFINE_integer("num_check_images", 20, "Images used by --check (0: all).")
flags.DEFINE_float("min_agreement", None, "Fail if a variant agrees less (%) with Keras float.")
flags.DEFINE_float("min_confident_agreement", None,
                   "Fail if a variant agrees less (%) on the pixels where the Keras float model is "
                   "sure (top-2 softmax gap >= keras_fcn.export.CONFIDENT_GAP).")
flags.DEFINE_float("max_miou_drop", None, "Fail if a variant loses more mean IU (points).")
flags.DEFINE_float("max_size_ratio", None, "Fail if a variant is larger than this x Keras float.")
flags.DEFINE_float("min_speedup", None, "Fail if a variant is slower than this x Keras float.")
flags.DEFINE_integer("num_threads", 2, "Interpreter threads.")
flags.DEFINE_integer("runs", 10, "Timed runs for the median latency.")
flags.DEFINE_bool("overwrite", False, "Replace existing outputs.")


def parse_size(text):
    """'360x480' -> (360, 480)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except (AttributeError, ValueError):
        raise app.UsageError(f"--input_size must look like 360x480. Received: {text!r}")
    return height, width


def class_names():
    if FLAGS.class_names_file:
        with open(FLAGS.class_names_file) as f:
            return [line.strip() for line in f if line.strip()]
    return FLAGS.class_names


def palette():
    if not FLAGS.palette:
        return None
    with open(FLAGS.palette) as f:
        return json.load(f)


def metadata():
    """Class names and palette from the flags, else from the model's ``.labels.json`` sidecar."""
    from keras_fcn.inference import read_labels_sidecar

    names, colours = read_labels_sidecar(FLAGS.model)
    if colours is not None:
        colours = colours.tolist()
    return {"class_names": class_names() or names, "palette": palette() or colours,
            "ignore_label": FLAGS.ignore_label}


def export_all(model, name):
    """Writes the SavedModel and the TFLite variants; returns {variant: tflite path}."""
    from keras_fcn import export

    meta = metadata()
    if FLAGS.saved_model:
        size = None if FLAGS.saved_model_any_size else parse_size(FLAGS.input_size)
        path = os.path.join(FLAGS.output_dir, f"{name}_saved_model")
        export.export_saved_model(model, path, input_size=size, overwrite=FLAGS.overwrite,
                                  include_probabilities=FLAGS.probabilities, **meta)
        logging.info("Wrote %s", path)
    paths = {}
    if FLAGS.quantizations and not FLAGS.input_size:
        raise app.UsageError("TFLite export needs --input_size (e.g. 360x480).")
    for quantization in FLAGS.quantizations:
        path = os.path.join(FLAGS.output_dir, f"{name}_{quantization}.tflite")
        details = export.export_tflite(
            model, path, input_size=parse_size(FLAGS.input_size), quantization=quantization,
            representative_data=FLAGS.calibration_data,
            num_calibration_images=FLAGS.num_calibration, int8_io=FLAGS.int8_io,
            include_argmax=FLAGS.argmax, overwrite=FLAGS.overwrite, **meta)
        print(f"{path}: {details['size_bytes'] / 1e6:.2f} MB, ops {details['ops']}")
        paths[quantization] = path
    return paths


def run_check(model, paths, name):
    """Runs the quality gate; returns the failure messages."""
    from keras_fcn import export

    pairs = export.read_list(FLAGS.check)
    if FLAGS.num_check_images:
        pairs = pairs[: FLAGS.num_check_images]
    rows = export.compare_tflite(model, paths, pairs, ignore_label=FLAGS.ignore_label,
                                 num_threads=FLAGS.num_threads, runs=FLAGS.runs)
    failures = export.check_thresholds(
        rows, min_agreement=FLAGS.min_agreement, max_miou_drop=FLAGS.max_miou_drop,
        max_size_ratio=FLAGS.max_size_ratio, min_speedup=FLAGS.min_speedup,
        min_confident_agreement=FLAGS.min_confident_agreement)
    notes = [f"{len(pairs)} images from {FLAGS.check}, resized to {FLAGS.input_size}",
             f"{FLAGS.num_threads} threads, median of {FLAGS.runs} runs (Keras: 3)",
             "verdict: " + ("FAIL: " + "; ".join(failures) if failures else "pass")]
    markdown = export.rows_to_markdown(rows, f"Export check: {name}", notes)
    print(markdown)
    base = os.path.join(FLAGS.output_dir, f"{name}_check")
    export.write_atomic(base + ".md", markdown, FLAGS.overwrite)
    export.write_json(base + ".json", {"rows": rows, "failures": failures, "notes": notes},
                      FLAGS.overwrite)
    return failures


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from keras_fcn import export

    model = export.load_model(FLAGS.model)
    name = FLAGS.name or model.name
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    paths = export_all(model, name)
    if FLAGS.check:
        if not paths:
            raise app.UsageError("--check needs at least one TFLite variant (--quantizations).")
        failures = run_check(model, paths, name)
        if failures:
            print("Quality gate FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
            sys.exit(1)
        print("Quality gate passed.")


if __name__ == "__main__":
    app.run(main)
