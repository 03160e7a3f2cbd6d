r"""Video flicker under known camera motion: baseline, EMA smoothing, the consistency loss, both.

1. Clips made from CamVid val images by a smooth random camera path (pan, zoom, small rotation,
   sub-pixel steps; `keras_fcn.data.warp.camera_path`) whose flow is known exactly. Flicker is the
   fraction of pixels whose label changes between consecutive frames after moving the first by
   the flow (border pixels left out: `keras_fcn.inference.flow_flicker_rate`); mean IU is on the
   warped ground truth; the EMA lag is the share of moving pixels (flow >= 1 px) where the
   smoothed label is stale: it differs from the frame's own label and equals the label the
   previous frame had at that pixel.
2. The real consecutive labelled CamVid frames (val: drive 0016E5, 2 video frames apart;
   `--holdout 0006R0`: that drive, 30 video frames = 1 s apart; no known flow, so flicker is
   plain frame-to-frame and includes the true motion) and their mean IU.
3. A PNG of one clip's label strip over time (the middle row, moved back to the first frame's
   coordinates: a stable model draws vertical stripes), per model and smoothing.

Models: `--model` (baseline) and `--consistency_model` (trained with --temporal_consistency),
e.g. from `examples/train.py`. Run:

    python benchmarks/temporal.py --model runs/base/model.keras \
        --consistency_model runs/tc/model.keras [--camvid ../shared/data/camvid]

A weight sweep and the held-out drive (models trained with --holdout=0006R0, e.g. by
benchmarks/camvid_ablation.py; see benchmarks/results/temporal_sweep.md):

    python benchmarks/temporal.py --model runs/temporal/base/best.keras \
        --also tc1=runs/temporal/tc1/best.keras --also tc3=runs/temporal/tc3/best.keras \
        --holdout 0006R0 --clips 24 --sequence 24 --name temporal_sweep

Writes benchmarks/results/temporal.md, .json and temporal.png (or --name).
"""

import argparse
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import _outputs  # noqa: E402
from _outputs import camvid_found, refuse_to_overwrite, save_report  # noqa: E402

CAMVID_CLASSES, CAMVID_VOID = 11, 11


def _frame_size(text):
    """--size: ``H,W`` (or ``HxW``) -> (H, W)."""
    try:
        return _outputs.size_type(text.replace(",", "x"))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected H,W with positive sizes (e.g. 180,240). Received: {text!r}") from None


def parse_args():
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", default=_outputs.CAMVID_DIR)
    parser.add_argument("--model", required=True, help="Baseline .keras model.")
    parser.add_argument("--consistency_model", default=None,
                        help=".keras model trained with --temporal_consistency.")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=PATH",
                        help="More models to compare (e.g. a weight sweep: "
                             "tc3=runs/tc3/best.keras); repeatable.")
    parser.add_argument("--holdout", default="",
                        help="Take the frames from this CamVid drive (e.g. 0006R0, never trained "
                             "on with --holdout=0006R0), in time order, instead of val.txt.")
    parser.add_argument("--size", type=_frame_size, default="180,240",
                        help="H,W of the frames (training size).")
    parser.add_argument("--clips", type=_outputs.positive_int, default=6,
                        help="Synthetic clips.")
    parser.add_argument("--clip_frames", type=_outputs.positive_int, default=10)
    parser.add_argument("--sequence", type=_outputs.positive_int, default=12,
                        help="Real consecutive val frames.")
    parser.add_argument("--ema", type=float, default=0.5, help="EMA weight of the new frame.")
    parser.add_argument("--note", default="", help="Budget / machine note for the report.")
    _outputs.add_report_flags(parser, "temporal")
    return parser.parse_args()


def load_val(root, count, size, holdout=""):
    """The first ``count`` val frames and labels at ``size`` (H, W): of val.txt, or of the
    held-out drive ``holdout`` in time order (its frame names sort by frame number)."""
    from PIL import Image

    if holdout:
        from keras_fcn.datasets.camvid import camvid_pairs

        pairs = sorted(camvid_pairs(root, "val", holdout=holdout)[0])[:count]
    else:
        with open(os.path.join(root, "val.txt")) as f:
            pairs = [line.split() for line in f if line.strip()][:count]
    frames, labels = [], []
    for image_path, label_path in pairs:
        with Image.open(os.path.join(root, image_path)) as image:
            frames.append(np.asarray(image.convert("RGB").resize(size[::-1], Image.BILINEAR)))
        with Image.open(os.path.join(root, label_path)) as label:
            labels.append(np.asarray(label.resize(size[::-1], Image.NEAREST)))
    return frames, labels


