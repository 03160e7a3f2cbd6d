"""Runs an FCN model on images, folders of frames, globs or videos and writes what it sees.

For each image ``<stem>`` it writes, in ``--output_dir``:
  <stem>_labels.png          palette PNG: pixel value = class id, shown in class colours
  <stem>_overlay.png         colours blended over the image, legend of the classes present
  <stem>_mask_<class>.png    0/255 mask per class of --classes
  <stem>_<map>.png/.npy      uncertainty maps of --uncertainty (entropy, margin,
                             mc_variance and mc_mutual_info for mc_dropout)
A folder's outputs go to ``<output_dir>/<folder name>/``. A video ``<stem>.mp4`` gives
``<stem>_overlay.mp4``, ``<stem>_mask_<class>.mp4`` (white matte; ``--video_format webm``
gives the frame with the mask as alpha) and per-frame PNGs in ``<output_dir>/<stem>/``.
Frames of a folder or a video can be smoothed in time (``--smooth_alpha``); the label flicker
before and after is reported. Existing outputs are kept unless ``--overwrite``; inputs that
cannot be read are reported at the end and make the exit status 1.

Class names and colours come from ``<model>.labels.json`` (``{"class_names": [...],
"palette": [[r, g, b], ...]}``) when it exists, else the PASCAL VOC ones.

Example:
  python tools/predict.py --model fcn8s_voc.keras --input photos/ --input 'extra/*.jpg' \\
      --output_dir out --classes person,car --uncertainty entropy,margin
  python tools/predict.py --model fcn8s_voc.keras --output_dir out photos/*.jpg
  python tools/predict.py --model camvid.keras --input drive.mp4 --output_dir out \\
      --classes Car --smooth_alpha 0.5 --tile_size 512 --tta flip
"""

import dataclasses
import glob
import json
import os
import re
import sys

import numpy as np
from absl import app, flags

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
UNCERTAINTIES = ("entropy", "margin", "mc_dropout")
VIDEO_FORMATS = ("mp4", "webm")

FLAGS = flags.FLAGS


def define_flags():
    """Defines the flags (only when run as a script, so importing this module defines none)."""
    flags.DEFINE_string("model", None, "Model file (.keras).")
    flags.DEFINE_multi_string("input", None, "Image file, folder of frames, glob or video; "
                              "repeat the flag for several.")
    flags.DEFINE_string("output_dir", None, "Where outputs are written.")
    flags.DEFINE_list("classes", [], "Classes to write binary masks for (names or ids).")
    flags.DEFINE_list("uncertainty", [], f"Uncertainty maps: any of {UNCERTAINTIES}.")
    flags.DEFINE_integer("mc_samples", 10, "Monte-Carlo dropout passes.")
    flags.DEFINE_float("smooth_alpha", 1.0, "Weight of the current frame in the moving "
                       "average of probabilities over frames (1 = no smoothing).")
    flags.DEFINE_integer("tile_size", None, "Predict images larger than this in tiles.")
    flags.DEFINE_integer("tile_overlap", 64, "Overlap of tiles in pixels.")
    flags.DEFINE_list("tta", [], "Test-time augmentation: 'flip'.")
    flags.DEFINE_list("scales", ["1.0"], "Test-time scales, e.g. 0.75,1,1.25.")
    flags.DEFINE_float("alpha", 0.5, "Opacity of the class colours in overlays.")
    flags.DEFINE_enum("video_format", "mp4", VIDEO_FORMATS, "Container of mask videos.")
    flags.DEFINE_bool("overwrite", False, "Replace existing outputs.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")


@dataclasses.dataclass
class Options:
    """Everything the tool needs; the flags map one to one onto these fields."""

    model: str
    inputs: list
    output_dir: str
    classes: list = dataclasses.field(default_factory=list)
    uncertainty: list = dataclasses.field(default_factory=list)
    mc_samples: int = 10
    smooth_alpha: float = 1.0
    tile_size: int = None
    tile_overlap: int = 64
    tta: list = dataclasses.field(default_factory=list)
    scales: tuple = (1.0,)
    alpha: float = 0.5
    video_format: str = "mp4"
    overwrite: bool = False
    progress: bool = False


