"""Measures the input pipeline (images/second) on CamVid and on a generated VOC layout.

Usage:
    python benchmarks/input_pipeline.py [--camvid_dir ../shared/data/camvid] [--images 300]

Each configuration is warmed up (one full epoch when the decoded images are cached, so the
cache is full) and then timed over `--images` images. Results go to
benchmarks/results/input_pipeline.{md,json}.
"""

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_fcn import data, datasets, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")

CAMVID_AUG = dict(scale_range=(0.75, 1.25), crop_size=(360, 480), flip=True, color_jitter=True)
VOC_AUG = dict(scale_range=(0.5, 2.0), crop_size=(320, 320), flip=True, color_jitter=True)


def _parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid_dir", default=os.path.join(REPO, "..", "shared", "data",
                                                             "camvid"))
    parser.add_argument("--images", type=int, default=300, help="images timed per config")
    parser.add_argument("--voc_images", type=int, default=100, help="generated VOC pairs")
    parser.add_argument("--no_save", action="store_true", help="print only")
    return parser.parse_args()


def images_per_second(ds, num_images, warmup_images):
    """Iterates `ds` (repeated) for a warm-up, then times `num_images` images."""
    iterator = iter(ds.repeat())
    seen = 0
    while seen < warmup_images:
        seen += int(next(iterator)[0].shape[0])
    seen, start = 0, time.perf_counter()
    while seen < num_images:
        seen += int(next(iterator)[0].shape[0])
    return seen / (time.perf_counter() - start)


def _configs(aug):
    """(name, make_dataset kwargs) of the variants tried."""
    return [
        ("decode only, batch 1, native size", dict(batch_size=1)),
        ("augment, batch 8", dict(batch_size=8, **aug)),
        ("augment, batch 8, deterministic order", dict(batch_size=8, deterministic=True, **aug)),
        ("augment, batch 8, cache decoded", dict(batch_size=8, cache=True, **aug)),
        ("augment, batch 1, cache decoded", dict(batch_size=1, cache=True, **aug)),
    ]


def run_dataset(name, pairs, info, aug, num_images):
    rows = []
    for label, kwargs in _configs(aug):
        kwargs.setdefault("deterministic", False)
        ds = data.make_dataset(pairs, **info.dataset_kwargs(), shuffle=True, seed=0,
                               validate=False, **kwargs)
        warmup = len(pairs) + 16 if kwargs.get("cache") else 32
        rate = images_per_second(ds, num_images, warmup)
        rows.append({"dataset": name, "config": label, "images_per_second": round(rate, 1),
                     "images": len(pairs), "kwargs": {k: str(v) for k, v in kwargs.items()}})
        print(f"{name:8s} {label:42s} {rate:8.1f} img/s", flush=True)
    return rows


def validation_rate(pairs, info):
    start = time.perf_counter()
    data.validate_pairs(pairs, **{k: v for k, v in info.dataset_kwargs().items()
                                  if k != "mean_rgb"}, verbose=False)
    return len(pairs) / (time.perf_counter() - start)


def write_fake_voc(root, count, size=(375, 500)):
    """Writes a VOCdevkit/VOC2012 of `count` shapes scenes: JPEG images, palette masks."""
    voc = os.path.join(root, "VOCdevkit", "VOC2012")
    for sub in ("JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation")):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    flat_palette = [c for colour in datasets.voc_palette() for c in colour]
    ids = [f"2012_{i:06d}" for i in range(count)]
    for i, image_id in enumerate(ids):
        image, mask = synthetic.shapes_example(i, size=size[1], seed=1)
        image, mask = image[: size[0]], mask[: size[0]]
        mask = np.where(mask == 255, 255, mask * 5 % 21).astype(np.uint8)
        Image.fromarray(image).save(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"),
                                    quality=90)
        png = Image.fromarray(mask, mode="P")
        png.putpalette(flat_palette)
        png.save(os.path.join(voc, "SegmentationClass", f"{image_id}.png"))
    with open(os.path.join(voc, "ImageSets", "Segmentation", "train.txt"), "w") as file:
        file.write("".join(f"{i}\n" for i in ids))
    return root


def write_results(rows, extra):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "input_pipeline.json"), "w") as file:
        json.dump({"machine": extra, "results": rows}, file, indent=2)
    lines = [
        "# Input pipeline throughput",
        "",
        f"Machine: {extra['cpus']} CPU cores, TensorFlow {extra['tensorflow']}, "
        f"Python {extra['python']}. Timed over {extra['timed_images']} images after a warm-up "
        "(a full epoch for the cached configs). Shared machine: other jobs were running.",
        "",
        "CamVid augmentation: scale 0.75-1.25, random crop 360x480, flip, colour jitter. "
        "VOC (generated, 500x375 JPEG + palette PNG): scale 0.5-2.0, crop 320x320, flip, "
        "jitter.",
        "",
        "| data set | configuration | images/s |",
        "|---|---|---|",
    ]
    lines += [f"| {r['dataset']} | {r['config']} | {r['images_per_second']} |" for r in rows]
    lines += ["", f"Up-front `validate_pairs` (PIL headers + mask values): "
              + ", ".join(f"{k}: {v:.0f} pairs/s" for k, v in extra["validate_rate"].items()),
              ""]
    with open(os.path.join(RESULTS, "input_pipeline.md"), "w") as file:
        file.write("\n".join(lines))


def main():
    args = _parse_args()
    rows, validate_rate = [], {}
    camvid_dir = os.path.abspath(args.camvid_dir)
    if os.path.isfile(os.path.join(camvid_dir, "train.txt")):
        pairs, info = datasets.camvid_pairs(camvid_dir, "train")
        validate_rate["camvid"] = validation_rate(pairs, info)
        rows += run_dataset("camvid", pairs, info, CAMVID_AUG, args.images)
    else:
        print(f"CamVid not found at {camvid_dir}: skipped")
    with tempfile.TemporaryDirectory() as tmp:
        pairs, info = datasets.voc_pairs(write_fake_voc(tmp, args.voc_images), "train")
        validate_rate["voc (generated)"] = validation_rate(pairs, info)
        rows += run_dataset("voc", pairs, info, VOC_AUG, args.images)
    extra = {"cpus": os.cpu_count(), "tensorflow": tf.__version__,
             "python": platform.python_version(), "timed_images": args.images,
             "validate_rate": validate_rate}
    if not args.no_save:
        write_results(rows, extra)
        print(f"Saved {RESULTS}/input_pipeline.md and .json")


if __name__ == "__main__":
    main()
