"""The paper's Table 1 comparison on data we have: FCN-32s on the AlexNet, VGG16 and GoogLeNet
trunks, each trained from random init on CamVid for the same wall-clock budget.

Every run: CamVid train at 180x240 (images resized; val scored at full 360x480 labels), batch 4,
Adam lr 1e-3, median-frequency class weights, flips, `--precision=auto` (the fastest stable mode
of the CPU, keras_fcn.runtime), the paper's widths. The CPU model, its ISA flags and the load
are written beside the figures; compare runs of one table only.

Usage:
    python benchmarks/trunks_camvid.py [--camvid ../shared/data/camvid] [--minutes 5]
        [--trunks alexnet,vgg16,googlenet] [--runs_dir /tmp/trunks_camvid]

Writes benchmarks/results/trunks_camvid.md and .json.
"""

import datetime
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _outputs  # noqa: E402
from _outputs import (  # noqa: E402
    add_runs_dir,
    camvid_found,
    refuse_to_overwrite,
    save_report,
)

HERE = os.path.dirname(os.path.abspath(__file__))

# the backbones keras_fcn builds an FCN-32s on (keras_fcn.models.build_fcn)
TRUNKS = ("alexnet", "vgg16", "googlenet", "mobilenet_v2", "resnet50", "resnet101")


def parse_args():
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", default=_outputs.CAMVID_DIR)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--trunks", default="alexnet,vgg16,googlenet")
    add_runs_dir(parser, "/tmp/trunks_camvid")
    _outputs.add_report_flags(parser, "trunks_camvid")
    args = parser.parse_args()
    trunks = [t for t in args.trunks.split(",") if t]
    unknown = [t for t in trunks if t not in TRUNKS]
    if unknown or not trunks or args.minutes <= 0:
        parser.error(f"--trunks: expected some of {', '.join(TRUNKS)}; --minutes > 0. "
                     f"Received: --trunks={args.trunks!r} --minutes={args.minutes}")
    return args


def train(trunk, args):
    """Trains FCN-32s on `trunk` for the budget; returns the row of the table."""
    from keras_fcn import training

    config = training.TrainConfig().replace(
        dataset="camvid", data_dir=args.camvid, model="fcn32s", backbone=trunk,
        weights="none", image_size=(180, 240), batch_size=4, optimizer="adam",
        learning_rate=1e-3, weight_decay=1e-4, class_weights="median", flip=True,
        precision="auto", epochs=1000, max_minutes_per_stage=args.minutes, export=False,
        output_dir=os.path.join(args.runs_dir, trunk), overwrite=True, verbose=2)
    start, load = time.time(), os.getloadavg()[0]
    result = training.run(config)
    report = list(result["reports"].values())[-1]
    final = result["final"] or {}
    return {"trunk": trunk, "epochs": len(report["history"]),
            "minutes": round((time.time() - start) / 60, 1),
            "mean_iu": None if not final else round(100 * final["mean_iu"], 1),
            "pixel_accuracy": None if not final else round(100 * final["pixel_accuracy"], 1),
            "load": [round(load, 1), round(os.getloadavg()[0], 1)]}


def main():
    args = parse_args()
    if not camvid_found(args.camvid, "--camvid or set $KERAS_FCN_CAMVID",
                        needs=("train.txt", "val.txt")):
        return
    refuse_to_overwrite(os.path.join(args.output_dir, args.name), args.overwrite)
    from keras_fcn import runtime

    info = runtime.cpu_info()
    rows = [train(trunk, args) for trunk in args.trunks.split(",")]
    lines = [f"# FCN-32s trunks on CamVid, {args.minutes:g} minutes each "
             f"({datetime.date.today()})", "",
             f"CPU: {runtime.describe(info)}; 2 threads; random init, 180x240, batch 4, Adam, "
             "median-frequency weights, precision auto; mean IU on the 101 val images at "
             "full label resolution.", "",
             "| trunk | epochs in the budget | wall minutes | val mean IU | val pixel acc | "
             "load (start, end) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['trunk']} | {r['epochs']} | {r['minutes']} | {r['mean_iu']} | "
              f"{r['pixel_accuracy']} | {r['load'][0]}, {r['load'][1]} |" for r in rows]
    report = "\n".join(lines) + "\n"
    print(report)
    save_report(args.output_dir, args.name, report,
                {"cpu": info, "minutes": args.minutes, "rows": rows})


if __name__ == "__main__":
    main()
