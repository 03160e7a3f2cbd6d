r"""Evaluates a saved FCN (`.keras`) with the paper's metrics and writes them as JSON.

Prints pixel accuracy, mean accuracy, mean IU, frequency-weighted IU and a per-class IU table
with class names. Images are fed at their native size, batch 1, unless `--image_size` is given
(or the model's labels file records a training resolution): then the image is resized and the
logits are resized back to the full-size label map, so figures are always at label resolution.

Examples:
    python tools/evaluate.py --model=runs/shapes_fcn8s/best.keras --dataset=shapes
    python tools/evaluate.py --model=runs/camvid/fcn8s/model.keras --dataset=camvid \
        --data_dir=data/camvid --flip --output=camvid_eval.json
    python tools/evaluate.py --model=runs/camvid/fcn8s/model.keras --dataset=camvid \
        --data_dir=data/camvid --holdout=0006R0 --scales=0.75,1,1.25 --flip
    # the paper's PASCAL VOC figures: seg11valid (736 VOC2011 val images, the list bundled)
    python tools/evaluate.py --model=voc-fcn8s --dataset=voc --data_dir=data/VOCdevkit \
        --split=seg11valid

SIFT Flow (two heads) and NYUDv2 models are not scored here: examples/train_siftflow.py and
examples/train_nyud.py evaluate on their test split, and with --epochs=0 and --weights=<the
model> they evaluate a trained model without training it (RECIPE_EVALUATION).
"""

import os

# TensorFlow's C++ start-up errors (cuInit on CPU-only machines) are not our output; a
# TF_CPP_MIN_LOG_LEVEL set by the user wins. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags

flags.DEFINE_string("model", None, "A .keras model, or a released model by name (e.g. "
                    "voc-fcn8s; docs/presets.md).", required=True)
flags.DEFINE_string("dataset", "shapes", "shapes|camvid|voc|sbd|folder|tfds:<name>.")
flags.DEFINE_string("data_dir", "", "Data folder (shapes: empty = generated in memory).")
flags.DEFINE_string("split", "val", "Split to evaluate (voc: val, train, trainval or seg11valid, "
                    "the paper's validation split: 736 VOC2011 val images of a --data_dir "
                    "VOC2012 or VOC2011 folder; sbd: val; camvid: val/test).")
flags.DEFINE_string("image_size", "auto",
                    "'H,W' to resize inputs, 'native' for none, 'auto' to use the training "
                    "resolution recorded in the labels file next to the model.")
flags.DEFINE_bool("flip", False, "Flip test-time augmentation (average of the two).")
flags.DEFINE_string("scales", "1", "Multi-scale test-time augmentation: image scales whose "
                    "softmax is averaged at label resolution, e.g. 0.75,1,1.25.")
flags.DEFINE_enum("precision", None, ["float32", "bfloat16", "float16", "auto"],
                  "Compute precision (default: the model's own). auto: bfloat16 on CPUs with AMX "
                  "or AVX512-BF16 and on GPUs from Ampere under JAX/PyTorch, float16 on older "
                  "GPUs and under TensorFlow.")
flags.DEFINE_bool("jit_compile", None, "XLA on/off on TensorFlow (default: "
                  "keras_fcn.runtime.fast_path; JAX always compiles, PyTorch runs eagerly).")
flags.DEFINE_string("holdout", "", "camvid/folder: held-out groups (camvid: drives, e.g. 0006R0): "
                    "evaluate on them, as training's --holdout.")
flags.DEFINE_string("group_by", "", "folder: regex whose first group is a file's group.")
flags.DEFINE_integer("num_classes", 0, "folder/tfds: number of classes (0: the model's).")
flags.DEFINE_integer("ignore_label", None, "folder/tfds: void label of the masks (default: the "
                     "ignore label of the model's labels file, else 255); given, it wins.")
flags.DEFINE_integer("num_val", 50, "shapes: number of validation images (not given: the "
                     "--num_val of the model's run, from the config.json beside it; else 50).")
flags.DEFINE_integer("seed", 0, "shapes: data seed (not given: the --seed of the model's run, "
                     "as --num_val; else 0).")
flags.DEFINE_integer("shapes_size", 0, "shapes: image side in pixels (0: the --shapes_size of the "
                     "run the model comes from, read from the config.json beside it; else 64).")
