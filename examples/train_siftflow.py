r"""Trains the two-headed FCN on SIFT Flow: 33 semantic + 3 geometric classes (paper, sec. 5).

The paper's FCN-16s reaches 85.2 pixel acc., 51.7 mean acc., 39.5 mean IU, 76.1 f.w. IU
(semantic) and 94.3 pixel acc. (geometric) on the 200 test images, with the loss of both heads
summed. Semantic metrics leave out cow, desert and moon (absent from the test set).

Training goes through `keras_fcn.training.fit`: NaN guard, `best.keras` (best semantic mean IU
on the test split, as the reference solver tests), `metrics.json`, and `--resume` after a kill.

    python examples/train_siftflow.py --data_dir data/sift-flow --variant 32s \
        --output_dir runs/siftflow32s
    python examples/train_siftflow.py --data_dir data/sift-flow --variant 16s \
        --weights runs/siftflow32s/model.keras --output_dir runs/siftflow16s

Smoke test on tiny fake files in the real formats:

    python examples/train_siftflow.py --synthetic --output_dir runs/siftflow_smoke
"""

import os

# TensorFlow's C++ start-up errors (cuInit on CPU-only machines) are not our output; a
# TF_CPP_MIN_LOG_LEVEL set by the user wins. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json
import tempfile

from absl import flags

from keras_fcn import metrics, training
from keras_fcn.datasets import DatasetInfo, siftflow
from keras_fcn.labels import voc_palette
from keras_fcn.layers import CaffePreprocessing
from keras_fcn.models import multimodal
from keras_fcn.training import config as train_config
from keras_fcn.training import two_headed
from keras_fcn.training.run_dir import (
    finished_run,
    setup_removed_on_failure,
)
from keras_fcn.training.run_config import write_run_config

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "SIFT Flow folder (SiftFlowDataset.zip extracted).")
flags.DEFINE_enum("variant", "16s", ["32s", "16s", "8s"], "FCN variant.")
flags.DEFINE_string("weights", "imagenet", "Initial weights: imagenet, none, or a two-headed "
                    "model file of another variant (staged training).")
# The flags shared with examples/train.py, with this recipe's defaults.
training.define_flags(fields=("epochs", "steps_per_epoch", "batch_size", "optimizer",
                              "learning_rate", "flip", "resume", "overwrite", "output_dir"),
                      epochs=50, flip=False, output_dir="runs/siftflow")
training.define_deprecated_alias("run_dir", "output_dir")  # the 0.1.0 name
flags.DEFINE_bool("synthetic", False, "Train a tiny random model on fake files in a temporary "
                  "folder (2 epochs of 2 steps unless --epochs / --steps_per_epoch are given); "
                  "--data_dir and --weights are refused with it.")
# --help lists the shared flags (defined in keras_fcn.training.config), not only this script's.
flags.adopt_module_key_flags(train_config)

TINY = dict(widths=(8, 8, 8, 8, 8), fc_units=16)
PIXELS = 256 * 256
CLASSES = {"semantic": siftflow.NUM_SEMANTIC, "geometric": siftflow.NUM_GEOMETRIC}
# labels.json describes the semantic head (the geometric one: sky, horizontal, vertical).
INFO = DatasetInfo("siftflow", siftflow.NUM_SEMANTIC, siftflow.SEMANTIC_CLASSES,
                   voc_palette(siftflow.NUM_SEMANTIC), siftflow.IGNORE_LABEL)
SUMMARY_KEYS = ("pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu")


def evaluate(model, dataset):
    """The paper's metrics per head; semantic also without the classes absent from test."""
    results = two_headed.evaluate_segmentation(model, dataset, CLASSES)
    summary = {task: {k: float(result[k]) for k in SUMMARY_KEYS}
               for task, result in results.items()}
    paper = metrics.segmentation_metrics(
        siftflow.semantic_eval_confusion(results["semantic"]["confusion_matrix"]))
    summary["semantic_30_classes"] = {k: float(paper[k]) for k in SUMMARY_KEYS}
    return summary


# What --synthetic replaces (fake files, a tiny random model): given with it, they are refused
# rather than silently ignored.
SYNTHETIC_REPLACES = ("data_dir", "weights")
# The flags a --resume must not change: they shape the model (its weights would not load) or
# choose the optimizer (whose state the backup holds), as keras_fcn.training.recipe.RESUME_FLAGS.
RESUME_FLAGS = ("variant", "synthetic", "optimizer")


def _weights_file():
    value = FLAGS.weights
    return value if value and os.path.exists(os.path.expanduser(value)) else None


def main(argv):
    del argv
    optim = train_config.checked_optim(FLAGS)
    if FLAGS.synthetic:
        train_config.refuse_synthetic_extras(FLAGS, SYNTHETIC_REPLACES)
        # The fake files live as long as the run, and are removed even when it fails.
        with tempfile.TemporaryDirectory(prefix="fake_siftflow_") as data_dir:
            siftflow.write_fake_siftflow(data_dir, num_train=4, num_test=2, size=64)
            return train(data_dir, optim, tiny=True)
    if not FLAGS.data_dir:
        raise ValueError("--data_dir is required (or --synthetic). Received: data_dir=None")
    # before the run folder is made and the ImageNet weights are fetched
    siftflow.image_ids(FLAGS.data_dir)  # FileNotFoundError naming the missing image folder
    return train(FLAGS.data_dir, optim, tiny=False)


