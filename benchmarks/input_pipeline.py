"""Measures the input pipeline (images/s and CPU ms/image) on CamVid and a generated VOC layout.

Usage:
    python benchmarks/input_pipeline.py [--camvid_dir ../shared/data/camvid] [--images 240]
        [--rounds 2] [--legacy_rev f644ccd | --no_legacy]

Each configuration is warmed up (one full epoch when the decoded images are cached, so the
cache is full) and then timed over `--images` images, `--rounds` times; the median is
reported. Two figures per run:

- images/s: wall clock. Noisy on a shared machine: it depends on what else is running.
- CPU ms/image: `time.process_time()` (all threads of this process) per image: the work the
  pipeline does, much less sensitive to other jobs (spinning thread pools still count).

"before" runs `keras_fcn/data.py` as it was at git revision `--legacy_rev` (loaded with
`git show`, so the old code is not kept in the package); "after" is the installed package.
Both are interleaved round by round so that load changes hit both alike.
Results go to ``--output_dir`` (default benchmarks/results) as input_pipeline.{md,json};
existing ones are kept unless ``--overwrite``.
"""

import importlib.util
import os
import platform
import subprocess
import tempfile
import time

import numpy as np
import tensorflow as tf
from PIL import Image

import _outputs  # noqa: E402
from _outputs import camvid_found
from keras_fcn import data, datasets
from keras_fcn.labels import voc_palette
from keras_fcn.datasets import shapes as synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "input_pipeline"
GOAL_IMAGES_PER_SECOND = 100.0
LEGACY_REV = "f644ccd"  # last revision before the augmentation speed-ups

CAMVID_AUG = dict(scale_range=(0.75, 1.25), crop_size=(360, 480), flip=True, photometric=0.5)
VOC_AUG = dict(scale_range=(0.5, 2.0), crop_size=(320, 320), flip=True, photometric=0.5)
GOAL_CONFIGS = ("augment, batch 8", "augment, batch 8, validated up front",
                "augment, batch 8, cache decoded")