flags.DEFINE_integer("max_images", 0, "Evaluate only the first N images (0: all).")
flags.DEFINE_string("output", "", "JSON output path (default: <model>.eval.json, with --holdout "
                    "<model>.holdout-<groups>.eval.json; a training "
                    "--overwrite of the model's run removes it with the model). An existing "
                    "file is replaced only if it is the JSON of a previous evaluation, or with "
                    "--overwrite.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output that is not the JSON of a "
                  "previous evaluation.")
FLAGS = flags.FLAGS
# The data sets of the paper that this tool does not read: their recipes evaluate.
RECIPE_EVALUATION = {
    "siftflow": ("SIFT Flow", "examples/train_siftflow.py --data_dir=<SIFT Flow folder> "
                 "--variant=16s --weights=<model file or siftflow-fcn16s> --epochs=0 "
                 "--output_dir=<new folder>", "both heads"),
    "nyud": ("NYUDv2", "examples/train_nyud.py --data_dir=<NYUDv2 folder> --modality=<rgb, hha, "
             "rgbd or fusion> --variant=<32s, 16s or 8s> --weights=<model file> --epochs=0 "
             "--output_dir=<new folder>", "its --eval_split (test)"),
}


def recipe_evaluation_message(kind, received):
    """Why a SIFT Flow or NYUDv2 model or data set (``kind``: a key of RECIPE_EVALUATION) is
    not scored here, and the recipe command that scores it."""
    name, command, what = RECIPE_EVALUATION[kind]
    return (f"tools/evaluate.py does not score {name} models (it reads no {name} data): its "
            f"recipe does, on {what}, at the end of training; to score a trained model "
            f"without training it: python {command} (metrics.json and the printed table). "
            f"Received: {received}")


def recipe_kind(model_flag, model=None):
    """"siftflow" or "nyud" for a model this tool does not score: a preset of those data sets
    by name, or a model with the two SIFT Flow heads; None otherwise."""
    for kind in RECIPE_EVALUATION:
        if isinstance(model_flag, str) and model_flag.startswith(f"{kind}-"):
            from keras_fcn import presets

            if model_flag in presets.list_presets():
                return kind
    output = getattr(model, "output", None)
    if isinstance(output, dict) and {"semantic", "geometric"} <= set(output):
        return "siftflow"
    return None


def image_size(flag, labels):
    """The evaluation input size from --image_size and the model's labels (or None); the
    rule of tools/predict.py too (keras_fcn.inference.resolution.input_size)."""
    from keras_fcn.inference.resolution import input_size

    return input_size(flag, labels)


def is_evaluation_json(path):
    """True if ``path`` is a JSON file this tool wrote
    (keras_fcn.training.evaluation.EVALUATION_KEYS): a run's --overwrite removes it too."""
    from keras_fcn.training.evaluation import is_evaluation_json as check

    return check(path)


def check_output(output, overwrite=False):
    """Fails before the slow part if the JSON ``output`` cannot be written, or would replace a
    file that is not a previous evaluation (unless ``overwrite``); creates its folder.

    Raises:
        FileExistsError: ``output`` exists, is not a previous evaluation's JSON (a model
            checkpoint, say) and ``overwrite`` is False.
        ValueError: ``output`` is a folder, or a file stands where its folder should be.
        OSError: its folder cannot be created or written (read-only, no permission).
    """
    import tempfile

    from keras_fcn import io

    if os.path.isdir(output):
        raise ValueError(f"--output={output!r} is a folder; expected the path of a JSON file.")
    if os.path.lexists(output) and not overwrite and not is_evaluation_json(output):
        raise FileExistsError(
            f"--output={output!r} exists and is not the JSON of a previous evaluation; pass "
            "--overwrite to replace it, or choose another --output.")
    folder = os.path.dirname(os.path.abspath(output))
    try:
        io.check_writable(output, overwrite=True)  # creates the folder
        fd, probe = tempfile.mkstemp(prefix=f".{os.path.basename(output)}.", dir=folder)
        os.close(fd)
        os.remove(probe)
    except (FileExistsError, NotADirectoryError) as error:
        raise ValueError(f"--output={output!r} cannot be written: {error.filename!r} is a "
                         "file, not a folder.") from error
    except OSError as error:
        raise OSError(error.errno, f"--output={output!r} cannot be written in {folder!r}: "
                      f"{error.strerror or error}") from error


