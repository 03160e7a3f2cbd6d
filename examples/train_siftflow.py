"""Trains the two-headed FCN on SIFT Flow: 33 semantic + 3 geometric classes (paper, sec. 5).

The paper's FCN-16s reaches 85.2 pixel acc., 51.7 mean acc., 39.5 mean IU, 76.1 f.w. IU
(semantic) and 94.3 pixel acc. (geometric) on the 200 test images, with the loss of both heads
summed. Semantic metrics leave out cow, desert and moon (absent from the test set).

    python examples/train_siftflow.py --data_dir data/sift-flow --variant 32s \
        --run_dir runs/siftflow32s
    python examples/train_siftflow.py --data_dir data/sift-flow --variant 16s \
        --weights runs/siftflow32s/model.keras --run_dir runs/siftflow16s

Smoke test on tiny fake files in the real formats:

    python examples/train_siftflow.py --synthetic
"""

import json
import os
import tempfile

from absl import app, flags, logging

import keras

from keras_fcn import metrics
from keras_fcn.models import multimodal
from keras_fcn.datasets import siftflow

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "SIFT Flow folder (SiftFlowDataset.zip extracted).")
flags.DEFINE_enum("variant", "16s", ["32s", "16s", "8s"], "FCN variant.")
flags.DEFINE_string("weights", "imagenet", "Initial weights: imagenet, none, or a two-headed "
                    "model file of another variant (staged training).")
flags.DEFINE_integer("epochs", 50, "Epochs (0: only evaluate).")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: the whole split).")
flags.DEFINE_integer("batch_size", 1, "Images per batch (the paper: 1).")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer.")
flags.DEFINE_float("learning_rate", None, "Learning rate (default: 1e-10 * pixels for SGD with "
                   "the mean loss, 1e-4 for Adam).")
flags.DEFINE_bool("flip", False, "Random left-right flips.")
flags.DEFINE_string("run_dir", "runs/siftflow", "Output folder (model.keras, metrics.json).")
flags.DEFINE_bool("synthetic", False, "Train a tiny model for a few steps on fake files.")

TINY = dict(widths=(8, 8, 8, 8, 8), fc_units=16)
PIXELS = 256 * 256
CLASSES = {"semantic": siftflow.NUM_SEMANTIC, "geometric": siftflow.NUM_GEOMETRIC}


def make_optimizer(learning_rate):
    """The paper's SGD from keras_fcn.train when it is there, else plain Keras."""
    try:
        from keras_fcn import training as train
    except ImportError:
        train = None
    if train is not None:
        return train.make_optimizer(FLAGS.optimizer, learning_rate)
    if FLAGS.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.99)
    return keras.optimizers.Adam(learning_rate)


def report(results):
    """The paper's metrics per head; semantic also without the classes absent from test."""
    summary = {}
    for task, result in results.items():
        summary[task] = {k: float(result[k]) for k in
                         ("pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu")}
    paper = metrics.segmentation_metrics(
        siftflow.semantic_eval_confusion(results["semantic"]["confusion_matrix"]))
    summary["semantic_30_classes"] = {k: float(paper[k]) for k in summary["semantic"]}
    return summary


def main(argv):
    del argv
    data_dir, tiny = FLAGS.data_dir, FLAGS.synthetic
    if tiny:
        data_dir = tempfile.mkdtemp(prefix="fake_siftflow_")
        siftflow.write_fake_siftflow(data_dir, num_train=4, num_test=2, size=64)
        logging.info("Synthetic SIFT Flow files in %s", data_dir)
    if not data_dir:
        raise app.UsageError("--data_dir is required (or --synthetic).")
    weights = None if tiny or FLAGS.weights in ("", "none", "None") else FLAGS.weights
    model = multimodal.build_two_headed_fcn(FLAGS.variant, weights=weights,
                                            **(TINY if tiny else {}))
    learning_rate = FLAGS.learning_rate or (
        1e-3 if tiny or FLAGS.optimizer == "adam" else 1e-10 * PIXELS)
    multimodal.compile_two_headed(model, make_optimizer(learning_rate))
    epochs = 2 if tiny else FLAGS.epochs
    if epochs:
        train_ds = siftflow.make_siftflow_dataset(data_dir, "trainval",
                                                  batch_size=FLAGS.batch_size, shuffle=True,
                                                  seed=0, flip=FLAGS.flip)
        model.fit(train_ds, epochs=epochs, steps_per_epoch=2 if tiny else FLAGS.steps_per_epoch)
    test_ds = siftflow.make_siftflow_dataset(data_dir, "test")
    summary = report(multimodal.evaluate_segmentation(model, test_ds, CLASSES))
    os.makedirs(FLAGS.run_dir, exist_ok=True)
    model.save(os.path.join(FLAGS.run_dir, "model.keras"))
    with open(os.path.join(FLAGS.run_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"variant": FLAGS.variant, **summary}, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