@dataclasses.dataclass
class Item:
    """One input: an image file (``kind="image"``) or a video (``kind="video"``).

    ``sequence`` names the frame sequence an image belongs to (its folder), or is None.
    """

    kind: str
    path: str
    out_dir: str
    stem: str
    sequence: str = None


@dataclasses.dataclass
class Report:
    """What a run did: counts, failures (path, message) and flicker per sequence."""

    written: int = 0
    skipped: int = 0
    processed: int = 0
    failures: list = dataclasses.field(default_factory=list)
    flicker: dict = dataclasses.field(default_factory=dict)

    def fail(self, path, message):
        self.failures.append((path, message))


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


def check_options(opts):
    """Validates options before any work; errors name the bad value."""
    if not opts.inputs:
        raise ValueError("Give at least one --input.")
    if not opts.output_dir:
        raise ValueError("--output_dir is required.")
    if not opts.model or not os.path.isfile(opts.model):
        raise ValueError(f"--model must be an existing model file. Received: model={opts.model!r}")
    bad = [u for u in opts.uncertainty if u not in UNCERTAINTIES]
    if bad:
        raise ValueError(f"--uncertainty accepts {UNCERTAINTIES}. Received: {bad}")
    bad = [t for t in opts.tta if t != "flip"]
    if bad:
        raise ValueError(f"--tta accepts 'flip'. Received: {bad}")
    if not 0.0 < opts.smooth_alpha <= 1.0:
        raise ValueError(f"--smooth_alpha must be in (0, 1]. Received: {opts.smooth_alpha}")
    if "mc_dropout" in opts.uncertainty and opts.mc_samples < 2:
        raise ValueError(f"--mc_samples must be >= 2. Received: {opts.mc_samples}")
    if opts.video_format not in VIDEO_FORMATS:
        raise ValueError(f"--video_format must be one of {VIDEO_FORMATS}. Received: "
                         f"{opts.video_format!r}")


def resolve_classes(classes, class_names, num_classes):
    """Maps class names (case-insensitive) or ids to ids.

    Example:
        >>> resolve_classes(["person", "7"], VOC_CLASS_NAMES, 21)
        [15, 7]
    """
    lookup = {str(n).lower(): i for i, n in enumerate(class_names or [])}
    ids = []
    for c in classes:
        key = str(c).strip()
        if key.lower() in lookup:
            ids.append(lookup[key.lower()])
        elif key.isdigit() and int(key) < num_classes:
            ids.append(int(key))
        else:
            known = ", ".join(class_names or []) or f"ids 0..{num_classes - 1}"
            raise ValueError(f"Unknown class in --classes. Received: {c!r}. Known: {known}")
    return ids


def safe_name(text):
    """A file-name-safe version of a class name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "class"


def _unique_stem(out_dir, stem, used):
    key = (out_dir, stem)
    n = 1
    while key in used:
        n += 1
        key = (out_dir, f"{stem}_{n}")
    used.add(key)
    return key[1]


def expand_inputs(inputs, output_dir, report):
    """Turns --input values (files, folders, globs, videos) into Items, in order.

    Inputs that match nothing are recorded in ``report`` as failures.
    """
    from keras_fcn.inference.video import is_video_file

    items, used = [], set()

    def add(kind, path, out_dir, sequence=None):
        stem = os.path.splitext(os.path.basename(path))[0]
        items.append(Item(kind, path, out_dir, _unique_stem(out_dir, stem, used), sequence))

    for value in inputs:
        if os.path.isdir(value):
            name = os.path.basename(os.path.normpath(value))
            files = sorted(f for f in os.listdir(value)
                           if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
            if not files:
                report.fail(value, "folder holds no image files")
            for f in files:
                add("image", os.path.join(value, f), os.path.join(output_dir, name), value)
        elif glob.has_magic(value) and not os.path.exists(value):
            paths = sorted(glob.glob(value))
            if not paths:
                report.fail(value, "pattern matched no file")
            for p in paths:
                if os.path.isfile(p):
                    add("video" if is_video_file(p) else "image", p, output_dir)
        elif os.path.isfile(value):
            add("video" if is_video_file(value) else "image", value, output_dir)
        else:
            report.fail(value, "no such file or folder")
    return items


# --------------------------------------------------------------------------------------------
# Per-image work
# --------------------------------------------------------------------------------------------


def read_image(path):
    """Reads an image file as RGB uint8; raises ValueError with the path if it cannot."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype="uint8")
    # DecompressionBombError (a header declaring billions of pixels) is not an OSError.
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as e:
        size = os.path.getsize(path) if os.path.exists(path) else None
        detail = "empty file" if size == 0 else f"{type(e).__name__}: {e}"
        raise ValueError(f"cannot read image ({detail})") from e


