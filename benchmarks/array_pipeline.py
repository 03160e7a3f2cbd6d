"""Measures the NumPy input pipeline of a machine without TensorFlow (images/s, CPU ms/image).

Usage:
    python benchmarks/array_pipeline.py [--camvid_dir ../shared/data/camvid] [--images 96]
        [--rounds 2] [--workers 1,2] [--output_dir benchmarks/results] [--overwrite]

`keras_fcn.data.arrays.SegmentationPyDataset` with the CamVid recipe's augmentation (scale
0.75-1.25, crop 360x480, flip, blur 1.5, photometric 0.5), read the way Keras' ``fit`` reads
it (its PyDataset adapter: ``workers`` threads, batches in order), for each number of
``--workers`` and two forms of the colour jitter side by side, interleaved round by round:

- "per channel": the library's `keras_fcn.data.jitter.apply_jitter`;
- "BLAS matmul": the same map as one ``(pixels, 3) @ (3, 3)`` matmul (the form before
  2026-12-06), swapped in here only.

Figures: images/s (wall clock, median of ``--rounds``) and CPU ms/image
(``time.process_time()``, every thread of the process: the BLAS' spinning threads count).
The recipes read with `keras_fcn.training.array_inputs.data_workers()` threads. Without CamVid
(``--camvid_dir``), 360x480 random PNG pairs are generated in a temporary folder (labelled so
in the report). Results: ``<output_dir>/array_pipeline.{md,json}``.
"""

import os
import platform
import sys
import tempfile
import time

import numpy as np
from PIL import Image

import _outputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "array_pipeline"
AUGMENT = dict(scale_range=(0.75, 1.25), crop_size=(360, 480), flip=True, blur=1.5,
               photometric=0.5)
BATCH = 8


def parse_args(argv=None):
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid_dir", default=_outputs.CAMVID_DIR)
    parser.add_argument("--images", type=_outputs.positive_int, default=96,
                        help="images read per round (whole batches of 8)")
    parser.add_argument("--rounds", type=_outputs.positive_int, default=2,
                        help="timed rounds per configuration (median)")
    parser.add_argument("--workers", default=None,
                        help="comma-separated reader threads (default: 1 and every core)")
    parser.add_argument("--no_save", action="store_true", help="print only")
    _outputs.add_report_flags(parser, NAME)
    args = parser.parse_args(argv)
    args.workers = _workers(args.workers)
    return args


def _workers(text):
    if text is None:
        from keras_fcn.training.array_inputs import usable_cores

        return sorted({1, usable_cores()})
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        _outputs.fail(f"--workers must be comma-separated integers >= 1. Received: {text!r}")
    return counts


def matmul_jitter(image, factors):
    """`keras_fcn.data.jitter.apply_jitter` as one BLAS matmul (the form measured against)."""
    from keras_fcn.data import jitter

    image = np.asarray(image, np.float32)
    shift, contrast, saturation, angle = (float(f) for f in np.asarray(factors, np.float64))
    weights = np.array(jitter.GRAY_WEIGHTS)
    mean = float(image.mean(dtype=np.float64)) + shift
    offset = (contrast * shift + (1.0 - contrast) * mean) * (
        saturation + (1.0 - saturation) * weights.sum())
    matrix = saturation * contrast * np.eye(3) + (1.0 - saturation) * contrast * np.outer(
        weights, np.ones(3))
    matrix = (matrix @ jitter.hue_matrix(angle)).astype(np.float32)
    out = image.reshape(-1, 3) @ matrix + np.float32(offset)
    return np.clip(out, 0.0, 255.0).reshape(image.shape)


FORMS = {"per channel": None, "BLAS matmul": matmul_jitter}


def data_pairs(camvid_dir, count):
    """(pairs, num_classes, ignore_label, description): CamVid's first training pairs, or
    generated 360x480 PNG pairs where CamVid is absent."""
    from keras_fcn import datasets

    if _outputs.camvid_missing(camvid_dir, "--camvid_dir") is None:
        pairs, info = datasets.camvid_pairs(camvid_dir, "train")
        return pairs[:count], info.num_classes, info.ignore_label, "CamVid train (480x360)"
    print(_outputs.camvid_missing(camvid_dir, "--camvid_dir").replace(
        "skipped.", "generated pairs instead."), flush=True)
    folder = tempfile.mkdtemp(prefix="array_pipeline_")
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(count):
        image, mask = os.path.join(folder, f"{i}.png"), os.path.join(folder, f"{i}_L.png")
        # smooth random colours (a photo's PNG size, not noise's)
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((480, 360), Image.BILINEAR).save(image)
        Image.fromarray(rng.integers(0, 11, (12, 16), dtype=np.uint8)).resize(
            (480, 360), Image.NEAREST).save(mask)
        pairs.append((image, mask))
    return pairs, 11, 11, "generated 480x360 PNG pairs"


