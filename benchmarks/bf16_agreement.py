"""bfloat16 against float32 on CamVid: label agreement of trained models, and training speed.

Two questions of issue 13, answered on the CPU this runs on (printed with the figures):

1. Does ``predict(model, images, precision="bfloat16")`` give the labels of float32? With a
   model trained on CamVid (``--model``, or the float32 runs trained here), every CamVid val
   image is predicted in both precisions: the share of pixels whose label agrees (all pixels,
   and the pixels where the float32 top-2 softmax gap is at least 0.1), and the mean IU of
   each precision against the ground truth. Target: at least 99.5% agreement.
2. Which precision trains fastest, and does it reach the same mean IU in the same budget?
   Each training run (``--trainings``) gets the same wall-clock budget (``--minutes``) and
   runs in its own process (``keras_fcn.training.run``, random init, 180x240, Adam): epochs
   per minute of training, epochs per CPU-minute of the whole run, and the final val mean IU.
   Runs: the MobileNetV2 FCN-8s in float32 (the default) and bfloat16; a narrow VGG16
   FCN-8s (widths 16,32,64,128,128, fc 256) in float32 without XLA (the default on a CPU),
   float32 with XLA (the default of issue 13's first rule) and bfloat16.

CamVid comes from ``--camvid`` or ``$KERAS_FCN_CAMVID`` (default ../shared/data/camvid); the
benchmark says so and stops when it is absent. Runs go to ``--runs_dir`` (never the repo).

Usage:
    python benchmarks/bf16_agreement.py [--minutes 8] [--trainings mnv2_f32,vgg_bf16,...]
        [--model trained.keras ...] [--num_images 0] [--overwrite]

Writes benchmarks/results/bf16_agreement.md and .json.
"""

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import _outputs  # noqa: E402
from _outputs import (  # noqa: E402
    add_runs_dir,
    camvid_found,
    refuse_to_overwrite,
    save_report,
)

HERE = os.path.dirname(os.path.abspath(__file__))
NARROW_VGG = {"backbone": "vgg16", "widths": (16, 32, 64, 128, 128), "fc_units": 256}
MOBILENET = {"backbone": "mobilenet_v2"}
# name -> (model settings, precision, jit_compile (None: the library's default), note)
TRAININGS = {
    "mnv2_f32": (MOBILENET, "float32", None, "float32, the default (no XLA)"),
    "mnv2_bf16": (MOBILENET, "bfloat16", None, "bfloat16 (no XLA)"),
    "vgg_f32": (NARROW_VGG, "float32", None, "float32, the default (no XLA on a CPU)"),
    "vgg_f32_xla": (NARROW_VGG, "float32", True, "float32, XLA (the default until 60a927f)"),
    "vgg_bf16": (NARROW_VGG, "bfloat16", None, "bfloat16 (no XLA)"),
}
AGREEMENT_RUNS = ("mnv2_f32", "vgg_f32")  # the trained models whose labels are compared
TARGET = 99.5
# A quarter pass over the 367 CamVid train images per Keras epoch: the time budget is checked
# at epoch ends, so short epochs make it fair between fast and slow runs.
STEPS_PER_EPOCH, BATCH, TRAIN_IMAGES = 23, 4, 367


