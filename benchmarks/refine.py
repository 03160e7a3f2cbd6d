"""CamVid val mean IU with and without the edge-aware boundary refinement.

The model predicts at its training resolution (``--input_size``); the class probabilities are
resized bilinearly to the full 360x480 labels, then optionally refined with
``keras_fcn.refine_boundaries`` (a colour guided filter guided by the full-resolution image).
Every configuration is scored on the same probabilities, so the differences are the
refinement's alone.

Usage:
    python benchmarks/refine.py --model runs/camvid/fcn8s/model.keras \
        [--camvid ../shared/data/camvid] [--input_size 180x240]

Writes benchmarks/results/refine.md and .json.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import _outputs  # noqa: E402
from _outputs import add_output_dir, camvid_found, cpu_line, save_report  # noqa: E402

CONFIGS = (("none", None), ("r2 eps1e-2", (2, 1e-2)), ("r4 eps1e-2", (4, 1e-2)),
           ("r8 eps1e-2", (8, 1e-2)), ("r4 eps1e-3", (4, 1e-3)))


def parse_args():
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--camvid", default=_outputs.CAMVID_DIR)
    parser.add_argument("--input_size", type=_outputs.size_type, default=(180, 240))
    parser.add_argument("--num_images", type=int, default=0, help="0: all val images")
    add_output_dir(parser)
    parser.add_argument("--overwrite", action="store_true", help="Replace existing results.")
    args = parser.parse_args()
    if args.num_images < 0:
        parser.error(f"--num_images must be 0 (all) or more. Received: {args.num_images}")
    if not os.path.isfile(args.model):
        parser.error(f"--model: expected a .keras file. Not found: {args.model!r}")
    return args


def main():
    args = parse_args()
    if not camvid_found(args.camvid, "--camvid", needs=("val.txt",)):
        return
    _outputs.refuse_to_overwrite(os.path.join(args.output_dir, "refine"), args.overwrite)
    import keras
    import tensorflow as tf
    from PIL import Image

    import keras_fcn
    from keras_fcn.inference.forward import forward_batches
    from keras_fcn.metrics import confusion_matrix, segmentation_metrics

    pairs, info = keras_fcn.camvid_pairs(args.camvid, "val")
    pairs = pairs[: args.num_images] if args.num_images else pairs
    height, width = args.input_size
    model = keras.models.load_model(args.model, compile=False)
    confusions = {name: np.zeros((info.num_classes,) * 2, "int64") for name, _ in CONFIGS}
    seconds = {name: 0.0 for name, _ in CONFIGS}
    progress = keras.utils.Progbar(len(pairs))
    for image_path, mask_path in pairs:
        image = np.asarray(Image.open(image_path).convert("RGB"))
        mask = np.asarray(Image.open(mask_path))
        small = tf.image.resize(image[None].astype("float32"), (height, width)).numpy()
        probs = tf.image.resize(forward_batches(model, small), mask.shape[:2])[0].numpy()
        for name, setting in CONFIGS:
            start = time.perf_counter()
            refined = probs if setting is None else keras_fcn.refine_boundaries(
                image, probs, radius=setting[0], eps=setting[1])
            seconds[name] += time.perf_counter() - start
            confusions[name] += confusion_matrix(mask, refined.argmax(-1), info.num_classes,
                                                 info.ignore_label)
        progress.add(1)
    results = {name: {**{k: float(v) for k, v in segmentation_metrics(confusions[name]).items()
                         if k != "per_class_iu"},
                      "seconds_per_image": seconds[name] / len(pairs)}
               for name, _ in CONFIGS}
    base = results["none"]["mean_iu"]
    lines = [f"# Boundary refinement on CamVid val ({len(pairs)} images, labels 360x480)", "",
             f"CPU {cpu_line()}, {time.strftime('%Y-%m-%d')}. "
             f"Model: `{args.model}` (input {height}x{width}); probabilities resized bilinearly "
             "to 360x480, then refined with `keras_fcn.refine_boundaries` (colour guided "
             "filter) or not.", "",
             "| refinement | pixel acc | mean IU | delta mean IU (points) | s / image |",
             "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {100 * r['pixel_accuracy']:.2f} | {100 * r['mean_iu']:.2f} | "
                     f"{100 * (r['mean_iu'] - base):+.2f} | {r['seconds_per_image']:.3f} |")
    report = "\n".join(lines)
    print(report)
    save_report(args.output_dir, "refine", report,
                {"model": args.model, "input_size": f"{height}x{width}", "images": len(pairs),
                 "results": results})


if __name__ == "__main__":
    main()