def make_clip(image, label, seed, num_frames):
    """Frames, ground truth (void outside the source), step flows and masks, and the flows
    back to frame 0 (for the strip figure)."""
    import tensorflow as tf

    from keras_fcn.data import warp

    height, width = label.shape
    path = warp.camera_path(tf.constant([seed, 0], tf.int64), num_frames, height, width)
    flow, valid = warp.affine_flow(path, height, width)
    frames = warp.warp_images(np.repeat(image[None].astype("float32"), num_frames, 0), flow)
    truth = warp.warp_images(np.repeat(label[None, ..., None], num_frames, 0), flow, "nearest")
    truth = np.where(valid.numpy(), truth.numpy()[..., 0], CAMVID_VOID)
    step, step_valid = warp.step_flow(path, height, width)
    back, back_valid = warp.affine_flow(warp.invert(path), height, width)
    return {"frames": np.clip(np.round(frames.numpy()), 0, 255).astype("uint8"), "truth": truth,
            "flow": step.numpy(), "valid": step_valid.numpy(), "back": back.numpy(),
            "back_valid": back_valid.numpy()}


def mean_iu(predictions, truths):
    from keras_fcn import metrics

    confusion = sum(metrics.confusion_matrix(t, p, CAMVID_CLASSES, CAMVID_VOID)
                    for p, t in zip(predictions, truths))
    return float(metrics.metrics_from_confusion(confusion)["mean_iu"])


def variants(probabilities, alpha):
    """{"raw": labels, "ema": labels} of a clip's probabilities."""
    from keras_fcn import inference

    smoothed = inference.smooth_probabilities(probabilities, alpha)
    return {"raw": [p.argmax(-1) for p in probabilities],
            "ema": [p.argmax(-1) for p in smoothed]}


def stale_share(raw, smoothed, flows, valids):
    """Of the moving pixels (flow >= 1 px), the share where the smoothed label lags: it differs
    from the frame's own label and is the label the previous frame had at that pixel."""
    stale = moving = 0
    for t in range(1, len(raw)):
        move = valids[t - 1] & (np.hypot(*np.moveaxis(flows[t - 1], -1, 0)) >= 1.0)
        lagging = (smoothed[t] != raw[t]) & (smoothed[t] == raw[t - 1]) & move
        stale, moving = stale + int(lagging.sum()), moving + int(move.sum())
    return stale / moving if moving else 0.0


