"""Trains an FCN on NYUDv2 (40 classes): RGB, HHA, RGB-D or RGB-HHA late fusion (paper, sec. 5).

The paper's best NYUDv2 model is the FCN-16s RGB-HHA late fusion (65.4 pixel acc., 46.1 mean
acc., 34.0 mean IU, 49.5 f.w. IU on the 654 test images). Recipe: train each stream as an
FCN-32s, fuse them (summed scores), then go to FCN-16s.

Data: the FCN layout (``nyud.tar.gz`` of the FCN authors, or convert the official file once):

    python examples/train_nyud.py --convert_mat nyu_depth_v2_labeled.mat \
        --class_mapping classMapping40.mat --data_dir data/nyud --epochs 0
    python examples/train_nyud.py --data_dir data/nyud --modality rgb --variant 32s \
        --run_dir runs/nyud_rgb32s
    python examples/train_nyud.py --data_dir data/nyud --modality hha --variant 32s \
        --run_dir runs/nyud_hha32s
    python examples/train_nyud.py --data_dir data/nyud --modality fusion --variant 32s \
        --weights_rgb runs/nyud_rgb32s/model.keras --weights_hha runs/nyud_hha32s/model.keras \
        --run_dir runs/nyud_fusion32s
    python examples/train_nyud.py --data_dir data/nyud --modality fusion --variant 16s \
        --weights runs/nyud_fusion32s/model.keras --run_dir runs/nyud_fusion16s

Smoke test on tiny fake files in the real formats (a few seconds on a CPU):

    python examples/train_nyud.py --synthetic --modality fusion
"""

import json
import os
import tempfile

from absl import app, flags, logging

import keras

import keras_fcn
from keras_fcn import models
from keras_fcn.models import multimodal
from keras_fcn.datasets import nyud

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "NYUDv2 folder in the FCN layout.")
flags.DEFINE_enum("modality", "rgb", list(nyud.MODALITIES), "Input modality.")
flags.DEFINE_enum("variant", "32s", ["32s", "16s", "8s"], "FCN variant.")
flags.DEFINE_string("weights", "imagenet", "Initial weights: imagenet, none, or a model file "
                    "(for fusion: a fusion model of another variant, staged training).")
flags.DEFINE_string("weights_rgb", None, "Fusion: weights of the RGB stream (default imagenet).")
flags.DEFINE_string("weights_hha", None, "Fusion: weights of the HHA stream (default imagenet).")
flags.DEFINE_string("train_split", "trainval", "Training split.")
flags.DEFINE_string("eval_split", "test", "Evaluation split.")
flags.DEFINE_integer("epochs", 50, "Epochs (0: only evaluate).")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: the whole split).")
flags.DEFINE_integer("batch_size", 1, "Images per batch (the paper: 1).")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer.")
flags.DEFINE_float("learning_rate", None, "Learning rate (default: 1e-10 * pixels for SGD with "
                   "the mean loss, 1e-4 for Adam).")
flags.DEFINE_bool("flip", False, "Random left-right flips.")
flags.DEFINE_string("run_dir", "runs/nyud", "Output folder (model.keras, metrics.json).")
flags.DEFINE_string("convert_mat", None, "nyu_depth_v2_labeled.mat to convert into data_dir.")
flags.DEFINE_string("class_mapping", None, "classMapping40.mat, for --convert_mat.")
flags.DEFINE_bool("synthetic", False, "Train a tiny model for a few steps on fake files.")

TINY = dict(widths=(8, 8, 8, 8, 8), fc_units=16)
PIXELS = 425 * 560  # NYUDv2 images of the FCN layout


def _weights(value):
    return None if value in (None, "", "none", "None") else value


