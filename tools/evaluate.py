"""Evaluates a saved FCN (`.keras`) with the paper's metrics and writes them as JSON.

Prints pixel accuracy, mean accuracy, mean IU, frequency-weighted IU and a per-class IU table
with class names. Images are fed at their native size, batch 1, unless `--image_size` is given
(or the model's `labels.json` records a training resolution): then the image is resized and the
logits are resized back to the full-size label map, so figures are always at label resolution.

Examples:
    python tools/evaluate.py --model=runs/shapes_fcn8s/best.keras --dataset=shapes
    python tools/evaluate.py --model=/work/runs/camvid/fcn8s/model.keras --dataset=camvid \
        --data_dir=/work/shared/data/camvid --flip --output=camvid_eval.json
"""

import json
import os

from absl import app, flags

flags.DEFINE_string("model", None, "Path of the .keras model.", required=True)
flags.DEFINE_string("dataset", "shapes", "shapes|camvid|voc|sbd|folder|tfds:<name>.")
flags.DEFINE_string("data_dir", "", "Data folder (shapes: empty = generated in memory).")
flags.DEFINE_string("split", "val", "Split to evaluate (voc: val; sbd: val; camvid: val/test).")
flags.DEFINE_string("image_size", "auto",
                    "'H,W' to resize inputs, 'native' for none, 'auto' to use the training "
                    "resolution recorded in labels.json next to the model.")
flags.DEFINE_bool("flip", False, "Flip test-time augmentation (average of the two).")
flags.DEFINE_integer("num_classes", 0, "folder/tfds: number of classes.")
flags.DEFINE_integer("ignore_label", 255, "folder/tfds: void label.")
flags.DEFINE_integer("num_val", 50, "shapes: number of validation images.")
flags.DEFINE_integer("seed", 0, "shapes: data seed.")
flags.DEFINE_integer("max_images", 0, "Evaluate only the first N images (0: all).")
flags.DEFINE_string("output", "", "JSON output path (default: <model>.eval.json).")
FLAGS = flags.FLAGS


def _labels_for(model_path):
    """labels.json of the run the model comes from, or {}."""
    from keras_fcn import training as train

    directory = os.path.dirname(os.path.abspath(model_path))
    root = os.path.splitext(model_path)[0]
    for path in (root + ".labels.json", os.path.join(directory, "labels.json")):
        if os.path.isfile(path):
            return train.read_labels_json(path)
    return {}


def _image_size(flag, labels):
    from keras_fcn import training as train

    if flag == "native":
        return None
    if flag == "auto":
        size = (labels.get("preprocessing") or {}).get("image_size")
        return tuple(size) if size else None
    return train._parse_size(flag, "image_size")


def main(argv):
    del argv
    import keras

    from keras_fcn import data
    from keras_fcn import training as train

    labels = _labels_for(FLAGS.model)
    image_size = _image_size(FLAGS.image_size, labels)
    config = train.TrainConfig(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir or None,
        num_classes=FLAGS.num_classes or labels.get("num_classes"),
        ignore_label=labels.get("ignore_label", FLAGS.ignore_label),
        num_val=FLAGS.num_val, seed=FLAGS.seed, val_split=FLAGS.split)
    split = "val" if FLAGS.dataset in ("shapes", "sbd") or FLAGS.dataset.startswith("tfds:") \
        else FLAGS.split
    decoded, info, count = train.load_split(config, split)
    if FLAGS.max_images:
        decoded, count = decoded.take(FLAGS.max_images), min(count, FLAGS.max_images)
    if image_size:
        decoded = decoded.map(lambda i, m: train.resize_pair(i, m, image_size, resize_mask=False))
    dataset = data.prepare_dataset(decoded, batch_size=1, ignore_label=info.ignore_label,
                                   mean_rgb=info.mean_rgb)
    model = keras.models.load_model(FLAGS.model, compile=False)
    print(f"Evaluating {FLAGS.model} on {info.name} {split} ({count} images, "
          f"{'native size' if not image_size else f'resized to {image_size[0]}x{image_size[1]}'}"
          f"{', flip TTA' if FLAGS.flip else ''})")
    results = train.evaluate_model(model, dataset, num_classes=info.num_classes,
                                   ignore_label=info.ignore_label, flip=FLAGS.flip)
    results.update({"model": os.path.abspath(FLAGS.model), "dataset": info.name, "split": split,
                    "image_size": list(image_size) if image_size else None, "flip": FLAGS.flip,
                    "class_names": list(info.class_names)})
    print(train.format_results(results, info.class_names))
    output = FLAGS.output or os.path.splitext(FLAGS.model)[0] + ".eval.json"
    with open(output, "w", encoding="utf-8") as f:
        json.dump(train._jsonable(results), f, indent=1)
    print(f"Wrote {output}")


if __name__ == "__main__":
    app.run(main)