class Predictor:
    """Holds the model, class names, palette and options; turns frames into output maps."""

    def __init__(self, opts):
        import keras

        import keras_fcn  # noqa: F401  (registers the custom layers for loading)
        import keras_fcn.models.mobilenet_v2  # noqa: F401  (PadToMultiple; not imported by keras_fcn)
        from keras_fcn import inference

        self.inf = inference
        self.opts = opts
        try:
            self.model = keras.models.load_model(opts.model, compile=False)
        except (OSError, ValueError, TypeError) as e:
            raise ValueError(f"Cannot load --model {opts.model!r}: {e}") from e
        self.num_classes = int(self.model.outputs[0].shape[-1])
        names, palette = inference.read_labels_sidecar(opts.model)
        if names is None and self.num_classes == len(inference.VOC_CLASS_NAMES):
            names = list(inference.VOC_CLASS_NAMES)
        self.class_names = names
        self.palette = palette
        self.mask_ids = resolve_classes(opts.classes, names, self.num_classes)

    def mask_name(self, class_id):
        if self.class_names and class_id < len(self.class_names):
            return safe_name(self.class_names[class_id])
        return f"class{class_id}"

    def probabilities(self, image):
        _, probs = self.inf.predict(
            self.model, image, tile_size=self.opts.tile_size, tile_overlap=self.opts.tile_overlap,
            tta_flip="flip" in self.opts.tta, scales=tuple(self.opts.scales),
        )
        return probs

    def uncertainty_maps(self, image, probs):
        """Returns {name: (array, vmin, vmax, cmap)} for the requested maps."""
        log_c = float(np.log(self.num_classes))
        maps = {}
        if "entropy" in self.opts.uncertainty:
            maps["entropy"] = (self.inf.entropy(probs), 0.0, log_c, "inferno")
        if "margin" in self.opts.uncertainty:
            maps["margin"] = (self.inf.margin(probs), 0.0, 1.0, "inferno_r")
        if "mc_dropout" in self.opts.uncertainty:
            mc = self.inf.mc_dropout(self.model, image, num_samples=self.opts.mc_samples)
            maps["mc_variance"] = (mc["variance"], 0.0, None, "inferno")
            maps["mc_mutual_info"] = (mc["mutual_information"], 0.0, log_c, "inferno")
        return maps

    def image_outputs(self, item):
        """Paths this tool writes for an image item."""
        base = os.path.join(item.out_dir, item.stem)
        paths = [f"{base}_labels.png", f"{base}_overlay.png"]
        paths += [f"{base}_mask_{self.mask_name(c)}.png" for c in self.mask_ids]
        for name in self._uncertainty_names():
            paths += [f"{base}_{name}.png", f"{base}_{name}.npy"]
        return paths

    def _uncertainty_names(self):
        names = [u for u in ("entropy", "margin") if u in self.opts.uncertainty]
        if "mc_dropout" in self.opts.uncertainty:
            names += ["mc_variance", "mc_mutual_info"]
        return names


def _writer(report, overwrite):
    """Returns ``write(path, fn)`` that runs ``fn(path)`` unless the output exists."""

    def write(path, fn):
        if os.path.exists(path) and not overwrite:
            report.skipped += 1
            return
        fn(path)
        report.written += 1

    return write