def replaced_note(output, dataset, split):
    """A line naming the evaluation of another data set or split that ``output`` holds and
    this one replaces (the default file name is the model's alone), or None."""
    import json

    try:
        with open(output) as f:
            old = json.load(f)
        before = (old["dataset"], old["split"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if before == (dataset, split):
        return None
    return (f"Replacing the evaluation of {before[0]} {before[1]} in {output} (pass --output "
            "to keep both)")


def check_num_classes(model, num_classes_flag, labels, labels_path):
    """Fails if --num_classes or the labels file beside the model give a class count that is
    not the model's number of output channels."""
    from keras_fcn.models.inspect import num_classes_of

    channels = num_classes_of(model)
    if num_classes_flag and num_classes_flag != channels:
        raise ValueError(f"--num_classes={num_classes_flag} but the model {FLAGS.model!r} "
                         f"predicts {channels} classes (its output channels); pass "
                         f"--num_classes={channels} or leave it out.")
    if labels is not None and labels.num_classes != channels:
        raise ValueError(f"The labels file {labels_path!r} names {labels.num_classes} classes "
                         f"but the model {FLAGS.model!r} predicts {channels}; fix or remove "
                         "that file.")
    return channels


def labels_file(model_path):
    """The labels file :meth:`ModelLabels.for_model` reads for ``model_path`` (or None)."""
    from keras_fcn.inference.resolution import labels_file as find

    return find(model_path)


def check_flags():
    """The flag checks that need neither the data nor the model."""
    if FLAGS.max_images < 0:
        raise ValueError(f"--max_images must be >= 0 (0: all images). Received: "
                         f"{FLAGS.max_images}")
    if FLAGS.num_classes < 0:
        raise ValueError(f"--num_classes must be >= 0 (0: the model's). Received: "
                         f"{FLAGS.num_classes}")
    if FLAGS.dataset == "shapes" and FLAGS.num_val < 1:
        raise ValueError(f"--num_val must be >= 1. Received: {FLAGS.num_val}")
    if FLAGS.dataset in RECIPE_EVALUATION:
        raise ValueError(recipe_evaluation_message(FLAGS.dataset,
                                                   f"dataset={FLAGS.dataset!r}"))
    if FLAGS.dataset == "sbd" and FLAGS.split != "val":
        raise ValueError(
            f"--dataset=sbd evaluates SBD val (2,857 images, --split=val); the paper's "
            f"seg11valid is --dataset=voc --split=seg11valid with --data_dir a VOC2012 or "
            f"VOC2011 folder. Received: dataset='sbd', split={FLAGS.split!r}")
    if FLAGS.shapes_size < 0:
        raise ValueError(f"--shapes_size must be >= 0 (0: the run's, else 64). Received: "
                         f"{FLAGS.shapes_size}")


def check_data_folder():
    """Fails, before a preset is fetched (~540 MB), when --data_dir is given but is no folder:
    the data set's own message (file_pairs'), as the data loading would give it later."""
    data_dir = FLAGS.data_dir
    if not data_dir or FLAGS.dataset.startswith("tfds:") \
            or os.path.isdir(os.path.expanduser(data_dir)):
        return
    from keras_fcn.datasets.pairs import file_pairs

    file_pairs(FLAGS.dataset, FLAGS.split, data_dir, num_classes=FLAGS.num_classes or None)
    raise FileNotFoundError(f"--data_dir={data_dir!r} is not a folder; expected the "
                            f"{FLAGS.dataset} data folder.")


def shapes_size(flag, model_path):
    """The side of the shapes images to evaluate on: ``flag``, else the ``--shapes_size`` of
    the run that wrote ``model_path`` (the ``config.json`` beside it; a staged run's, one folder
    above its ``fcn8s/``...), else 64 (the training default).

    Example:
        shapes_size(0, "runs/shapes_fcn8s/best.keras")  # 32 after a --shapes_size=32 run
    """
    return flag or run_value("shapes_size", model_path)


def run_value(name, model_path, minimum=1):
    """The flag ``name`` (``shapes_size``, ``num_val``, ``seed``) of the run that wrote
    ``model_path`` (:func:`run_flags`) when it is an int >= ``minimum``, else the training
    default: the shapes images the run validated on."""
    from keras_fcn.training import TrainConfig

    value = run_flags(model_path).get(name)
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    return TrainConfig().flat()[name]


def run_flags(model_path):
    """The flags of the run that wrote ``model_path`` (the ``config.json`` beside it; a staged
    run's, one folder above its ``fcn8s/``...), or {} where there is none."""
    from keras_fcn import io
    from keras_fcn.training.recipe import STAGES
    from keras_fcn.training.run_dir import CONFIG_FILE

    folder = os.path.dirname(os.path.abspath(model_path))
    if os.path.basename(folder) in tuple(f"fcn{stage}" for stage in STAGES):
        folder = os.path.dirname(folder)  # a stage of a --model=staged run
    config = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(config):
        return {}
    stored = io.read_json(config, "Run config")
    stored = stored.get("flags") if isinstance(stored, dict) else None
    return stored if isinstance(stored, dict) else {}


def holdout_note(model_path, holdout_flag):
    """A note when the model's run held groups out (its --holdout) and --holdout is not
    given: the figure is then on the training groups' val, not on the held-out ones (or
    None)."""
    held = run_flags(model_path).get("holdout")
    if holdout_flag or not held or not isinstance(held, (str, list)):
        return None
    held = held if isinstance(held, str) else ",".join(str(group) for group in held)
    return (f"Note: the run of {model_path} held out {held} (--holdout in its config.json); "
            f"without --holdout this figure is on the {FLAGS.split} split of the training "
            f"groups, not the held-out ones. For the held-out figure pass --holdout={held}.")


def ignore_label(flag, labels):
    """The void label of the evaluated masks: ``flag`` when given (it wins over the model's
    labels: the data may mark void otherwise than the training data did), else the model's
    labels' ignore label, else 255.

    Example:
        ignore_label(None, ModelLabels(3, ignore_label=3))  # 3; ignore_label(255, ...): 255
    """
    if flag is not None:
        return flag
    return labels.ignore_label if labels is not None else 255


def output_path(path):
    """--output, or ``<model>.eval.json`` (beside a model file; a preset's in the working
    folder); with --holdout ``<model>.holdout-<groups>.eval.json``, so the held-out figure and
    the same-split one do not overwrite each other."""
    from keras_fcn.training.evaluation import evaluation_file

    return FLAGS.output or evaluation_file(os.path.basename(path) if path != FLAGS.model
                                           else path, FLAGS.holdout)


def resolved_precision(requested, model):
    """The precision the evaluation computes in: ``--precision`` resolved as
    ``keras_fcn.inference.forward_fn`` resolves it (``auto``: ``runtime.resolve_precision``),
    or the model's own when the flag is not given.

    Example:
        resolved_precision(None, model)  # "float32" for a float32 .keras file
    """
    from keras_fcn import runtime

    if requested is None:
        return runtime.model_precision(model)
    return runtime.resolve_precision(requested, model=model)


def prepared(decoded, info, size):
    """The images (resized to ``size``, labels at their own size) as the model takes them."""
    from keras_fcn import data, training

    return data.prepare_dataset(training.resize_images(decoded, size, resize_masks=False),
                                batch_size=1, ignore_label=info.ignore_label,
                                mean_rgb=info.mean_rgb)


def main(argv):
    del argv
    from keras_fcn import _tf, io, presets, runtime, training
    from keras_fcn.training import array_inputs
    from keras_fcn.labels import ModelLabels
    from keras_fcn.training.evaluation import check_scales
    from keras_fcn.models.inspect import check_single_output, preprocessing_fn
    from keras_fcn.weights import load_model_file

    check_flags()
    scales = check_scales(training.parse_floats(FLAGS.scales, "scales"))
    if kind := recipe_kind(FLAGS.model):  # before a preset's download
        raise ValueError(recipe_evaluation_message(kind, f"model={FLAGS.model!r}"))
    if FLAGS.output:  # before the model (a preset is downloaded) and the data are loaded
        check_output(FLAGS.output, FLAGS.overwrite)
    if not os.path.exists(os.path.expanduser(FLAGS.model)):  # a preset: before its download
        check_data_folder()  # (a model file is checked first, then the data)
    path = presets.model_file(FLAGS.model, single_output="tools/evaluate.py")  # or a preset
    output = output_path(path)
    if not FLAGS.output:
        check_output(output, FLAGS.overwrite)
    if os.path.realpath(output) == os.path.realpath(path):
        raise ValueError(f"--output={output!r} is the model file being evaluated; choose "
                         "another --output.")
    labels = ModelLabels.for_model(path)
    size = image_size(FLAGS.image_size, labels)
    model = load_model_file(path)  # a damaged file: a ValueError naming it
    if kind := recipe_kind(FLAGS.model, model):
        raise ValueError(recipe_evaluation_message(kind, f"model={FLAGS.model!r}, outputs "
                                                   f"{sorted(model.output)}"))
    check_single_output(model, "tools/evaluate.py (the two-headed SIFT Flow recipe scores "
                        "both heads in its run's metrics.json)")
    # The data are RGB 0..255: a model without its own preprocess layer gets its trunk's
    # preprocessing, as tools/predict.py gives it (an unknown trunk is refused here).
    preprocess = preprocessing_fn(model)
    channels = check_num_classes(model, FLAGS.num_classes, labels, labels_file(path))
    shapes_flags = {"num_val": FLAGS.num_val, "seed": FLAGS.seed}
    if FLAGS.dataset == "shapes":  # the images of the model's run unless a flag is given
        shapes_flags.update({"shapes_size": shapes_size(FLAGS.shapes_size, path)}, **{
            name: run_value(name, path, low) for name, low in (("num_val", 1), ("seed", 0))
            if not FLAGS[name].present})
    config = training.TrainConfig().replace(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir or None,
        num_classes=channels,  # folder/tfds: the model's classes (checked against the flag)
        ignore_label=ignore_label(FLAGS.ignore_label, labels), val_split=FLAGS.split,
        holdout=FLAGS.holdout or None, group_by=FLAGS.group_by or None, **shapes_flags)
    split = "val" if FLAGS.dataset in ("shapes", "sbd") or FLAGS.dataset.startswith("tfds:") \
        else FLAGS.split
    if _tf.HAS_TENSORFLOW:
        decoded, info, count = training.load_data(config, split)
        if FLAGS.max_images:
            decoded, count = decoded.take(FLAGS.max_images), min(count, FLAGS.max_images)
        dataset = prepared(decoded, info, size)
    else:  # the same files, read with NumPy/PIL (keras_fcn.data.arrays)
        dataset, info, count = array_inputs.evaluation_data(config, split, size,
                                                            FLAGS.max_images)
    precision = resolved_precision(FLAGS.precision, model)
    side = shapes_flags.get("shapes_size")
    if note := holdout_note(path, FLAGS.holdout):
        print(note)
    held = f" of held-out {FLAGS.holdout}" if FLAGS.holdout else ""
    print(f"Evaluating {FLAGS.model} on {info.name} {split}{held} ({count} images"
          f"{f' of {side}x{side} px' if side else ''}, "
          f"{f'resized to {size[0]}x{size[1]}' if size else 'native size'}"
          f"{', flip TTA' if FLAGS.flip else ''}"
          f"{f', scales {FLAGS.scales}' if scales != (1.0,) else ''}"
          f"{'' if preprocess is None else ', the trunk preprocessing applied'}) in {precision}"
          f"{f' (--precision={FLAGS.precision})' if FLAGS.precision else ''} on "
          f"{runtime.describe(runtime.cpu_info())}")
    results = training.evaluate_model(model, dataset, num_classes=info.num_classes,
                                      ignore_label=info.ignore_label, flip=FLAGS.flip,
                                      precision=FLAGS.precision, jit_compile=FLAGS.jit_compile,
                                      scales=scales, preprocess=preprocess)
    results.update({"model": os.path.abspath(path), "dataset": info.name, "split": split,
                    "holdout": FLAGS.holdout or None, "precision": precision,
                    "requested_precision": FLAGS.precision,
                    "image_size": list(size) if size else None, "flip": FLAGS.flip,
                    "scales": list(scales),
                    "class_names": list(info.class_names)})
    print(training.format_results(results, info.class_names))
    if note := replaced_note(output, info.name, split):
        print(note)
    io.write_json(output, results)  # check_output allowed replacing it
    print(f"Wrote {output}")


if __name__ == "__main__":
    from keras_fcn.training import run_main

    run_main(main)