def _parse_args():
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid_dir", default=_outputs.CAMVID_DIR)
    parser.add_argument("--images", type=_outputs.positive_int, default=240,
                        help="images timed per run")
    parser.add_argument("--rounds", type=_outputs.positive_int, default=2,
                        help="timed runs per config (median)")
    parser.add_argument("--voc_images", type=_outputs.positive_int, default=100,
                        help="generated VOC pairs")
    parser.add_argument("--legacy_rev", default=LEGACY_REV,
                        help="git revision of keras_fcn/data.py timed as 'before'")
    parser.add_argument("--no_legacy", action="store_true", help="time the current code only")
    parser.add_argument("--no_save", action="store_true", help="print only")
    _outputs.add_output_dir(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace existing results")
    return parser.parse_args()


def load_legacy_data_module(rev):
    """Imports keras_fcn/data.py of git revision `rev` as a module, or returns None."""
    try:
        source = subprocess.run(["git", "-C", REPO, "show", f"{rev}:keras_fcn/data.py"],
                                check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"Cannot read keras_fcn/data.py at {rev}: {error}; 'before' skipped")
        return None
    path = os.path.join(tempfile.mkdtemp(), f"data_{rev}.py")
    with open(path, "w") as file:
        file.write(source)
    spec = importlib.util.spec_from_file_location(f"keras_fcn_data_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_dataset(ds, num_images, warmup_images):
    """Iterates `ds` (repeated) for a warm-up, then times `num_images` images.

    Returns (images per second, CPU milliseconds per image).
    """
    iterator = iter(ds.repeat())
    seen = 0
    while seen < warmup_images:
        seen += int(next(iterator)[0].shape[0])
    seen, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while seen < num_images:
        seen += int(next(iterator)[0].shape[0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return seen / wall, 1000.0 * cpu / seen


def _configs(aug):
    """(name, make_dataset kwargs) of the variants tried."""
    return [
        ("decode only, batch 1, native size", dict(batch_size=1)),
        ("augment, batch 8", dict(batch_size=8, **aug)),
        ("augment, batch 8, validated up front", dict(batch_size=8, validate=True, **aug)),
        ("augment, batch 8, deterministic order", dict(batch_size=8, deterministic=True, **aug)),
        ("augment, batch 8, cache decoded", dict(batch_size=8, cache=True, **aug)),
        ("crop + flip only, batch 8, cache decoded",
         dict(batch_size=8, cache=True, crop_size=aug["crop_size"], flip=True)),
        ("augment, batch 1, cache decoded", dict(batch_size=1, cache=True, **aug)),
    ]


def _for_module(module, kwargs):
    """The 0.1.0 code ("before") names its colour jitter `color_jitter` (on or off). The work
    per pixel is the same: the current code composes the hue turn into the same 3x3 map."""
    if module is data or "photometric" not in kwargs:
        return kwargs
    kwargs = dict(kwargs)
    kwargs["color_jitter"] = bool(kwargs.pop("photometric"))
    return kwargs


def run_dataset(name, pairs, info, aug, args, implementations):
    """Times every config with every implementation, interleaved; returns result rows."""
    rows = []
    for label, kwargs in _configs(aug):
        kwargs = {"validate": False, "deterministic": False, **kwargs}
        warmup = len(pairs) + 16 if kwargs.get("cache") else 32
        runs = {impl: [] for impl in implementations}
        for _ in range(args.rounds):
            for impl, module in implementations.items():
                ds = module.make_dataset(pairs, **info.dataset_kwargs(), shuffle=True, seed=0,
                                         **_for_module(module, kwargs))
                runs[impl].append(time_dataset(ds, args.images, warmup))
        for impl, measured in runs.items():
            rate = float(np.median([m[0] for m in measured]))
            cpu_ms = float(np.median([m[1] for m in measured]))
            rows.append({"dataset": name, "config": label, "code": impl,
                         "images_per_second": round(rate, 1), "cpu_ms_per_image": round(cpu_ms, 2),
                         "runs": [[round(r, 1), round(c, 2)] for r, c in measured],
                         "images": len(pairs),
                         "kwargs": {k: str(v) for k, v in kwargs.items()}})
            print(f"{name:7s} {label:42s} {impl:6s} {rate:8.1f} img/s {cpu_ms:7.2f} CPU ms/img",
                  flush=True)
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
    flat_palette = [c for colour in voc_palette() for c in colour]
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


def goal_lines(rows):
    """States the CamVid goal and whether the current code meets it."""
    current = {r["config"]: r for r in rows if r["dataset"] == "camvid" and r["code"] == "after"}
    if not current:
        return ["Goal (>= 100 images/s, full CamVid augmentation at 480x360, 2 cores): not "
                "measured (CamVid not found)."]
    lines = []
    for config in GOAL_CONFIGS:
        row = current.get(config)
        if row:
            met = "met" if row["images_per_second"] >= GOAL_IMAGES_PER_SECOND else "NOT met"
            lines.append(f"- {config}: {row['images_per_second']} images/s, "
                         f"{row['cpu_ms_per_image']} CPU ms/image: goal {met}")
    return [f"Goal: >= {GOAL_IMAGES_PER_SECOND:.0f} images/s for the full CamVid augmentation "
            "(scale, crop 360x480, flip, colour jitter) at 480x360 on this 2-core machine."] + lines


def _notes(rows):
    """Where the remaining CamVid cost is, from the measured CPU ms/image of the current code."""
    cpu = {r["config"]: r["cpu_ms_per_image"] for r in rows
           if r["dataset"] == "camvid" and r["code"] == "after"}
    keys = ("decode only, batch 1, native size", "augment, batch 8",
            "augment, batch 8, cache decoded")
    if not all(k in cpu for k in keys):
        return []
    decode, full, cached = (cpu[k] for k in keys)
    return [
        f"Where the CamVid time goes now: decoding the two PNGs costs {decode} CPU ms/image "
        f"(unchanged), the whole augmented pipeline {full}; with `cache=True` (decoded uint8 "
        f"images kept in memory) augmentation alone costs {cached} CPU ms/image. Uncached "
        "wall-clock figures near the goal depend on the load: at about 7 CPU ms/image, 100 "
        "images/s needs 0.7 of a core for this process.",
    ]


def write_results(rows, extra, output_dir):
    load_start, load_end = extra["loadavg_start"], extra["loadavg_end"]
    lines = [
        "# Input pipeline throughput",
        "",
        f"Machine: {extra['cpu']}, {extra['cpus']} CPU cores, TensorFlow {extra['tensorflow']}, "
        f"Python {extra['python']}. Timed over {extra['timed_images']} images after a warm-up "
        f"(a full epoch for the cached configs), median of {extra['rounds']} runs, 'before' and "
        "'after' interleaved.",
        "",
        f"**Shared, loaded machine**: other jobs were running on the same 2 cores. Load average "
        f"(1, 5, 15 min) at start {tuple(round(x, 2) for x in load_start)}, at end "
        f"{tuple(round(x, 2) for x in load_end)}. Wall-clock images/s are therefore noisy (and "
        "low); CPU ms/image (`time.process_time()` of this process per image) is the steadier "
        "measure of the pipeline's cost. With 2 idle cores, images/s would be up to about "
        "2000 / (CPU ms/image).",
        "",
        f"'before': `keras_fcn/data.py` at {extra['legacy_rev']}; 'after': current code.",
        "",
        "CamVid augmentation: scale 0.75-1.25, random crop 360x480, flip, colour jitter. "
        "VOC (generated, 500x375 JPEG + palette PNG): scale 0.5-2.0, crop 320x320, flip, "
        "jitter. Unless stated, `validate=False` (so the pipeline checks mask values in the "
        "graph) and `deterministic=False`.",
        "",
    ]
    lines += goal_lines(rows) + [""] + _notes(rows) + [
        "",
        "| data set | configuration | code | images/s (wall) | CPU ms/image |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['dataset']} | {r['config']} | {r['code']} | {r['images_per_second']} | "
              f"{r['cpu_ms_per_image']} |" for r in rows]
    lines += ["", "Up-front `validate_pairs` (PIL headers + mask values): "
              + ", ".join(f"{k}: {v:.0f} pairs/s" for k, v in extra["validate_rate"].items()),
              ""]
    _outputs.save_report(output_dir, NAME, "\n".join(lines),
                         {"machine": extra, "goal": goal_lines(rows), "results": rows})


def main():
    args = _parse_args()
    if not args.no_save:
        _outputs.refuse_to_overwrite(os.path.join(args.output_dir, NAME), args.overwrite)
    cpu = _outputs.cpu_line()
    print(f"CPU: {cpu}", flush=True)
    load_start = os.getloadavg()
    print(f"Load average at start: {load_start}", flush=True)
    implementations = {}
    if not args.no_legacy:
        legacy = load_legacy_data_module(args.legacy_rev)
        if legacy is not None:
            implementations["before"] = legacy
    implementations["after"] = data
    rows, validate_rate = [], {}
    camvid_dir = os.path.abspath(args.camvid_dir)
    if camvid_found(camvid_dir, "--camvid_dir"):  # else prints "CamVid not found ...: skipped."
        pairs, info = datasets.camvid_pairs(camvid_dir, "train")
        validate_rate["camvid"] = validation_rate(pairs, info)
        rows += run_dataset("camvid", pairs, info, CAMVID_AUG, args, implementations)
    with tempfile.TemporaryDirectory() as tmp:
        pairs, info = datasets.voc_pairs(write_fake_voc(tmp, args.voc_images), "train")
        validate_rate["voc (generated)"] = validation_rate(pairs, info)
        rows += run_dataset("voc", pairs, info, VOC_AUG, args, implementations)
    load_end = os.getloadavg()
    print(f"Load average at end: {load_end}")
    print("\n".join(goal_lines(rows)))
    extra = {"cpu": cpu, "cpus": os.cpu_count(), "tensorflow": tf.__version__,
             "python": platform.python_version(), "timed_images": args.images,
             "rounds": args.rounds, "legacy_rev": args.legacy_rev if "before" in
             implementations else None, "validate_rate": validate_rate,
             "loadavg_start": list(load_start), "loadavg_end": list(load_end)}
    if not args.no_save:
        write_results(rows, extra, args.output_dir)
        print(f"Saved {os.path.join(args.output_dir, NAME)}.md and .json")


if __name__ == "__main__":
    main()
