"""Video-style inference: frames per second at 480x360 and label flicker with/without smoothing.

1. Frames per second of whole-frame ``keras_fcn.inference.predict`` (softmax and argmax
   included) at 480x360 (CamVid size), batch 1, for the VGG16 FCN-8s and the MobileNetV2
   FCN-8s. Weights do not change the time: random weights unless ``--model`` is given.
2. Flicker (fraction of pixels whose label changes between consecutive frames) on a run of
   consecutive CamVid val frames, raw and with the exponential moving average of
   probabilities (``TemporalSmoother``) for a few ``alpha``; pixel accuracy against the val
   labels alongside, so that smoothing that "freezes" the labels shows up. Without
   ``--model`` the model has random weights (score layers randomized so the labels are not
   all one class): the flicker figures then only show that the smoothing works, not what a
   trained model does.
3. Time of the guided-filter boundary refinement (``refine_boundaries``) per flicker frame.

Usage:
    python benchmarks/predict.py [--camvid ../shared/data/camvid] [--model camvid.keras]
        [--flicker_size 240x180] [--frames 5] [--sequence 12]

Writes benchmarks/results/predict.md and predict.json.
"""

import json
import os
import statistics
import timeit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import _outputs  # noqa: E402
from _outputs import add_output_dir, camvid_missing, cpu_line  # noqa: E402

HEIGHT, WIDTH = 360, 480
CAMVID_CLASSES = 11
CAMVID_VOID = 11


def parse_args():
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", default=_outputs.CAMVID_DIR)
    parser.add_argument("--model", default=None, help="Trained .keras model for the flicker "
                        "part (and its backbone's FPS row); random weights otherwise.")
    parser.add_argument("--frames", type=_outputs.positive_int, default=5,
                        help="Timed frames per model.")
    parser.add_argument("--sequence", type=_outputs.positive_int, default=12,
                        help="Consecutive val frames.")
    parser.add_argument("--alphas", default="0.7,0.5,0.3")
    parser.add_argument("--model_note", default=None,
                        help="How the --model was trained, printed with the figures.")
    parser.add_argument("--flicker_size", default=None,
                        help="WxH to resize the flicker frames to (the --model's training size).")
    parser.add_argument("--threads", type=_outputs.positive_int, default=2)
    add_output_dir(parser)
    parser.add_argument("--overwrite", action="store_true", help="Replace existing results.")
    args = parser.parse_args()
    if args.model and not os.path.isfile(args.model):
        parser.error(f"--model: expected a .keras file. Not found: {args.model!r}")
    return args