def parse_args(argv=None):
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", default=_outputs.CAMVID_DIR)
    parser.add_argument("--model", action="append", default=[],
                        help="A trained CamVid .keras model (repeatable); none: train them.")
    parser.add_argument("--trainings", default=None,
                        help=f"Comma-separated runs of {sorted(TRAININGS)}; default all of "
                        "them without --model, none with it.")
    parser.add_argument("--minutes", type=float, default=8.0, help="Budget per training run.")
    parser.add_argument("--size", type=_outputs.size_type, default=(180, 240),
                        help="HEIGHTxWIDTH of training and prediction.")
    parser.add_argument("--num_images", type=int, default=0, help="Val images (0: all).")
    add_runs_dir(parser, "/tmp/keras_fcn_bf16_agreement")
    _outputs.add_report_flags(parser, "bf16_agreement")
    parser.add_argument("--train_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trainings is None:
        args.trainings = "" if args.model else ",".join(TRAININGS)
    args.trainings = [t for t in args.trainings.split(",") if t]
    unknown = set(args.trainings) - set(TRAININGS)
    if unknown:
        parser.error(f"unknown trainings {sorted(unknown)}; choose from {sorted(TRAININGS)}")
    if args.num_images < 0 or args.minutes <= 0:
        parser.error("--num_images must be 0 (all) or more and --minutes positive. Received: "
                     f"--num_images={args.num_images} --minutes={args.minutes}")
    for path in args.model:
        if not os.path.isfile(path):
            parser.error(f"--model: expected a .keras file. Not found: {path!r}")
    return args


# ---------------------------------------------------------------- training (a worker each)


def train_config(name, args):
    from keras_fcn import training

    settings, precision, jit, _ = TRAININGS[name]
    return training.TrainConfig().replace(
        dataset="camvid", data_dir=args.camvid, model="fcn8s", weights="none", dropout=0.2,
        image_size=args.size, flip=True, optimizer="adam", learning_rate=1e-3,
        weight_decay=1e-4, loss_reduction="mean", class_weights="median", batch_size=BATCH,
        val_batch_size=4, steps_per_epoch=STEPS_PER_EPOCH, validation_steps=3, epochs=10_000,
        cache=True, seed=0,
        max_minutes_per_stage=args.minutes, precision=precision, jit_compile=jit,
        output_dir=os.path.join(args.runs_dir, name), overwrite=True, verbose="2", **settings)


def train_worker(args):
    """Trains one run; prints a JSON line with its figures."""
    from keras_fcn import training

    config = train_config(args.train_worker, args)
    result = training.run(config)
    report = list(result["reports"].values())[-1]
    history = report["history"]
    print(json.dumps({
        "epochs": len(history) * STEPS_PER_EPOCH * BATCH / TRAIN_IMAGES,
        # Steady state: the median time of a Keras epoch after the first (tracing, XLA).
        "steady_epoch_minutes": (
            statistics.median(e["seconds"] for e in history[1:]) * TRAIN_IMAGES
            / (STEPS_PER_EPOCH * BATCH) / 60 if len(history) > 1 else float("nan")),
        "fit_seconds": report["train_seconds_this_run"],
        "mean_iu": 100 * (result["final"] or {}).get("mean_iu", float("nan")),
        "status": report["status"], "process_cpu_seconds": time.process_time(),
        "model": os.path.join(result["run_dir"], "model.keras"),
        "config": {k: v for k, v in config.flat().items()
                   if k in ("backbone", "widths", "fc_units", "precision", "jit_compile",
                            "image_size", "batch_size", "learning_rate", "optimizer")},
    }), flush=True)


def run_training(name, args):
    """Runs ``name`` in a child process; returns its figures (or an error)."""
    command = [sys.executable, __file__, "--train_worker", name, "--camvid", args.camvid,
               "--minutes", str(args.minutes), "--size", "x".join(map(str, args.size)),
               "--runs_dir", args.runs_dir]
    loads = [os.getloadavg()[0]]
    start = time.time()
    process = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    loads.append(os.getloadavg()[0])
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode or not lines:
        tail = "\n".join(process.stdout.splitlines()[-5:])
        return {"error": f"exit {process.returncode}: {tail}"}
    figures = json.loads(lines[-1])
    figures.update(wall_seconds=round(time.time() - start, 1), loads=loads)
    figures["epochs_per_minute"] = figures["epochs"] / (figures["fit_seconds"] / 60)
    figures["epochs_per_cpu_minute"] = figures["epochs"] / (figures["process_cpu_seconds"] / 60)
    return figures


# ---------------------------------------------------------------- agreement


def camvid_val(root, size, count):
    """uint8 images (N, H, W, 3) and int32 masks (N, H, W) of CamVid val at ``size``."""
    from keras_fcn.datasets import camvid_pairs
    from keras_fcn.export.images import load_image, load_mask

    pairs, info = camvid_pairs(root, "val")
    pairs = pairs[:count] if count else pairs
    images = np.stack([load_image(image, size) for image, _ in pairs])
    masks = np.stack([load_mask(mask, size) for _, mask in pairs])
    return images, masks, info


def agreement(model_path, images, masks, info):
    """Agreement of bfloat16 labels with float32 ones, and the mean IU of each precision."""
    from keras_fcn.export import agreement_counts, load_model
    from keras_fcn.inference import predict
    from keras_fcn.metrics import confusion_matrix, segmentation_metrics

    model = load_model(model_path)
    row = {"model": model_path}
    outputs = {}
    for precision in ("float32", "bfloat16"):
        predict(model, images[:1], precision=precision)  # tracing and the bf16 copy
        start = time.perf_counter()
        labels, probs = predict(model, images, batch_size=4, precision=precision)
        row[f"{precision}_ms_per_image"] = 1000 * (time.perf_counter() - start) / len(images)
        confusion = confusion_matrix(masks, labels, info.num_classes, info.ignore_label)
        row[f"{precision}_mean_iu"] = 100 * segmentation_metrics(confusion)["mean_iu"]
        outputs[precision] = (labels, probs)
    # agreement_counts takes logits: the log of the float32 probabilities softmaxes back to them.
    log_probs = np.log(np.maximum(outputs["float32"][1], 1e-30))
    agree, pixels, confident_agree, confident = agreement_counts(log_probs,
                                                                 outputs["bfloat16"][0])
    row.update(agreement=100 * agree / pixels, confident_agreement=100 * confident_agree /
               max(confident, 1), confident_share=100 * confident / pixels, pixels=pixels,
               images=len(images))
    return row


# ---------------------------------------------------------------- report


def report_markdown(data):
    info = data["cpu_line"]
    lines = [f"# bfloat16 vs float32 on CamVid ({data['date']})", "",
             f"CPU: {info}; load average (1 min) {data['load'][0]:.1f}-{data['load'][1]:.1f}.",
             "", f"Training budget: {data['minutes']:g} wall-clock minutes per run, random "
             f"init, CamVid train at {data['size']}, Adam lr 1e-3, batch 4, median-frequency "
             "class weights; epochs are passes over the 367 train images (a Keras epoch is a "
             "quarter of one, with 12 val images), per wall-clock minute of `fit` and per "
             "CPU-minute of the whole run process (data decoding and the final evaluation "
             "included); minutes / epoch (steady) is the median after the first Keras epoch "
             "(no tracing or XLA compilation). The final mean IU is on the 101 val images. "
             "The machine is shared: epochs per minute move with the load (column load: the "
             "1-minute load average at the start and end of each run).", "",
             *([data["note"], ""] if data.get("note") else [])]
    if data["trainings"]:
        lines += ["| run | model | precision, XLA | epochs | epochs / min | epochs / CPU-min "
                  "| minutes / epoch (steady) | val mean IU | load |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in data["trainings"].items():
            settings, _, _, note = TRAININGS[name]
            model = "MobileNetV2 FCN-8s" if settings is MOBILENET else "narrow VGG16 FCN-8s"
            if "error" in r:
                lines.append(f"| {name} | {model} | {note} | failed: {r['error'][:200]} |"
                             " | | | | |")
                continue
            lines.append(f"| {name} | {model} | {note} | {r['epochs']:.2f} | "
                         f"{r['epochs_per_minute']:.2f} | {r['epochs_per_cpu_minute']:.2f} | "
                         f"{r['steady_epoch_minutes']:.2f} | {r['mean_iu']:.1f} | "
                         f"{min(r['loads']):.1f}-{max(r['loads']):.1f} |")
        lines.append("")
    if data["agreement"]:
        lines += ["Label agreement of `predict(model, images, precision=\"bfloat16\")` with "
                  "float32 (the FCN head stays float32, `keras_fcn.runtime.with_precision`); "
                  f"confident pixels: float32 top-2 softmax gap >= 0.1. Target {TARGET}%.", "",
                  "| model | images | agreement % | confident agreement % (share of pixels) | "
                  "mean IU float32 | mean IU bfloat16 | ms / image f32 | ms / image bf16 |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in data["agreement"]:
            model = os.path.join(*r["model"].split(os.sep)[-2:])  # run/model.keras
            lines.append(f"| {model} | {r['images']} | {r['agreement']:.2f} | "
                         f"{r['confident_agreement']:.2f} ({r['confident_share']:.1f}%) | "
                         f"{r['float32_mean_iu']:.1f} | {r['bfloat16_mean_iu']:.1f} | "
                         f"{r['float32_ms_per_image']:.0f} | {r['bfloat16_ms_per_image']:.0f} |")
    return "\n".join(lines)


def main():
    args = parse_args()
    if args.train_worker:
        return train_worker(args)
    if not camvid_found(args.camvid, "--camvid or set $KERAS_FCN_CAMVID",
                        needs=("train.txt", "val.txt")):
        return None
    refuse_to_overwrite(os.path.join(args.output_dir, args.name), args.overwrite)
    from keras_fcn import runtime

    cpu = runtime.cpu_info(gpu=False)
    print(f"CPU: {runtime.describe(cpu)}; load {os.getloadavg()[0]:.1f}", flush=True)
    load = [os.getloadavg()[0]] * 2
    trainings = {}
    for name in args.trainings:
        print(f"Training {name} for {args.minutes:g} min...", flush=True)
        trainings[name] = run_training(name, args)
        print(json.dumps({name: trainings[name]}), flush=True)
    models = args.model or [trainings[n]["model"] for n in AGREEMENT_RUNS
                            if "model" in trainings.get(n, {})]
    images, masks, info = camvid_val(args.camvid, args.size, args.num_images)
    rows = [agreement(path, images, masks, info) for path in models]
    for row in rows:
        print(json.dumps(row), flush=True)
    load = [min(load[0], os.getloadavg()[0]), max(load[1], os.getloadavg()[0])]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    data = {"date": str(datetime.date.today()), "cpu": cpu, "cpu_line": runtime.describe(cpu),
            "load": load, "minutes": args.minutes, "size": "x".join(map(str, args.size)),
            "trainings": trainings, "agreement": rows, "target": TARGET,
            "children_cpu_seconds": children.ru_utime + children.ru_stime}
    report = report_markdown(data)
    print(report)
    save_report(args.output_dir, args.name, report, data)
    return None


if __name__ == "__main__":
    main()
