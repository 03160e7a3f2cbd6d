r"""Trains an FCN on NYUDv2 (40 classes): RGB, HHA, RGB-D or RGB-HHA late fusion (paper, sec. 5).

The paper's best NYUDv2 model is the FCN-16s RGB-HHA late fusion (65.4 pixel acc., 46.1 mean
acc., 34.0 mean IU, 49.5 f.w. IU on the 654 test images). Recipe: train each stream as an
FCN-32s, fuse them (summed scores), then go to FCN-16s.

Training goes through `keras_fcn.training.fit`: NaN guard, `best.keras` (picked on
--eval_split, as the reference solvers test on it), `metrics.json`, and `--resume` after a kill.

Data: the FCN layout (``nyud.tar.gz`` of the FCN authors, or convert the official file once):

    python examples/train_nyud.py --convert_mat nyu_depth_v2_labeled.mat \
        --class_mapping classMapping40.mat --data_dir data/nyud --epochs 0

(split files of data/nyud that list other ids stop the conversion before it starts;
--overwrite_data replaces them; image, depth, HHA and label files that exist are kept
unless --overwrite_data.) Then train each stream, fuse them, and go to FCN-16s:

    python examples/train_nyud.py --data_dir data/nyud --modality rgb --variant 32s \
        --output_dir runs/nyud_rgb32s
    python examples/train_nyud.py --data_dir data/nyud --modality hha --variant 32s \
        --output_dir runs/nyud_hha32s
    python examples/train_nyud.py --data_dir data/nyud --modality fusion --variant 32s \
        --weights_rgb runs/nyud_rgb32s/model.keras --weights_hha runs/nyud_hha32s/model.keras \
        --output_dir runs/nyud_fusion32s
    python examples/train_nyud.py --data_dir data/nyud --modality fusion --variant 16s \
        --weights runs/nyud_fusion32s/model.keras --output_dir runs/nyud_fusion16s

Smoke test on tiny fake files in the real formats (a few seconds on a CPU):

    python examples/train_nyud.py --synthetic --modality fusion --output_dir runs/nyud_smoke
"""

import os

# TensorFlow's C++ start-up errors (cuInit on CPU-only machines) are not our output; a
# TF_CPP_MIN_LOG_LEVEL set by the user wins. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tempfile

from absl import flags

import keras_fcn  # noqa: F401,I001  (first: it names a KERAS_BACKEND that Keras cannot load)
import keras

from keras_fcn import training
from keras_fcn import weights as weights_lib
from keras_fcn.datasets import DatasetInfo, nyud
from keras_fcn.labels import voc_palette
from keras_fcn.layers import CaffePreprocessing
from keras_fcn.models import build_fcn, multimodal
from keras_fcn.presets import preset_labels
from keras_fcn.training import config as train_config
from keras_fcn.training.run_dir import (
    check_inputs_outside,
    finished_run,
    setup_removed_on_failure,
)
from keras_fcn.training.run_config import write_run_config

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "NYUDv2 folder in the FCN layout.")
flags.DEFINE_enum("modality", "rgb", list(nyud.MODALITIES), "Input modality.")
flags.DEFINE_enum("variant", "32s", ["32s", "16s", "8s"], "FCN variant.")
flags.DEFINE_string("weights", "imagenet", "Initial weights: imagenet, none, or a model file "
                    "(for fusion: a fusion model of another variant, staged training).")
flags.DEFINE_string("weights_rgb", None, "Fusion: weights of the RGB stream (default imagenet).")
flags.DEFINE_string("weights_hha", None, "Fusion: weights of the HHA stream (default imagenet).")
flags.DEFINE_string("train_split", "trainval", "Training split.")
flags.DEFINE_string("eval_split", "test", "Validation and evaluation split.")
# The flags shared with examples/train.py, with this recipe's defaults.
training.define_flags(fields=("epochs", "steps_per_epoch", "batch_size", "optimizer",
                              "learning_rate", "flip", "resume", "overwrite", "output_dir"),
                      epochs=50, flip=False, output_dir="runs/nyud")
training.define_deprecated_alias("run_dir", "output_dir")  # the 0.1.0 name
flags.DEFINE_string("convert_mat", None, "nyu_depth_v2_labeled.mat to convert into data_dir.")
flags.DEFINE_string("class_mapping", None, "classMapping40.mat, for --convert_mat.")
flags.DEFINE_bool("overwrite_data", False, "--convert_mat: replace split files (train.txt, "
                  "val.txt, test.txt) of --data_dir that list other ids, and the image, depth, "
                  "HHA and label files of the converted ids that exist (kept otherwise). Only "
                  "the files the conversion writes are replaced; nothing is deleted. "
                  "(--overwrite is the run directory's.)")
flags.DEFINE_bool("synthetic", False, "Train a tiny random model on fake files in a temporary "
                  "folder (2 epochs of 2 steps unless --epochs / --steps_per_epoch are given); "
                  "--data_dir, the weights flags and --convert_mat are refused with it.")
