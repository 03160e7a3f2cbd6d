r"""Export a trained FCN to SavedModel and TFLite, and check the TFLite variants.

Examples:

# SavedModel (any image size) + four TFLite variants at the training size, int8 calibrated
python tools/export.py --model runs/camvid/fcn8s/best.keras --output_dir export \
    --calibration_data camvid/train.txt

# a run of examples/train.py on --dataset=folder data: the TFLite size is the training
# --image_size its labels.json records; a run trained without one (each image at its own
# size) needs --input_size HxW here; the gate pairs val/images with val/masks by file stem
python tools/export.py --model runs/mine/best.keras --output_dir export \
    --calibration_data data/mine/train --check data/mine/val --max_miou_drop 1

# quality gate on validation images: fails (exit 1) below the thresholds
python tools/export.py --model runs/camvid/fcn8s/best.keras --output_dir export \
    --calibration_data camvid/train.txt --check camvid/val.txt \
    --min_agreement 98 --max_miou_drop 1 --overwrite

Class names, palette and void label come from the model's labels (``model.labels.json``, or
the ``labels.json`` of its run folder) unless --class_names, --palette or --ignore_label are
given; so does the TFLite size (the training --image_size): an --input_size of another size
is refused unless --any_input_size (a model trained at each image's own size takes any).
--overwrite first removes the files of a previous export under the same --name.
--calibration_data and --check take a folder of images, a folder with images/ and masks/ (the
layout of --dataset=folder, paired by file stem) or a list file of 'image [mask]' lines; a grey
(single-channel) photo is read as RGB, as training reads it, but a label mask (single-channel
with at most keras_fcn.export.images.MASK_MAX_VALUES values, or colour with at most that many
colours) is refused for calibration. int8 calibrates on the first --num_calibration images of
--calibration_data (file name order in a folder, line order in a list file), said in one line.

The check writes ``<output_dir>/<name>_check.md`` and ``.json``: size, median latency
(--num_threads, --runs), pixel agreement with the Keras float model and, when --check gives
masks, mean IU of each variant and its delta (at the TFLite size, masks shrunk by nearest
neighbour: a little off tools/evaluate.py's, which scores at each mask's own size).

Needs TensorFlow (SavedModel and TFLite are its formats); without it --help still works and a
run stops with one error line (exit 2).
"""

import contextlib
import importlib.util
import os
import shutil
import sys
import warnings

# TensorFlow's C++ start-up lines (cuInit on CPU-only machines) are not the tool's output; a
# TF_CPP_MIN_LOG_LEVEL set by the user wins. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The exports trace TensorFlow graphs, so where TensorFlow is installed the tool runs Keras on
# it whatever the shell's KERAS_BACKEND (a .keras file trained on JAX or PyTorch loads here).
if importlib.util.find_spec("tensorflow") is not None:
    os.environ["KERAS_BACKEND"] = "tensorflow"

from absl import flags  # noqa: E402

from keras_fcn import _tf, io, presets  # noqa: E402
from keras_fcn.labels import ModelLabels  # noqa: E402
from keras_fcn.training.cli import run_main  # noqa: E402
from keras_fcn.training.flag_parsing import parse_size as parse_size_flag  # noqa: E402

# SavedModel and TFLite are TensorFlow's own formats: keras_fcn.export imports it. Without it
# --help still works; a run stops in main (require_tensorflow) with one line.
export = None
if _tf.HAS_TENSORFLOW:
    from keras_fcn import export  # noqa: E402
NEEDS_TENSORFLOW = ("tools/export.py writes SavedModels and TFLite models, which needs "
                    "TensorFlow, and it is not installed: `pip install tensorflow`. A .keras "
                    "file trained here (JAX, PyTorch) loads and exports on a machine that has "
                    "it.")

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Trained model (.keras) or a preset name (docs/presets.md).",
                    required=True)
flags.DEFINE_string("output_dir", None, "Where to write the exports.", required=True)
flags.DEFINE_string("name", None, "Base file name (default: the model name).")
flags.DEFINE_string("input_size", None, "HxW (or H,W) of the TFLite models, e.g. 360x480 "
                    "(default: the training size the model's labels.json records; another size "
                    "is refused unless --any_input_size).")