def write_frame_outputs(predictor, base, image, probs, write, overlay_file=True):
    """Writes labels, overlay, masks and uncertainty maps of one frame; returns the labels."""
    inf = predictor.inf
    labels = np.argmax(probs, axis=-1).astype("uint8")
    write(f"{base}_labels.png", lambda p: inf.save_png(p, labels, palette=_palette(predictor)))
    if overlay_file:
        rgb = inf.overlay_with_legend(image, labels, alpha=predictor.opts.alpha,
                                      palette=predictor.palette,
                                      class_names=predictor.class_names)
        write(f"{base}_overlay.png", lambda p: inf.save_png(p, rgb))
    for c in predictor.mask_ids:
        mask = inf.binary_mask(labels, c)
        write(f"{base}_mask_{predictor.mask_name(c)}.png", lambda p, m=mask: inf.save_png(p, m))
    for name, (values, vmin, vmax, cmap) in predictor.uncertainty_maps(image, probs).items():
        rgb_map = inf.heatmap(values, cmap=cmap, vmin=vmin, vmax=vmax)
        write(f"{base}_{name}.png", lambda p, m=rgb_map: inf.save_png(p, m))
        write(f"{base}_{name}.npy", lambda p, v=values: inf.save_npy(p, v))
    return labels


def _palette(predictor):
    return predictor.palette if predictor.palette is not None else True


class _SequenceState:
    """Smoothing and flicker meters of the frame sequence being processed."""

    def __init__(self, inf, alpha):
        self.smoother = inf.TemporalSmoother(alpha)
        self.raw = inf.FlickerMeter()
        self.smoothed = inf.FlickerMeter()
        self.alpha = alpha

    def step(self, probs):
        """Returns the probabilities to use for this frame, updating the meters."""
        self.raw.update(np.argmax(probs, axis=-1))
        if self.alpha >= 1.0:
            return probs
        out = self.smoother(probs)
        self.smoothed.update(np.argmax(out, axis=-1))
        return out

    def summary(self):
        result = {"frames_compared": self.raw.total, "flicker_raw": self.raw.rate}
        if self.alpha < 1.0:
            result["flicker_smoothed"] = self.smoothed.rate
            result["smooth_alpha"] = self.alpha
        return result


def process_image(predictor, item, state, report, write):
    """Predicts one image file and writes its outputs; failures go into ``report``."""
    outputs = predictor.image_outputs(item)
    if not predictor.opts.overwrite and all(os.path.exists(p) for p in outputs):
        report.skipped += len(outputs)
        return False
    try:
        image = read_image(item.path)
    except ValueError as e:
        report.fail(item.path, str(e))
        return False
    probs = predictor.probabilities(image)
    if state is not None:
        try:
            probs = state.step(probs)
        except ValueError:  # a frame of another size: start a new average
            state.smoother.reset()
            state.raw.previous = state.smoothed.previous = None
            probs = state.step(probs)
    write_frame_outputs(predictor, os.path.join(item.out_dir, item.stem), image, probs, write)
    report.processed += 1
    return True


def video_outputs(predictor, item):
    ext = predictor.opts.video_format
    base = os.path.join(item.out_dir, item.stem)
    paths = [f"{base}_overlay.mp4"]
    paths += [f"{base}_mask_{predictor.mask_name(c)}.{ext}" for c in predictor.mask_ids]
    return paths


def _mask_frame(frame, mask, fmt):
    """A mask as a video frame: white-on-black matte (mp4) or frame + alpha (webm)."""
    if fmt == "webm":
        return np.dstack([frame, mask])
    return np.repeat(mask[..., None], 3, axis=-1)