# --help lists the shared flags (defined in keras_fcn.training.config), not only this script's.
flags.adopt_module_key_flags(train_config)

TINY = dict(widths=(8, 8, 8, 8, 8), fc_units=16)
PIXELS = 425 * 560  # NYUDv2 images of the FCN layout
INFO = DatasetInfo("nyud", nyud.NUM_CLASSES, nyud.NYUD_CLASSES, voc_palette(nyud.NUM_CLASSES),
                   nyud.IGNORE_LABEL)


def _weights(value):
    return None if value in (None, "", "none", "None") else value


# The presets of the reference's models of each modality: what the inputs of the model trained
# here are, recorded in its labels.json (the colour model takes RGB 0..255 itself, see
# build_model; the others take the preprocessed inputs of keras_fcn.datasets.nyud).
PRESETS = {"rgb": "nyud-fcn32s-color", "hha": "nyud-fcn32s-hha", "rgbd": "nyud-fcn32s-color-d",
           "fusion": "nyud-fcn32s-color-hha"}


def input_normalization(modality):
    """The normalization labels.json records for `modality`: None for "rgb" (the model's own
    `preprocess` layer, of the NYUDv2 mean), else that of the modality's preset."""
    return None if modality == "rgb" else preset_labels(PRESETS[modality]).normalization


def build_model(modality, variant, tiny):
    """The model of a modality; tiny models for --synthetic. The colour model takes RGB
    0..255 and subtracts the NYUDv2 mean itself (its `preprocess` layer, as the
    nyud-fcn32s-color preset): predict and export feed it what it was trained on."""
    size = TINY if tiny else {}
    if modality == "fusion":
        model = multimodal.build_late_fusion_fcn(
            variant, nyud.NUM_CLASSES,
            weights_rgb=None if tiny else _weights(FLAGS.weights_rgb or "imagenet"),
            weights_hha=None if tiny else _weights(FLAGS.weights_hha or "imagenet"), **size)
        if _weights(FLAGS.weights) not in (None, "imagenet"):  # e.g. 16s from a 32s fusion
            source = keras.models.load_model(FLAGS.weights)
            for stream in ("rgb_fcn", "hha_fcn"):
                weights_lib.set_weights_by_name(
                    model.get_layer(stream), weights_lib.read_weights(source.get_layer(stream)))
        return model
    weights = None if tiny else _weights(FLAGS.weights)
    if modality == "rgbd":
        return multimodal.build_rgbd_fcn(variant, nyud.NUM_CLASSES, weights=weights, **size)
    model = build_fcn(variant, nyud.NUM_CLASSES, (None, None, 3), weights,
                      include_preprocessing=True, **size)
    model.get_layer("preprocess").mean_bgr = CaffePreprocessing(nyud.NYUD_MEAN_BGR).mean_bgr
    return model


# What --synthetic replaces (fake files, a tiny random model): given with it, they are refused
# rather than silently ignored.
SYNTHETIC_REPLACES = ("data_dir", "weights", "weights_rgb", "weights_hha", "convert_mat",
                      "class_mapping", "overwrite_data")
# The flags a --resume must not change: they shape the model (its weights would not load),
# choose the validation images (best.keras's stored score belongs to them) or the optimizer
# (whose state the backup holds), as keras_fcn.training.recipe.RESUME_FLAGS.
RESUME_FLAGS = ("modality", "variant", "synthetic", "eval_split", "optimizer")


def input_paths(data_dir):
    """{flag: path} of what the run reads, which --output_dir must not be or contain."""
    paths = {"data_dir": data_dir}
    for name in ("weights", "weights_rgb", "weights_hha"):
        value = FLAGS[name].value
        if value and os.path.exists(os.path.expanduser(value)):
            paths[name] = value
    return paths


def main(argv):
    del argv
    optim = train_config.checked_optim(FLAGS)
    if FLAGS.synthetic:
        train_config.refuse_synthetic_extras(FLAGS, SYNTHETIC_REPLACES)
        # The fake files live as long as the run, and are removed even when it fails.
        with tempfile.TemporaryDirectory(prefix="fake_nyud_") as folder:
            return train(nyud.write_fake_nyud(folder, num_images=4), optim, tiny=True)
    data_dir = FLAGS.data_dir
    if not data_dir:
        raise ValueError("--data_dir is required (or --synthetic). Received: data_dir=None")
    if not FLAGS.convert_mat and not os.path.isdir(data_dir):
        # before the run folder is made and the ImageNet weights are fetched
        raise FileNotFoundError(f"NYUDv2 folder not found: {data_dir!r} (--data_dir; "
                                "--convert_mat makes one, --synthetic needs none)")
    check_inputs_outside(FLAGS.output_dir, input_paths(data_dir))  # before converting into it
    if FLAGS.convert_mat:
        count = convert_mat(data_dir)
        print(f"Converted {count} images into {data_dir}")
    elif FLAGS.overwrite_data:
        raise ValueError("--overwrite_data replaces the files that --convert_mat "
                         "writes: give it with --convert_mat. Received: overwrite_data=True, "
                         "convert_mat=None")
    return train(data_dir, optim, tiny=False)