flags.DEFINE_bool("any_input_size", False,
                  "Allow an --input_size other than the training size the labels record. The "
                  "cost: an app feeds whole photos at the export size, so the model sees objects "
                  "at another scale than it learned and its masks get worse.")
flags.DEFINE_list("quantizations", ["float32", "float16", "dynamic_int8", "int8"],
                  "TFLite variants to write (empty: none); also int8_per_tensor (one scale per "
                  "kernel: a smaller file, see keras_fcn.export.FULL_INT8).")
flags.DEFINE_enum("int8_io", "uint8", ["uint8", "int8"], "Input/output type of the int8 model.")
flags.DEFINE_bool("argmax", False, "Put the argmax in the TFLite models (uint8 label map out).")
flags.DEFINE_bool("saved_model", True, "Also write a SavedModel.")
flags.DEFINE_bool("saved_model_any_size", True,
                  "SavedModel accepts any image size (else --input_size).")
flags.DEFINE_bool("probabilities", True, "SavedModel also returns softmax probabilities.")
flags.DEFINE_string("calibration_data", None, "Folder of images, folder with images/ (and "
                    "masks/), or list file, for int8.")
flags.DEFINE_integer("num_calibration", 100, "Calibration images.")
flags.DEFINE_list("class_names", None, "Class names by id (comma list) ...")
flags.DEFINE_string("class_names_file", None, "... or a file with one name per line.")
flags.DEFINE_string("palette", None, "JSON file with a list of [R, G, B] by class id.")
flags.DEFINE_integer("ignore_label", None, "Void label of the masks (default: the model's "
                     "labels, else 255).")
flags.DEFINE_string("check", None, "Folder of images, folder with images/ and masks/ (paired "
                    "by file stem, e.g. data/mine/val), or list file ('image [mask]' lines).")
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
flags.DEFINE_bool("overwrite", False, "Replace existing outputs; first removes the files a "
                  "previous export wrote under the same --name in --output_dir (every variant's "
                  ".tflite and .json, <name>_check.md/.json, <name>_saved_model), nothing else.")


def parse_size(text):
    """'360x480' or '360,480' (training's --image_size spelling) -> (360, 480); 'S' -> (S, S);
    None or '' stays None."""
    return parse_size_flag(text, "input_size")


def training_size():
    """The training --image_size the labels of --model record, and where they are: a
    preset's catalog or the model's labels file (``<model>.labels.json``, or ``labels.json``
    beside it, as evaluate's and predict's --image_size=auto); ``(None, why not)`` without."""
    from keras_fcn.inference.resolution import labels_file

    if FLAGS.model in presets.list_presets():
        labels, source = presets.preset_labels(FLAGS.model), f"the preset {FLAGS.model!r}"
    else:
        path = labels_file(FLAGS.model)
        if path is None:
            return None, (f"no labels file beside --model={FLAGS.model!r} "
                          f"({os.path.basename(ModelLabels.sidecar_path(FLAGS.model))} or "
                          "labels.json) records its training size")
        labels, source = ModelLabels.read(path), path
    if labels.image_size is None:
        return None, (f"{source} records no training size (trained at each image's own "
                      "size)")
    return labels.image_size, source


def input_size():
    """--input_size, else the training size of the model when a size is needed (printed)."""
    size = parse_size(FLAGS.input_size)
    tflite = bool(FLAGS.quantizations)
    fixed_saved_model = FLAGS.saved_model and not FLAGS.saved_model_any_size
    if size is not None:
        return checked_against_training(size)
    if not (tflite or fixed_saved_model):
        return size
    size, source = training_size()
    if size is not None:
        print(f"--input_size={size[0]}x{size[1]}: the training size in {source}")
        return size
    if tflite:
        done = export.metadata.exported_input_sizes(os.path.dirname(os.path.abspath(FLAGS.model)))
        hint = "".join(f"; {name} beside it takes {h}x{w}" for name, (h, w) in done.items())
        raise ValueError(f"TFLite export needs --input_size (e.g. 360x480): {source}{hint}.")
    raise ValueError("--saved_model_any_size=false needs --input_size, the fixed size of "
                     "the SavedModel (e.g. 360x480). Received: --input_size=None")