def process_video(predictor, item, report, write, progress):
    """Predicts every frame of a video; writes overlay/mask videos and per-frame PNGs."""
    from keras_fcn.inference import video

    inf, opts = predictor.inf, predictor.opts
    paths = video_outputs(predictor, item)
    if not opts.overwrite and all(os.path.exists(p) for p in paths):
        report.skipped += len(paths)
        return
    try:
        fps = video.video_info(item.path)["fps"]
    except ValueError as e:
        report.fail(item.path, str(e))
        return
    writers = [video.VideoWriter(p, fps=fps, overwrite=True) for p in paths]
    state = _SequenceState(inf, opts.smooth_alpha)
    frames_dir = os.path.join(item.out_dir, item.stem)
    ok = False
    try:
        for index, frame in enumerate(video.read_video(item.path)):
            probs = state.step(predictor.probabilities(frame))
            base = os.path.join(frames_dir, f"frame_{index:06d}")
            labels = write_frame_outputs(predictor, base, frame, probs, write, overlay_file=False)
            writers[0].write(inf.overlay(frame, labels, alpha=opts.alpha, palette=predictor.palette))
            for writer, c in zip(writers[1:], predictor.mask_ids):
                writer.write(_mask_frame(frame, inf.binary_mask(labels, c), opts.video_format))
            report.processed += 1
            progress.update(1)
        ok = True
    except ValueError as e:
        report.fail(item.path, str(e))
    finally:
        for writer in writers:
            writer.close(keep=ok)
    if ok:
        report.written += len(writers)
        report.flicker[item.path] = state.summary()


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


class _Progress:
    """tqdm when installed, else keras.utils.Progbar; silent when disabled."""

    def __init__(self, total, enabled):
        self.bar, self.count = None, 0
        if not enabled:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", file=sys.stderr)
            self.kind = "tqdm"
        except ImportError:
            import keras

            self.bar = keras.utils.Progbar(total)
            self.kind = "keras"

    def update(self, n):
        self.count += n
        if self.bar is None:
            return
        if self.kind == "tqdm":
            self.bar.update(n)
        else:
            self.bar.update(self.count)

    def close(self):
        if self.bar is not None and self.kind == "tqdm":
            self.bar.close()


def _count_frames(items):
    from keras_fcn.inference import video

    total = 0
    for item in items:
        if item.kind == "image":
            total += 1
            continue
        try:
            total += video.video_info(item.path)["frames"] or 0
        except (ValueError, ImportError):
            pass
    return total or None


def run(opts):
    """Runs the tool; returns a ``Report``. Raises ValueError for bad options only."""
    check_options(opts)
    report = Report()
    items = expand_inputs(opts.inputs, opts.output_dir, report)
    predictor = Predictor(opts)
    write = _writer(report, opts.overwrite)
    progress = _Progress(_count_frames(items), opts.progress)
    states = {}
    try:
        for item in items:
            if item.kind == "video":
                try:
                    process_video(predictor, item, report, write, progress)
                except ImportError as e:
                    report.fail(item.path, str(e))
                continue
            state = None
            if item.sequence is not None:
                state = states.setdefault(item.sequence,
                                          _SequenceState(predictor.inf, opts.smooth_alpha))
            process_image(predictor, item, state, report, write)
            progress.update(1)
    finally:
        progress.close()
    for sequence, state in states.items():
        if state.raw.total:
            report.flicker[sequence] = state.summary()
    return report


def print_report(report, stream=sys.stdout):
    """Prints the summary: counts, flicker per sequence, failures."""
    print(f"processed {report.processed} frames, wrote {report.written} files, "
          f"kept {report.skipped} existing (use --overwrite to replace)", file=stream)
    for name, figures in report.flicker.items():
        print(f"flicker {name}: {json.dumps(figures)}", file=stream)
    if report.failures:
        print(f"{len(report.failures)} input(s) failed:", file=stream)
        for path, message in report.failures:
            print(f"  {path}: {message}", file=stream)


def options_from_flags(extra_inputs=()):
    return Options(
        model=FLAGS.model, inputs=list(FLAGS.input or []) + list(extra_inputs),
        output_dir=FLAGS.output_dir,
        classes=FLAGS.classes, uncertainty=FLAGS.uncertainty, mc_samples=FLAGS.mc_samples,
        smooth_alpha=FLAGS.smooth_alpha, tile_size=FLAGS.tile_size,
        tile_overlap=FLAGS.tile_overlap, tta=FLAGS.tta,
        scales=tuple(float(s) for s in FLAGS.scales), alpha=FLAGS.alpha,
        video_format=FLAGS.video_format, overwrite=FLAGS.overwrite, progress=FLAGS.progress,
    )


def main(argv):
    # Positional arguments are inputs too, so an unquoted glob expanded by the shell works.
    try:
        report = run(options_from_flags(argv[1:]))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_report(report)
    return 1 if report.failures else 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
