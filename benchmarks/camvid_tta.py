r"""Issue 16: which test-time scales and flips help a CamVid model on a drive it never saw.

Evaluates saved CamVid models (``.keras``) on the held-out drive 0006R0 and on the usual
same-drive `val` (drive 0016E5) with several test-time modes: single scales (the image resized
by the factor, the softmax resized back to the 360x480 labels), multi-scale averages, each
with and without the left-right flip. Beside each figure, the CPU seconds per frame the mode
costs (process CPU time, all threads), so the gain can be weighed against the price on a
phone. All modes of a model run in one process, one after another.

Why scales above 1: the recipe trains on random crops of the images scaled by a factor drawn
uniformly from 0.5-2 (mean 1.25), so the model has seen objects larger, on average, than they
are in an unscaled frame, and thin classes (Pole, SignSymbol, Fence) get more output pixels
at a larger scale.

Usage:
    python benchmarks/camvid_tta.py --data_dir=../shared/data/camvid \
        --models=runs/camvid_mnv2_1h/best.keras[,more.keras] [--modes=1,1.25,1.5,1+1.5+2]

Writes benchmarks/results/camvid_tta.md and .json (or --name).
"""

import os
import time

# TensorFlow's C++ start-up messages are not our output (a value set by the user wins)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
HOLDOUT = "0006R0"
# modes: scale sets, '+' between the scales of one multi-scale mode
MODES = "1,1.25,1.5,2,0.75+1+1.25,1+1.25+1.5,1+1.5+2"


def parse_modes(text):
    """'1.5,1+1.5+2' -> [(1.0,), (1.5,), (1.0, 1.5, 2.0)]: scale 1, the reference of the
    report's "vs scale 1" column, comes first even when not asked for; a ValueError names a
    bad mode."""
    from keras_fcn.training.evaluation import check_scales

    modes = [(1.0,)]
    for item in text.split(","):
        try:
            scales = check_scales(float(s) for s in item.split("+"))
        except ValueError:
            raise ValueError(f"--modes: {item!r} is not a positive scale or '+'-joined "
                             "positive scales (e.g. 1.5 or 1+1.5+2)") from None
        if scales not in modes:
            modes.append(scales)
    return modes


def splits(data_dir):
    """{'heldout': (dataset, info), 'val': (dataset, info)}: batches of one full frame."""
    from keras_fcn import data, datasets

    out = {}
    for name, holdout in (("heldout", HOLDOUT), ("val", None)):
        decoded, info, _ = datasets.load_split("camvid", "val", data_dir=data_dir,
                                               holdout=holdout)
        out[name] = (data.prepare_dataset(decoded, batch_size=1, ignore_label=info.ignore_label,
                                          mean_rgb=info.mean_rgb).cache(), info)
    return out


def measure(model, prepared, scales, flip):
    """One evaluation: (results, CPU seconds per frame)."""
    from keras_fcn import training

    dataset, info = prepared
    start = time.process_time()
    results = training.evaluate_model(model, dataset, num_classes=info.num_classes,
                                      ignore_label=info.ignore_label, flip=flip, scales=scales,
                                      verbose=0)
    results["class_names"] = list(info.class_names)
    return results, (time.process_time() - start) / results["num_images"]


def label(scales, flip):
    return "+".join(f"{s:g}" for s in scales) + (" flip" if flip else "")


def report(rows, cpu, models):
    import _outputs
    lines = ["# CamVid test-time scales and flips on a held-out drive (0006R0)", "",
             f"Written by `benchmarks/camvid_tta.py` on {time.strftime('%Y-%m-%d %H:%M')}. "
             f"CPU: {cpu}. Mean IU (%) at the 360x480 labels on the held-out drive 0006R0 "
             "(101 frames, never trained on) and the same-drive `val` (101 frames of 0016E5); "
             "CPU-s/frame: process CPU time of the held-out evaluation per frame (includes "
             "the metric). Scale s: the image resized by s, the softmax resized back.", ""]
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        base = next(r for r in mine if r["mode"] == "1")
        lines += [f"`{model}`:", "",
                  "| mode | held-out mean IU | vs scale 1 | same-drive val | gap | CPU-s/frame |",
                  "|---|---|---|---|---|---|"]
        for r in mine:
            held, same = 100 * r["heldout"]["mean_iu"], 100 * r["val"]["mean_iu"]
            delta = held - 100 * base["heldout"]["mean_iu"]
            lines.append(f"| {r['mode']} | {held:.1f} | {delta:+.1f} | {same:.1f} | "
                         f"{same - held:.1f} | {r['cpu_seconds_per_frame']:.2f} |")
        lines += ["", "Per-class IU (%) on the held-out drive:", ""]
        lines += _outputs.per_class_table("mode", mine[0]["heldout"]["class_names"],
                                          [(r["mode"], r["heldout"]["per_class_iu"])
                                           for r in mine])
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    import _outputs
    parser = _outputs.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=_outputs.CAMVID_DIR)
    parser.add_argument("--models", required=True, help="Comma-separated .keras files.")
    parser.add_argument("--modes", default=MODES, help="Comma-separated scale sets, the "
                        "scales of a multi-scale mode joined by '+'; each runs with and "
                        "without the flip (scale 1, the reference, always runs).")
    _outputs.add_report_flags(parser, "camvid_tta")
    args = parser.parse_args(argv)
    if not _outputs.camvid_found(args.data_dir, "--data_dir", needs=("train.txt", "val.txt")):
        return
    models = [m for m in args.models.split(",") if m]
    missing = [m for m in models if not os.path.isfile(m)]
    if missing or not models:
        parser.error(f"--models: expected .keras files. Not found: {missing or args.models!r}")
    try:
        modes = parse_modes(args.modes)
    except ValueError as error:
        parser.error(str(error))
    _outputs.refuse_to_overwrite(os.path.join(args.output_dir, args.name), args.overwrite)

    import keras

    from keras_fcn import runtime  # importing keras_fcn registers its layers for loading

    cpu = runtime.describe(runtime.cpu_info())
    print(f"CPU: {cpu}", flush=True)
    data = splits(args.data_dir)
    rows = []
    for path in models:
        model = keras.models.load_model(path, compile=False)
        for scales in modes:
            for flip in (False, True):
                row = {"model": path, "mode": label(scales, flip), "scales": scales,
                       "flip": flip}
                row["heldout"], row["cpu_seconds_per_frame"] = measure(
                    model, data["heldout"], scales, flip)
                row["val"], _ = measure(model, data["val"], scales, flip)
                rows.append(row)
                print(f"{path} {row['mode']}: held-out {100 * row['heldout']['mean_iu']:.1f}, "
                      f"val {100 * row['val']['mean_iu']:.1f}, "
                      f"{row['cpu_seconds_per_frame']:.2f} CPU-s/frame", flush=True)
    markdown = report(rows, cpu, models)
    print(markdown)
    _outputs.save_report(args.output_dir, args.name, markdown, {"cpu": cpu, "rows": rows})


if __name__ == "__main__":
    main()