def build_model(modality, variant, tiny):
    """The model of a modality; tiny models for --synthetic."""
    size = TINY if tiny else {}
    if modality == "fusion":
        staged = _weights(FLAGS.weights) not in (None, "imagenet")
        model = multimodal.build_late_fusion_fcn(
            variant, nyud.NUM_CLASSES,
            weights_rgb=None if tiny else _weights(FLAGS.weights_rgb or "imagenet"),
            weights_hha=None if tiny else _weights(FLAGS.weights_hha or "imagenet"), **size)
        if staged:  # e.g. FCN-16s fusion from a trained FCN-32s fusion
            source = keras.models.load_model(FLAGS.weights)
            for stream in ("rgb_fcn", "hha_fcn"):
                keras_fcn.set_weights_by_name(model.get_layer(stream),
                                              keras_fcn.read_weights(source.get_layer(stream)))
        return model
    weights = None if tiny else _weights(FLAGS.weights)
    if modality == "rgbd":
        return multimodal.build_rgbd_fcn(variant, nyud.NUM_CLASSES, weights=weights, **size)
    return models.build_fcn(variant, nyud.NUM_CLASSES, (None, None, 3), weights, **size)


def compile_model(model, learning_rate):
    """Compiles with keras_fcn.train when it is there (paper's SGD), else plain Keras."""
    try:
        from keras_fcn import training as train
    except ImportError:
        train = None
    if train is not None:
        optimizer = train.make_optimizer(FLAGS.optimizer, learning_rate)
        return train.compile_model(model, num_classes=nyud.NUM_CLASSES,
                                   ignore_label=nyud.IGNORE_LABEL, optimizer=optimizer,
                                   pixels_per_image=PIXELS)
    from keras_fcn import losses, metrics

    optimizer = (keras.optimizers.SGD(learning_rate, momentum=0.99) if FLAGS.optimizer == "sgd"
                 else keras.optimizers.Adam(learning_rate))
    model.compile(optimizer=optimizer,
                  loss=losses.SparseCategoricalCrossentropyIgnore(nyud.NUM_CLASSES),
                  metrics=[metrics.MeanIU(nyud.NUM_CLASSES)])
    return model


def main(argv):
    del argv
    data_dir, tiny = FLAGS.data_dir, FLAGS.synthetic
    if tiny:
        data_dir = nyud.write_fake_nyud(tempfile.mkdtemp(prefix="fake_nyud_"), num_images=4)
        logging.info("Synthetic NYUDv2 files in %s", data_dir)
    if FLAGS.convert_mat:
        count = nyud.convert_labeled_mat(FLAGS.convert_mat, FLAGS.class_mapping, data_dir)
        logging.info("Converted %d images into %s", count, data_dir)
    if not data_dir:
        raise app.UsageError("--data_dir is required (or --synthetic).")
    epochs = 2 if tiny else FLAGS.epochs
    learning_rate = FLAGS.learning_rate or (
        1e-3 if tiny or FLAGS.optimizer == "adam" else 1e-10 * PIXELS)
    model = compile_model(build_model(FLAGS.modality, FLAGS.variant, tiny), learning_rate)
    if epochs:
        train_ds = nyud.make_nyud_dataset(data_dir, FLAGS.train_split, FLAGS.modality,
                                          batch_size=FLAGS.batch_size, shuffle=True, seed=0,
                                          flip=FLAGS.flip)
        model.fit(train_ds, epochs=epochs, steps_per_epoch=2 if tiny else FLAGS.steps_per_epoch)
    eval_ds = nyud.make_nyud_dataset(data_dir, FLAGS.eval_split, FLAGS.modality)
    results = multimodal.evaluate_segmentation(model, eval_ds, nyud.NUM_CLASSES,
                                               nyud.IGNORE_LABEL)
    os.makedirs(FLAGS.run_dir, exist_ok=True)
    model.save(os.path.join(FLAGS.run_dir, "model.keras"))
    summary = {k: float(results[k]) for k in
               ("pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu")}
    with open(os.path.join(FLAGS.run_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"modality": FLAGS.modality, "variant": FLAGS.variant, **summary}, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