def strip(labels, clip):
    """The middle row of each frame's labels moved back to frame 0, stacked over time."""
    from keras_fcn.data import warp

    back = warp.warp_images(np.stack(labels)[..., None], clip["back"], "nearest").numpy()[..., 0]
    back = np.where(clip["back_valid"], back, CAMVID_VOID)
    return back[:, back.shape[1] // 2]


def study(model, clips, real_frames, real_labels, alpha):
    from keras_fcn import inference

    rows = {name: {"clip_changes": [], "clip_labels": [], "clip_truth": [], "stale": [],
                   "real_labels": None} for name in ("raw", "ema")}
    strips = {}
    for index, clip in enumerate(clips):
        probs = [inference.predict(model, f)[1] for f in clip["frames"]]
        for name, labels in variants(probs, alpha).items():
            row = rows[name]
            row["clip_changes"].append(inference.flow_flicker_rate(labels, clip["flow"],
                                                                   clip["valid"]))
            row["clip_labels"] += labels
            row["clip_truth"] += list(clip["truth"])
            if index == 0:
                strips[name] = strip(labels, clip)
            if name == "ema":
                row["stale"].append(stale_share(variants(probs, 1.0)["raw"], labels,
                                                clip["flow"], clip["valid"]))
    real_probs = [inference.predict(model, f)[1] for f in real_frames]
    result = {}
    for name, labels in variants(real_probs, alpha).items():
        row = rows[name]
        result[name] = {
            "clip_flicker": float(np.mean(row["clip_changes"])),
            "clip_mean_iu": mean_iu(row["clip_labels"], row["clip_truth"]),
            "real_flicker": inference.flicker_rate(labels),
            "real_mean_iu": mean_iu(labels, real_labels),
        }
        if row["stale"]:
            result[name]["ema_stale_moving"] = float(np.mean(row["stale"]))
    return result, strips


def save_strips(path, strips, palette):
    """One band per (model, smoothing): time runs down, 3x enlarged, a white gap between."""
    from keras_fcn import io
    from keras_fcn.inference import colorize

    bands = []
    for band in strips.values():
        rgb = np.repeat(np.repeat(colorize(band, palette), 3, 0), 2, 1)
        bands += [rgb, np.full((4, rgb.shape[1], 3), 255, "uint8")]
    io.save_png(path, np.concatenate(bands[:-1], 0))


def markdown(report):
    source = report.get("frames_from", "val")
    lines = ["# Video flicker under known camera motion", "",
             f"CPU: {report['cpu']}. {report['note']}", "",
             f"{report['clips']} synthetic clips of {report['clip_frames']} frames (CamVid "
             f"{source} images at {report['size']}, smooth random camera paths with known flow) "
             f"and {report['sequence']} real consecutive CamVid {source} frames. EMA weight "
             f"{report['ema']}. Relative figures are against the baseline without smoothing.", "",
             "| model | smoothing | clip flicker | vs baseline | clip mean IU | vs baseline | "
             "EMA stale (moving px) | real flicker | real mean IU |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = report["results"].get("baseline", {}).get("raw")
    for model, result in report["results"].items():
        for name, r in result.items():
            stale = f"{r['ema_stale_moving']:.4f}" if "ema_stale_moving" in r else "-"
            ratio = f"{r['clip_flicker'] / base['clip_flicker']:.2f}x" if base else "-"
            delta = f"{100 * (r['clip_mean_iu'] - base['clip_mean_iu']):+.1f}" if base else "-"
            lines.append(f"| {model} | {name} | {r['clip_flicker']:.4f} | {ratio} | "
                         f"{100 * r['clip_mean_iu']:.1f} | {delta} | {stale} | "
                         f"{r['real_flicker']:.4f} | {100 * r['real_mean_iu']:.1f} |")
    lines += ["", f"Figure: `{report.get('name', 'temporal')}.png`, the middle row of the first "
              "clip over time (down), moved back to the first frame: "
              + ", ".join(report["strips"]) + "."]
    return "\n".join(lines)


def main():
    args = parse_args()
    # --holdout pools train.txt and val.txt (keras_fcn.datasets.camvid_pairs)
    needs = ("train.txt", "val.txt") if args.holdout else ("val.txt",)
    if not camvid_found(args.camvid, "--camvid or set $KERAS_FCN_CAMVID", needs):
        return 0
    output = os.path.join(args.output_dir, args.name)
    refuse_to_overwrite(output, args.overwrite)
    import keras

    from keras_fcn.labels import ModelLabels
    try:
        from keras_fcn.runtime import cpu_info, describe
        cpu = describe(cpu_info())
    except ImportError:
        cpu = platform.processor() or platform.machine()
    print(f"CPU: {cpu}")
    size = args.size
    count = max(args.clips, args.sequence)
    frames, labels = load_val(args.camvid, count, size, args.holdout)
    clips = [make_clip(frames[i], labels[i], i, args.clip_frames) for i in range(args.clips)]
    models = {"baseline": args.model, "consistency": args.consistency_model}
    for item in args.also:
        name, _, path = item.partition("=")
        if not name or not path:
            sys.exit(f"--also takes NAME=PATH. Received: {item!r}")
        models[name] = path
    missing = [path for path in models.values() if path and not os.path.exists(path)]
    if missing:
        _outputs.fail(f"Model file(s) not found: {missing}")
    results, strips = {}, {}
    for name, path in models.items():
        if not path:
            continue
        model = keras.models.load_model(path, compile=False)
        results[name], model_strips = study(model, clips, frames[:args.sequence],
                                            labels[:args.sequence], args.ema)
        strips.update({f"{name} {k}": v for k, v in model_strips.items()})
        print(name, results[name], flush=True)
    labels_file = ModelLabels.for_model(args.model)
    palette = None if labels_file is None else np.asarray(labels_file.palette)
    os.makedirs(args.output_dir, exist_ok=True)
    save_strips(output + ".png", strips, palette)
    report = {"cpu": cpu, "note": args.note, "size": args.size, "clips": args.clips,
              "name": args.name, "frames_from": f"drive {args.holdout}" if args.holdout else "val",
              "clip_frames": args.clip_frames, "sequence": args.sequence, "ema": args.ema,
              "models": models, "results": results, "strips": list(strips)}
    save_report(args.output_dir, args.name, markdown(report), report)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