def checked_against_training(size):
    """``size`` (--input_size), refused when the model's labels record another training size,
    unless --any_input_size: an app feeds whole photos at the export size, so objects would be
    seen at another scale than the model learned."""
    trained, source = training_size()
    if trained is None or tuple(trained) == tuple(size) or FLAGS.any_input_size:
        return size
    given, expected = f"{size[0]}x{size[1]}", f"{trained[0]}x{trained[1]}"
    records = f"the training size {expected} that {source} records"
    if size[0] * trained[0] == size[1] * trained[1] and size[0] != size[1]:  # aspect swapped
        meant = (size[1], size[0])
        still = ("" if tuple(meant) == tuple(trained) else f"; {meant[0]}x{meant[1]} would "
                 f"still see objects at {_scale(meant, trained)} the scale it learned")
        why = (f"has H and W swapped (HxW: height first) against {records}: photos would be "
               f"squashed{still}")
    else:
        why = (f"is not {records}: the model would see objects at {_scale(size, trained)} the "
               "scale it learned")
    raise ValueError(f"--input_size={given} {why}. Leave --input_size out (the default is the "
                     f"training size), or pass --any_input_size to export at {given} anyway. "
                     f"Received: --input_size={FLAGS.input_size!r}")


def _scale(size, trained):
    """'4x', or '1x in height, 2x in width': ``size`` against the training size."""
    scale_h, scale_w = size[0] / trained[0], size[1] / trained[1]
    if abs(scale_h - scale_w) < 1e-9:
        return f"{scale_h:.3g}x"
    return f"{scale_h:.3g}x in height, {scale_w:.3g}x in width"


def _at_least(name, minimum, meaning=""):
    value = FLAGS[name].value
    if value < minimum:
        raise ValueError(f"--{name} must be >= {minimum}{meaning}. Received: {value}")


def check_name(name, what="--name"):
    """A base file name: no folder part (the files stay in --output_dir)."""
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", os.sep)):
        raise ValueError(f"{what} must be a plain file name without '/' or '\\' (the files "
                         f"go to --output_dir). Received: {name!r}")
    return name