def random_scores(model, seed=0):
    """Gives the zero-initialized score layers random weights (labels vary across pixels)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.startswith("score") and layer.get_weights():
            kernel, bias = layer.get_weights()
            fan_in = int(np.prod(kernel.shape[:-1]))
            layer.set_weights([rng.normal(0, 1 / np.sqrt(fan_in), kernel.shape).astype("float32"),
                               np.zeros_like(bias)])
    return model


def build(backbone):
    """A CamVid-sized FCN-8s with random weights, or None (and why) if it cannot be built."""
    import keras_fcn

    try:
        model = keras_fcn.build_fcn8s(num_classes=CAMVID_CLASSES, weights=None,
                                      include_preprocessing=True, backbone=backbone)
    except (ImportError, ValueError, NotImplementedError) as e:
        return None, f"{type(e).__name__}: {e}"
    return random_scores(model), None


def time_predict(model, frame, repeats):
    from keras_fcn import inference

    inference.predict(model, frame)  # trace and warm up
    times = timeit.repeat(lambda: inference.predict(model, frame), number=1, repeat=repeats)
    median = statistics.median(times)
    return {"median_s": median, "fps": 1.0 / median, "times_s": times}


def camvid_sequence(root, count, size=None):
    """The first ``count`` val frames (consecutive in the drive) and their labels, resized
    to ``size`` = (w, h) if given (bilinear images, nearest labels)."""
    from PIL import Image

    with open(os.path.join(root, "val.txt")) as f:
        pairs = [line.split() for line in f if line.strip()][:count]
    frames, labels = [], []
    for image_path, label_path in pairs:
        with Image.open(os.path.join(root, image_path)) as image:
            image = image.convert("RGB")
            frames.append(np.asarray(image.resize(size, Image.BILINEAR) if size else image))
        with Image.open(os.path.join(root, label_path)) as label:
            labels.append(np.asarray(label.resize(size, Image.NEAREST) if size else label))
    return frames, labels, [p[0] for p in pairs]


def accuracy(predictions, labels):
    correct = total = 0
    for p, t in zip(predictions, labels):
        valid = t != CAMVID_VOID
        correct += int(np.count_nonzero((p == t) & valid))
        total += int(np.count_nonzero(valid))
    return correct / total


def flicker_study(model, frames, labels, alphas):
    from keras_fcn import inference

    probs = [inference.predict(model, f)[1] for f in frames]
    rows = [{"alpha": 1.0, "flicker": inference.flicker_rate([p.argmax(-1) for p in probs]),
             "pixel_accuracy": accuracy([p.argmax(-1) for p in probs], labels)}]
    for alpha in alphas:
        smoothed = [p.argmax(-1) for p in inference.smooth_probabilities(probs, alpha)]
        rows.append({"alpha": alpha, "flicker": inference.flicker_rate(smoothed),
                     "pixel_accuracy": accuracy(smoothed, labels)})
    return rows, probs


def time_refinement(frame, probs, repeats=3):
    from keras_fcn import inference

    return statistics.median(timeit.repeat(
        lambda: inference.refine_boundaries(frame, probs, radius=4, eps=1e-2),
        number=1, repeat=repeats))


def write_markdown(path, results):
    lines = ["# Inference benchmark (benchmarks/predict.py)", "",
             f"Machine: {results['machine']}; TensorFlow {results['tensorflow']}, "
             f"{results['threads']} threads, batch 1, {WIDTH}x{HEIGHT} frames, "
             "`keras_fcn.inference.predict` (softmax + argmax included), median of "
             f"{results['frames']} timed frames after one warm-up. Other jobs shared the 2 "
             "cores: compare rows of one run, not across days (1-minute load average "
             f"{results['load_average_start']:.1f} at the start, "
             f"{results['load_average_end']:.1f} at the end; 2 means both cores busy).", "",
             "| model | weights | median s/frame | frames/s |", "|---|---|---|---|"]
    for row in results["fps"]:
        if row.get("skipped"):
            lines.append(f"| {row['model']} | - | skipped: {row['skipped']} | |")
        else:
            lines.append(f"| {row['model']} | {row['weights']} | {row['median_s']:.3f} | "
                         f"{row['fps']:.2f} |")
    flicker = results.get("flicker")
    lines += ["", "## Flicker on consecutive CamVid val frames", ""]
    if flicker is None or flicker.get("skipped"):
        lines.append(f"Skipped: {(flicker or {}).get('skipped', 'not run')}")
    else:
        lines += [f"Model: {flicker['model']} ({flicker['weights']}); {flicker['num_frames']} "
                  f"frames {flicker['first']} .. {flicker['last']} at {flicker['size']}. "
                  "Flicker = fraction of pixels whose label changes between consecutive "
                  "frames; alpha = weight of the current frame in the moving average of "
                  "probabilities (1 = no smoothing).", ""]
        if flicker["weights"].startswith("random"):
            lines += ["**Random weights**: these figures show that the smoothing lowers "
                      "flicker, not what a trained model does; rerun with `--model`.", ""]
        lines += ["| alpha | flicker | pixel accuracy |", "|---|---|---|"]
        for row in flicker["rows"]:
            lines.append(f"| {row['alpha']:.2f} | {row['flicker']:.4f} | "
                         f"{row['pixel_accuracy']:.4f} |")
        lines += ["", f"Guided-filter refinement (`refine_boundaries`, radius 4, colour guide, "
                  f"{CAMVID_CLASSES} classes) at {flicker['size']}: "
                  f"{flicker['refine_s']:.3f} s per frame (numpy)."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    args = parse_args()
    _outputs.refuse_to_overwrite(os.path.join(args.output_dir, "predict"), args.overwrite)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    import keras_fcn.models.mobilenet_v2  # noqa: F401  (registers PadToMultiple for load_model)

    results = {"machine": f"{cpu_line()}, {os.cpu_count()} cores",
               "tensorflow": tf.__version__, "threads": args.threads, "frames": args.frames,
               "load_average_start": os.getloadavg()[0], "fps": []}
    frame = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3)).astype("uint8")
    trained = keras.models.load_model(args.model, compile=False) if args.model else None
    models = {}
    for backbone in ("vgg16", "mobilenet_v2"):
        model, why = build(backbone)
        name = f"FCN-8s {backbone}"
        if model is None:
            results["fps"].append({"model": name, "skipped": why})
            print(f"{name}: skipped ({why})")
            continue
        models[backbone] = model
        row = {"model": name, "weights": "random", **time_predict(model, frame, args.frames)}
        results["fps"].append(row)
        print(f"{name}: {row['median_s']:.3f} s/frame, {row['fps']:.2f} fps")
    if trained is not None:
        row = {"model": f"{trained.name} (--model)", "weights": args.model_note or args.model,
               **time_predict(trained, frame, args.frames)}
        results["fps"].append(row)

    camvid = os.path.abspath(args.camvid)
    skipped = camvid_missing(camvid, "--camvid", needs=("val.txt",))
    if skipped:
        print(skipped)
        results["flicker"] = {"skipped": skipped}
    else:
        model = trained or models.get("mobilenet_v2") or models["vgg16"]
        weights = (args.model_note or args.model) if trained is not None else \
            "random (score layers randomized)"
        size = tuple(int(v) for v in args.flicker_size.split("x")) if args.flicker_size else None
        frames, labels, names = camvid_sequence(camvid, args.sequence, size)
        alphas = [float(a) for a in args.alphas.split(",")]
        rows, probs = flicker_study(model, frames, labels, alphas)
        results["flicker"] = {"model": model.name, "weights": weights, "num_frames": len(frames),
                              "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
                              "first": names[0], "last": names[-1], "rows": rows,
                              "refine_s": time_refinement(frames[0], probs[0])}
        for row in rows:
            print(f"alpha {row['alpha']:.2f}: flicker {row['flicker']:.4f}, "
                  f"pixel accuracy {row['pixel_accuracy']:.4f}")
    results["load_average_end"] = os.getloadavg()[0]
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "predict.json"), "w") as f:
        json.dump(results, f, indent=2)
    write_markdown(os.path.join(args.output_dir, "predict.md"), results)
    print(f"wrote {args.output_dir}/predict.md and predict.json")


if __name__ == "__main__":
    main()