def time_round(dataset):
    """Reads one epoch of `dataset` through Keras' PyDataset adapter, as ``fit`` does.

    Returns (images/s, CPU ms/image)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(dataset, shuffle=False)
    seen, start, cpu = 0, time.perf_counter(), time.process_time()
    for images, _ in adapter.get_numpy_iterator():
        seen += len(images)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    adapter.on_epoch_end()
    return seen / wall, 1000.0 * cpu / seen


def measure(pairs, num_classes, ignore_label, workers, rounds):
    """{(form, workers): {"images_per_s", "cpu_ms_per_image"}}, forms interleaved per round."""
    from keras_fcn.data import arrays
    from keras_fcn.data.arrays import make_pydataset

    library = arrays.apply_jitter
    samples = {}
    for round_ in range(rounds + 1):  # round 0 warms the file cache and the imports
        for count in workers:
            for form, function in FORMS.items():
                arrays.apply_jitter = function or library
                try:
                    dataset = make_pydataset(pairs, num_classes=num_classes,
                                             ignore_label=ignore_label, batch_size=BATCH,
                                             shuffle=True, seed=round_, workers=count,
                                             **AUGMENT)
                    figures = time_round(dataset)
                finally:
                    arrays.apply_jitter = library
                if round_:
                    samples.setdefault((form, count), []).append(figures)
                print(f"round {round_} workers {count} {form}: {figures[0]:.1f} images/s, "
                      f"{figures[1]:.2f} CPU ms/image", flush=True)
    return {key: {"images_per_s": float(np.median([s[0] for s in values])),
                  "cpu_ms_per_image": float(np.median([s[1] for s in values]))}
            for key, values in samples.items()}


def _backend():
    import keras

    return keras.backend.backend()


def report(results, args, description, count):
    cpu = _outputs.cpu_line()
    lines = [
        "# NumPy input pipeline (no TensorFlow) throughput", "",
        f"Written by `benchmarks/array_pipeline.py` on {time.strftime('%Y-%m-%d %H:%M')}. "
        f"CPU: {cpu}; {os.cpu_count()} cores; Python {platform.python_version()}, NumPy "
        f"{np.__version__}, Keras backend {_backend()}.", "",
        f"Data: {description}, {count} images a round in batches of {BATCH}, read through "
        "Keras' PyDataset adapter (as `fit`); CamVid recipe augmentation: scale 0.75-1.25, "
        "crop 360x480, flip, blur 1.5, photometric 0.5. Median of "
        f"{args.rounds} rounds after a warm-up round; forms interleaved.", "",
        "| colour jitter | reader threads | images/s (wall) | CPU ms/image |",
        "|---|---|---|---|",
    ]
    for (form, workers), row in results.items():
        lines.append(f"| {form} | {workers} | {row['images_per_s']:.1f} | "
                     f"{row['cpu_ms_per_image']:.2f} |")
    most = max(args.workers)
    ours, blas = results[("per channel", most)], results[("BLAS matmul", most)]
    one = results[("per channel", 1)]
    lines += ["", f"With {most} reader thread(s): per-channel jitter "
              f"{ours['images_per_s'] / blas['images_per_s']:.2f}x the images/s of the BLAS "
              f"matmul, {blas['cpu_ms_per_image'] / ours['cpu_ms_per_image']:.2f}x less CPU per "
              f"image; {ours['images_per_s'] / one['images_per_s']:.2f}x one thread's images/s."]
    return "\n".join(lines), cpu


def main(argv=None):
    args = parse_args(argv)
    if not args.no_save:
        _outputs.refuse_to_overwrite(os.path.join(args.output_dir, args.name), args.overwrite)
    count = max(BATCH, args.images // BATCH * BATCH)
    pairs, num_classes, ignore_label, description = data_pairs(args.camvid_dir, count)
    results = measure(pairs, num_classes, ignore_label, args.workers, args.rounds)
    markdown, cpu = report(results, args, description, len(pairs))
    print(markdown, flush=True)
    if not args.no_save:
        data = {"cpu": cpu, "data": description, "images": len(pairs), "rounds": args.rounds,
                "augment": {k: list(v) if isinstance(v, tuple) else v
                            for k, v in AUGMENT.items()},
                "results": [dict(form=form, workers=workers, **row)
                            for (form, workers), row in results.items()]}
        _outputs.save_report(args.output_dir, args.name, markdown, data)
        print(f"Saved {os.path.join(args.output_dir, args.name)}.md/.json", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    main()