def check_flags():
    """Checks the flags that need no model, before anything is loaded or written.

    Returns:
        ``(input_size, check_pairs, palette)``: the TFLite size (or None), the --check images
        (or None) and the colours of their masks when they are colour masks (else None,
        :func:`keras_fcn.export.colour_mask_palette`).
    """
    parse_size(FLAGS.input_size)
    bad = [q for q in FLAGS.quantizations if q not in export.QUANTIZATIONS]
    if bad:
        raise ValueError(f"--quantizations accepts {', '.join(export.QUANTIZATIONS)}. "
                         f"Received: {bad}")
    if len(set(FLAGS.quantizations)) != len(FLAGS.quantizations):
        raise ValueError(f"--quantizations names a variant twice. Received: "
                         f"{FLAGS.quantizations}")
    if not FLAGS.saved_model and not FLAGS.quantizations:
        raise ValueError("Nothing to export: --saved_model=false and --quantizations is "
                         "empty. Received: --saved_model=false, --quantizations=''")
    if FLAGS.check and not FLAGS.quantizations:
        raise ValueError("--check needs at least one TFLite variant (--quantizations).")
    if FLAGS.name:
        check_name(FLAGS.name)
    io.expect_folder(FLAGS.output_dir, "--output_dir")
    _at_least("num_calibration", 1)
    _at_least("num_check_images", 0, " (0: all)")
    _at_least("runs", 1)
    _at_least("num_threads", 1)
    full_int8 = [q for q in FLAGS.quantizations if q in export.FULL_INT8]
    if full_int8 and not FLAGS.calibration_data:
        raise ValueError(f"--quantizations={','.join(full_int8)} (full int8) needs "
                         "--calibration_data: a folder of images (or one with images/ and "
                         "masks/) or a list file of 'image [mask]' lines.")
    if full_int8:  # a missing, bad, truncated or label mask one fails here
        calibration = [image for image, _ in  # calibration reads no masks
                       read_images("calibration_data")[: FLAGS.num_calibration]]
        with _naming("calibration_data"):
            grey = export.check_calibration_images(calibration)
        if grey:
            print(f"--calibration_data: {len(grey)} grey (single-channel) photo(s) read as "
                  f"RGB, as training reads them: {', '.join(grey[:3])}"
                  + (" ..." if len(grey) > 3 else ""))
    unused = [f"--{f}" for f in ("calibration_data", "num_calibration", "int8_io")
              if FLAGS[f].present and not full_int8]
    if unused:
        print(f"Note: {', '.join(unused)} unused: only the full int8 variants "
              f"({', '.join(export.FULL_INT8)}) are calibrated, and --quantizations="
              f"{','.join(FLAGS.quantizations)!r} has none")
    if FLAGS.class_names_file and not os.path.isfile(FLAGS.class_names_file):
        raise FileNotFoundError(f"--class_names_file not found: {FLAGS.class_names_file!r}")
    pairs = palette = None
    if FLAGS.check:
        pairs = read_images("check")[: FLAGS.num_check_images or None]
        with _naming("check"):  # unreadable images, image/mask sizes: from the headers
            export.check_pairs(pairs)
            masked = export.check_masks(pairs)  # all masked or none
            palette, classes = export.colour_mask_palette(FLAGS.check)
        if masked and palette is not None:
            print(f"--check: colour masks, read through the palette of {classes}")
        if not masked and FLAGS.max_miou_drop is not None:  # none masked
            hint = (" (a folder of images has none: pass one with images/ and masks/, e.g. "
                    "data/mine/val)" if os.path.isdir(FLAGS.check) else "")
            raise ValueError(f"--max_miou_drop needs a mask on every --check line (mean IU); "
                             f"{len(pairs)} of {len(pairs)} images have none{hint}: "
                             f"{[image for image, _ in pairs[:5]]}. Received: "
                             f"--check={FLAGS.check!r}")
    return input_size(), pairs, palette



@contextlib.contextmanager
def _naming(flag):
    """Errors of the block name --``flag`` and its value."""
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        kind = FileNotFoundError if isinstance(error, FileNotFoundError) else ValueError
        raise kind(f"--{flag}={FLAGS[flag].value!r}: {error}") from None


def read_images(flag):
    """The ``(image, mask)`` pairs of the folder or list file given as --``flag``."""
    with _naming(flag):
        return export.read_list(FLAGS[flag].value, calibration=flag == "calibration_data")


def calibration_files(size):
    """The images int8 calibrates on, said in one line (a warning when few), read as the
    converter takes them with a progress bar (:class:`keras_fcn.export.images.CalibrationFiles`)."""
    pairs = read_images("calibration_data")
    paths = [image for image, _ in pairs[: FLAGS.num_calibration]]
    order = "file name" if os.path.isdir(FLAGS.calibration_data) else "list"
    print(f"Calibrating int8 on {len(paths)} image(s) (the first {len(paths)} of {len(pairs)} "
          f"in --calibration_data={FLAGS.calibration_data!r} in {order} order; at most "
          f"--num_calibration={FLAGS.num_calibration})")
    if len(paths) < export.images.FEW_CALIBRATION_IMAGES:
        print(f"warning: few images ({len(paths)} < {export.images.FEW_CALIBRATION_IMAGES}): "
              "the int8 ranges may clip; give --calibration_data ~100 photos", file=sys.stderr)
    return export.images.CalibrationFiles(paths, size)


def output_paths(name):
    """Every path the export writes for base name ``name``."""
    paths = [os.path.join(FLAGS.output_dir, f"{name}_saved_model")] if FLAGS.saved_model else []
    for quantization in FLAGS.quantizations:
        tflite = os.path.join(FLAGS.output_dir, f"{name}_{quantization}.tflite")
        paths += [tflite, ModelLabels.sidecar_path(tflite)]
    if FLAGS.check:
        paths += [os.path.join(FLAGS.output_dir, f"{name}_check{ext}") for ext in (".md", ".json")]
    return paths