def recipe_learning_rate(tiny):
    """--learning_rate, else the recipe's default for --optimizer and --variant (the paper's
    rate of that FCN for SGD, per pixel of the averaged loss; Adam's for --synthetic)."""
    return FLAGS.learning_rate or training.default_learning_rate(
        "adam" if tiny else FLAGS.optimizer, "mean", FLAGS.variant, PIXELS)


def build_model(variant, weights, tiny):
    """The two-headed FCN; it takes RGB 0..255 and subtracts the SIFT Flow mean itself (its
    `preprocess` layer, as the siftflow-fcn* presets): predict and export feed it what it was
    trained on, and labels.json records that mean."""
    model = multimodal.build_two_headed_fcn(variant, weights=weights, include_preprocessing=True,
                                            **(TINY if tiny else {}))
    model.get_layer("preprocess").mean_bgr = CaffePreprocessing(
        siftflow.SIFTFLOW_MEAN_BGR).mean_bgr
    return model


def train(data_dir, optim, tiny):
    """Trains into --output_dir on the SIFT Flow files of `data_dir`; a run that fails before
    its first epoch ends removes the run folder it made (config.json, labels.json), so the
    corrected command runs as given."""
    # Every file the run reads, before the run folder is made and the weights are fetched.
    counts = [len(siftflow.check_split_files(data_dir, split)) for split in ("trainval", "test")]
    with setup_removed_on_failure(FLAGS.output_dir):
        return _train(data_dir, optim, tiny, counts)


def _train(data_dir, optim, tiny, counts):
    inputs = {} if tiny else {"data_dir": data_dir, "weights": _weights_file()}
    run_dir = training.prepare_run_dir(FLAGS.output_dir, resume=FLAGS.resume,
                                       overwrite=FLAGS.overwrite, inputs=inputs)
    write_run_config(run_dir, {name: FLAGS[name].value for name in (
        "variant", "synthetic", "weights", "epochs", "steps_per_epoch", "batch_size",
        "optimizer", "learning_rate", "flip")}, resume=FLAGS.resume, compare=RESUME_FLAGS)
    # --synthetic: 2 epochs of 2 steps, unless the flags are given.
    steps = optim.steps_per_epoch
    epochs = optim.epochs
    if tiny:
        steps = steps if FLAGS["steps_per_epoch"].present else 2
        epochs = epochs if FLAGS["epochs"].present else 2
    # A finished run is not trained again (fit would start it over from epoch 1); another
    # --epochs is refused, naming the way to train further.
    done = finished_run(run_dir, epochs, synthetic=tiny) if FLAGS.resume else None
    if done is not None:
        print(json.dumps(done["final_val"], indent=2))
        print(f"Run directory: {run_dir} (complete; nothing to resume)")
        return
    print(f"Data: {INFO.name}, {counts[0]} train (trainval) / {counts[1]} val (test) images, "
          f"{siftflow.NUM_SEMANTIC} semantic + {siftflow.NUM_GEOMETRIC} geometric classes, "
          f"ignore label {INFO.ignore_label}.", flush=True)
    weights = None if tiny or FLAGS.weights in ("", "none", "None") else FLAGS.weights
    model = build_model(FLAGS.variant, weights, tiny)
    learning_rate = recipe_learning_rate(tiny)
    print(f"Training FCN-{FLAGS.variant} ({model.count_params():,} parameters) in {run_dir}: "
          f"{FLAGS.optimizer} at learning rate {learning_rate:.3g}"
          f"{'' if FLAGS.learning_rate else ' (the recipe default)'}", flush=True)
    two_headed.compile_two_headed(model, training.make_optimizer(FLAGS.optimizer, learning_rate))
    # RGB 0..255: the model's own preprocess layer subtracts the mean.
    train_ds = siftflow.make_siftflow_dataset(data_dir, "trainval", batch_size=optim.batch_size,
                                              shuffle=True, seed=0, flip=FLAGS.flip,
                                              preprocess=False)
    test_ds = siftflow.make_siftflow_dataset(data_dir, "test", preprocess=False)
    name = f"siftflow_fcn{FLAGS.variant}"
    report = training.fit(model, train_ds.repeat() if steps else train_ds, test_ds,
                          run_dir=run_dir, epochs=epochs, info=INFO,
                          steps_per_epoch=steps, model_name=name,
                          monitor="val_semantic_mean_iu", evaluate=evaluate)
    if report["final_val"]:
        print(f"\nFinal validation metrics of {name} ({counts[1]} images):")
    print(json.dumps(report["final_val"], indent=2))
    print(f"Run directory: {run_dir} ({report['status']})")


if __name__ == "__main__":
    training.run_main(main)