def convert_mat(data_dir):
    """--convert_mat into `data_dir`; returns the number of images converted. Split files of
    `data_dir` that list other ids are refused (before converting) and the converted ids'
    files that exist are kept, unless --overwrite_data; nothing else is touched."""
    try:
        return nyud.convert_labeled_mat(FLAGS.convert_mat, FLAGS.class_mapping, data_dir,
                                        overwrite=FLAGS.overwrite_data)
    except FileExistsError as error:
        raise FileExistsError(f"{error} On the command line: --overwrite_data replaces "
                              "them.") from None


def recipe_learning_rate(tiny):
    """--learning_rate, else the recipe's default for --optimizer and --variant (the paper's
    rate of that FCN for SGD, per pixel of the averaged loss; Adam's for --synthetic)."""
    return FLAGS.learning_rate or training.default_learning_rate(
        "adam" if tiny else FLAGS.optimizer, "mean", FLAGS.variant, PIXELS)


def train(data_dir, optim, tiny):
    """Trains into --output_dir on the NYUDv2 files of `data_dir`; a run that fails before
    its first epoch ends removes the run folder it made (config.json, labels.json), so the
    corrected command runs as given."""
    # Every file the run reads, before the run folder is made and the weights are fetched.
    counts = [len(nyud.check_split_files(data_dir, split, FLAGS.modality))
              for split in (FLAGS.train_split, FLAGS.eval_split)]
    with setup_removed_on_failure(FLAGS.output_dir):
        return _train(data_dir, optim, tiny, counts)


def _train(data_dir, optim, tiny, counts):
    run_dir = training.prepare_run_dir(FLAGS.output_dir, resume=FLAGS.resume,
                                       overwrite=FLAGS.overwrite,
                                       inputs={} if tiny else input_paths(data_dir))
    write_run_config(run_dir, {name: FLAGS[name].value for name in (
        "modality", "variant", "synthetic", "weights", "weights_rgb", "weights_hha",
        "train_split", "eval_split", "epochs", "steps_per_epoch", "batch_size", "optimizer",
        "learning_rate", "flip")}, resume=FLAGS.resume, compare=RESUME_FLAGS)
    # --synthetic: 2 epochs of 2 steps, unless the flags are given.
    steps = optim.steps_per_epoch
    epochs = optim.epochs
    if tiny:
        steps = steps if FLAGS["steps_per_epoch"].present else 2
        epochs = epochs if FLAGS["epochs"].present else 2
    # A finished run is not trained again (fit refuses its folder); another --epochs is
    # refused, naming the way to train further.
    done = finished_run(run_dir, epochs, synthetic=tiny) if FLAGS.resume else None
    if done is not None:
        if done["final_val"]:
            print(training.format_results(done["final_val"], INFO.class_names))
        print(f"Run directory: {run_dir} (complete; nothing to resume)")
        return
    print(f"Data: {INFO.name} {FLAGS.modality}, {counts[0]} train ({FLAGS.train_split}) / "
          f"{counts[1]} val ({FLAGS.eval_split}) images, {INFO.num_classes} classes, ignore "
          f"label {INFO.ignore_label}.", flush=True)
    learning_rate = recipe_learning_rate(tiny)
    model = build_model(FLAGS.modality, FLAGS.variant, tiny)
    print(f"Training FCN-{FLAGS.variant} ({model.count_params():,} parameters) in {run_dir}: "
          f"{FLAGS.optimizer} at learning rate {learning_rate:.3g}"
          f"{'' if FLAGS.learning_rate else ' (the recipe default)'}", flush=True)
    training.compile_model(model, num_classes=nyud.NUM_CLASSES, ignore_label=nyud.IGNORE_LABEL,
                           optimizer=training.make_optimizer(FLAGS.optimizer, learning_rate),
                           pixels_per_image=PIXELS)
    raw_rgb = FLAGS.modality == "rgb"  # the model's own preprocess layer
    train_ds = nyud.make_nyud_dataset(data_dir, FLAGS.train_split, FLAGS.modality,
                                      batch_size=optim.batch_size, shuffle=True, seed=0,
                                      flip=FLAGS.flip, raw_rgb=raw_rgb)
    eval_ds = nyud.make_nyud_dataset(data_dir, FLAGS.eval_split, FLAGS.modality,
                                     raw_rgb=raw_rgb)
    name = f"nyud_{FLAGS.modality}_fcn{FLAGS.variant}"
    report = training.fit(model, train_ds.repeat() if steps else train_ds, eval_ds,
                          run_dir=run_dir, epochs=epochs, info=INFO,
                          steps_per_epoch=steps, model_name=name,
                          normalization=input_normalization(FLAGS.modality))
    if report["final_val"]:
        print(f"\nFinal validation metrics of {name} ({report['final_val']['num_images']} "
              "images):\n" + training.format_results(report["final_val"], INFO.class_names))
    print(f"Run directory: {run_dir} ({report['status']})")


if __name__ == "__main__":
    training.run_main(main)