def previous_export_paths(name):
    """The files and SavedModel folder an earlier export under ``name`` left in --output_dir
    that this one does not write again (a variant, a check report or a SavedModel it skips):
    every name :func:`output_paths` can give, whatever the flags, and nothing else."""
    saved_model = os.path.join(FLAGS.output_dir, f"{name}_saved_model")
    files = [os.path.join(FLAGS.output_dir, f"{name}_check{ext}") for ext in (".md", ".json")]
    for quantization in export.QUANTIZATIONS:
        tflite = os.path.join(FLAGS.output_dir, f"{name}_{quantization}.tflite")
        files += [tflite, ModelLabels.sidecar_path(tflite)]
    kept = set(output_paths(name))
    stale = [p for p in files if p not in kept and os.path.lexists(p) and not os.path.isdir(p)]
    if saved_model not in kept and os.path.isdir(saved_model) and is_saved_model(saved_model):
        stale.append(saved_model)
    return stale


def is_saved_model(path):
    """Whether ``path`` is an earlier SavedModel folder the tool may replace (another folder of
    that name is the user's: left alone)."""
    from keras_fcn.export.saved_model import check_saved_model_target

    try:
        check_saved_model_target(path, True, presets.model_file(FLAGS.model))
    except ValueError:
        return False
    return True


def remove_previous_export(name):
    """--overwrite: removes :func:`previous_export_paths`, so --output_dir describes one
    export."""
    stale = previous_export_paths(name)
    for path in stale:
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    if stale:
        print(f"--overwrite: removed {len(stale)} file(s) of a previous export named {name!r}: "
              + ", ".join(os.path.basename(p) for p in stale))


def check_model_flags(model, name):
    """Checks what needs the model (the void label, the names), before anything is written;
    export.load_model has refused a model with several outputs."""
    from keras_fcn.export.saved_model import check_saved_model_target
    from keras_fcn.losses import validate_ignore_label
    from keras_fcn.models.inspect import num_classes_of

    try:
        validate_ignore_label(FLAGS.ignore_label, num_classes_of(model))
    except ValueError as error:
        raise ValueError(f"--ignore_label: {error}") from None
    check_name(name, "The model name (the default --name)")
    if FLAGS.saved_model and FLAGS.overwrite:  # only an earlier SavedModel is replaced
        check_saved_model_target(os.path.join(FLAGS.output_dir, f"{name}_saved_model"), True,
                                 presets.model_file(FLAGS.model))
    if not FLAGS.overwrite:
        existing = [p for p in output_paths(name) if os.path.lexists(p)]
        if existing:
            raise FileExistsError(f"{existing[0]!r} exists; pass --overwrite to replace the "
                                  f"existing exports ({len(existing)} of them) or choose another "
                                  "--output_dir or --name.")


def model_labels(model):
    """The model's labels, with the names, palette and void label given by flags."""
    names = FLAGS.class_names
    if FLAGS.class_names_file:
        with open(FLAGS.class_names_file, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    palette = io.read_json(FLAGS.palette, "Palette file") if FLAGS.palette else None
    return export.export_labels(model, source=presets.model_file(FLAGS.model),
                                class_names=names, palette=palette,
                                ignore_label=FLAGS.ignore_label)


def export_all(model, name, size, labels):
    """Writes the SavedModel and the TFLite variants; returns {variant: tflite path}."""
    if FLAGS.saved_model:
        path = os.path.join(FLAGS.output_dir, f"{name}_saved_model")
        export.export_saved_model(model, path, input_size=None if FLAGS.saved_model_any_size
                                  else size, include_probabilities=FLAGS.probabilities,
                                  labels=labels, overwrite=FLAGS.overwrite)
        print(f"{path}: SavedModel")
    paths, calibration = {}, None
    for quantization in FLAGS.quantizations:
        path = os.path.join(FLAGS.output_dir, f"{name}_{quantization}.tflite")
        if quantization in export.FULL_INT8 and calibration is None:
            calibration = calibration_files(size)
        with warnings.catch_warnings():  # calibration_files said it before the work
            warnings.filterwarnings("ignore", export.tflite.FEW_CALIBRATION_WARNING)
            details = export.export_tflite(
                model, path, input_size=size, quantization=quantization,
                representative_data=calibration if quantization in export.FULL_INT8 else None,
                num_calibration_images=FLAGS.num_calibration, int8_io=FLAGS.int8_io,
                include_argmax=FLAGS.argmax, labels=labels, overwrite=FLAGS.overwrite)
        print(f"{path}: {details['size_bytes'] / 1e6:.2f} MB, ops {details['ops']}")
        paths[quantization] = path
    return paths


KERAS_RUNS = 3  # at most: the Keras float model, the slowest variant, is timed fewer times


def timing_note(num_threads, runs):
    """The check report's line on the latencies: threads, and the runs of each median."""
    keras = (f" (Keras float model: {KERAS_RUNS}, the slowest)" if runs > KERAS_RUNS else "")
    return f"{num_threads} threads, median of {runs} runs{keras}"


def miou_note(size):
    """How the check report's mean IU is computed, and why it is not tools/evaluate.py's."""
    return (f"mean IU at {size[0]}x{size[1]}, the masks resized to it by nearest neighbour: "
            "it differs a little from tools/evaluate.py's, which scores at each mask's own size")


def run_check(model, paths, name, labels, pairs, size, palette=None):
    """Runs the quality gate and writes its report; returns the failure messages."""
    rows = export.compare_tflite(model, paths, pairs, ignore_label=labels.ignore_label,
                                 num_threads=FLAGS.num_threads, runs=FLAGS.runs,
                                 keras_runs=min(FLAGS.runs, KERAS_RUNS), palette=palette)
    failures = export.check_thresholds(
        rows, min_agreement=FLAGS.min_agreement, max_miou_drop=FLAGS.max_miou_drop,
        max_size_ratio=FLAGS.max_size_ratio, min_speedup=FLAGS.min_speedup,
        min_confident_agreement=FLAGS.min_confident_agreement)
    notes = [f"{len(pairs)} images from {FLAGS.check}, resized to {size[0]}x{size[1]}",
             *([miou_note(size)] if any(row.get("mean_iu") is not None for row in rows) else []),
             timing_note(FLAGS.num_threads, FLAGS.runs),
             "verdict: " + ("FAIL: " + "; ".join(failures) if failures else "pass")]
    markdown = export.rows_to_markdown(rows, f"Export check: {name}", notes)
    print(markdown)
    base = os.path.join(FLAGS.output_dir, f"{name}_check")
    io.write_bytes(base + ".md", markdown, FLAGS.overwrite)
    io.write_json(base + ".json", {"rows": rows, "failures": failures, "notes": notes},
                  FLAGS.overwrite)
    return failures


def require_tensorflow():
    """Exits with status 2 and one ``error:`` line when TensorFlow is not installed."""
    if export is None:
        print(f"error: {NEEDS_TENSORFLOW}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    require_tensorflow()  # before any flag check: they use keras_fcn.export
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    size, pairs, palette = check_flags()  # every flag, before the model is loaded
    model = export.load_model(presets.model_file(FLAGS.model))
    name = FLAGS.name or model.name
    check_model_flags(model, name)  # ... and before anything is written
    labels = model_labels(model)
    if pairs:  # the mask values of the check images: class ids of the model or void
        with _naming("check"):
            export.check_pairs(pairs, num_classes=labels.num_classes,
                               ignore_label=labels.ignore_label, palette=palette)
    with io.directory_lock(FLAGS.output_dir, "export"):  # one writer per output folder
        if FLAGS.overwrite:
            remove_previous_export(name)
        paths = export_all(model, name, size, labels)
        failures = (run_check(model, paths, name, labels, pairs, size, palette)
                    if FLAGS.check else [])
    if FLAGS.check:
        if failures:
            print("Quality gate FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
            sys.exit(1)
        print("Quality gate passed.")


if __name__ == "__main__":
    run_main(main)
