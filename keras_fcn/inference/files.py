"""Prediction over files: images, folders of frames, globs and videos in, PNG/NPY/video out.

For each image ``<stem>`` :func:`run` writes, in ``output_dir``:

- ``<stem>_labels.png``: palette PNG, pixel value = class id, shown in class colours;
- ``<stem>_overlay.png``: colours blended over the image, legend of the classes present;
- ``<stem>_mask_<class>.png``: a 0/255 mask per class of ``classes``;
- ``<stem>_<map>.png`` and ``.npy``: the maps of ``uncertainty`` (``entropy``, ``margin``, and
  ``mc_variance`` and ``mc_mutual_info`` for ``mc_dropout``).

A folder's outputs go to ``<output_dir>/<folder name>/``. A video ``<stem>.mp4`` gives
``<stem>_overlay.mp4``, ``<stem>_mask_<class>.<video_format>`` (mp4: a grey matte; webm (VP9)
and mov (ProRes 4444, which FFmpeg also reads back): the frame with the matte as alpha) and
per-frame PNGs in ``<output_dir>/<stem>/``, the masks as RGBA (the frame, the matte as alpha).
Video size: webm and mov mask videos keep the frame size; mp4 videos (H.264 4:2:0, the overlay
video always) need even sizes, so an odd width or height loses its last column or row (the
per-frame PNGs keep every pixel). Video masks get temporal hysteresis and feathered edges
(``keras_fcn.inference.masks``). The frames of a folder or a video can be smoothed in time
(``smooth_alpha``); the label flicker before and after is reported. Existing outputs are kept
unless ``overwrite``; an input fails instead, naming the file, where a folder is at one of its
outputs' names (never deleted) or a kept output is not its own (:func:`outputs_problem`,
:func:`video_outputs_problem`); inputs that cannot be read are reported, not raised. Only the first
frame of an animated GIF or multi-page TIFF is predicted (said in a warning).

Example:
    >>> from keras_fcn.inference import PredictOptions, print_report, run

    report = run(PredictOptions(model="fcn8s_voc.keras", inputs=["photos/"],
                                output_dir="out", classes=["person"]))
    print_report(report)
"""

import dataclasses
import json
import os
import sys

import numpy as np
from PIL import Image

from keras_fcn import io
from keras_fcn.data import arrays
from keras_fcn.inference import video
from keras_fcn.inference.inputs import Item, check_outputs_apart, expand_inputs  # noqa: F401
from keras_fcn.inference.masks import AlphaMasks
from keras_fcn.inference.predictor import Predictor
from keras_fcn.inference.progress import Progress
from keras_fcn.inference.temporal import SmoothedSequence
from keras_fcn.inference.visualize import (binary_mask, heatmap, overlay, overlay_with_legend,
                                           save_png)


@dataclasses.dataclass
class Report:
    """What a run did: counts, failures (path, message), flicker per sequence, warnings
    (lines for the user, such as a smoothed sequence that restarted after kept frames) and
    the size the model ran at (``model_input``, ``Predictor.input_note``)."""

    written: int = 0
    skipped: int = 0
    processed: int = 0
    failures: list = dataclasses.field(default_factory=list)
    flicker: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)
    # The size the model ran at (``Predictor.input_note``), printed first.
    model_input: str = ""

    def fail(self, path, message):
        self.failures.append((path, message))


def read_image(path):
    """Reads an image file as RGB uint8; raises ValueError saying why if it cannot.

    The training pipelines' reader (``keras_fcn.data.arrays.read_image``: 16-bit grey keeps its
    high byte, 32-bit float images are refused naming the file) with the EXIF orientation
    (phone photos) applied, so the model sees the scene upright and the outputs (which carry no
    orientation tag) line up with the photo as viewers show it. A missing or unopenable file
    raises ValueError too, as every other unreadable input.

    Example:
        read_image("photo.jpg").shape
    """
    try:
        return arrays.read_image(path, exif_transpose=True)
    except (OSError, ValueError) as e:  # OSError: missing, a folder, no permission
        detail = e if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            detail = "empty file"
        raise ValueError(f"cannot read image ({detail})") from e


def _output_writer(report, overwrite):
    """Returns ``write(path, save)`` that calls ``save(path)`` unless the output exists (and
    ``overwrite`` is False), counting written and skipped files in ``report``."""

    def write(path, save):
        if problem := folder_problem([path]):  # never deleted (saving named its temp file)
            raise ValueError(problem)
        if os.path.exists(path) and not overwrite:
            report.skipped += 1
            return
        save(path)
        report.written += 1

    return write


def write_frame_outputs(predictor, base, image, probs, write, overlay_file=True, alphas=None):
    """Writes labels, overlay, masks and uncertainty maps of one frame; returns the labels.

    Args:
        predictor: a :class:`Predictor`.
        base: path prefix of the outputs (``<folder>/<stem>``).
        image: the RGB frame.
        probs: its ``(H, W, C)`` probabilities.
        write: ``write(path, save)``: calls ``save(path)``, or skips an existing output.
        overlay_file: also write ``<base>_overlay.png``.
        alphas: optional ``{class_id: uint8 (H, W) matte}``: the masks are then written as RGBA
            PNGs (the frame, the matte as alpha) instead of 0/255 masks.

    Returns:
        The integer ``(H, W)`` label map (class ids, never wrapped to 8 bits: ``save_png``
        and the masks refuse ids past 255, and ``Predictor`` refuses such models first).

    Example:
        labels = write_frame_outputs(predictor, "out/frame_000001", frame, probs,
                                     lambda path, save: save(path))
    """
    labels = np.argmax(probs, axis=-1).astype("int32")
    # First: a map that cannot be made leaves no outputs.
    maps = predictor.uncertainty_maps(image, probs)
    palette = predictor.palette if predictor.palette is not None else True
    write(f"{base}_labels.png", lambda p: save_png(p, labels, palette=palette))
    if overlay_file:
        # Predicted labels hold no ignore label: class 255 of a 256-class model is a class.
        rgb = overlay_with_legend(image, labels, alpha=predictor.opts.alpha,
                                  palette=predictor.palette, class_names=predictor.class_names,
                                  ignore_label=None)
        write(f"{base}_overlay.png", lambda p: save_png(p, rgb))
    for c in predictor.mask_ids:
        mask = binary_mask(labels, c) if alphas is None else np.dstack([image, alphas[c]])
        write(f"{base}_mask_{predictor.mask_name(c)}.png", lambda p, m=mask: save_png(p, m))
    for name, (values, vmin, vmax, cmap) in maps.items():
        rgb_map = heatmap(values, cmap=cmap, vmin=vmin, vmax=vmax)
        write(f"{base}_{name}.png", lambda p, m=rgb_map: save_png(p, m))
        write(f"{base}_{name}.npy", lambda p, v=values: io.save_npy(p, v))
    return labels


def image_header(path):
    """``((width, height) as viewers show it, frame count)`` of an image file from its header
    (the EXIF orientation applied, as :func:`read_image` does); ``(None, 1)`` when it cannot be
    opened (reading it then says why)."""
    try:
        with Image.open(path) as image:
            size = image.size
            if image.getexif().get(ORIENTATION_TAG) in QUARTER_TURNS:
                size = size[::-1]
            return size, getattr(image, "n_frames", 1)
    except Exception:  # noqa: BLE001 - any unreadable file: read_image names the problem
        return None, 1


ORIENTATION_TAG = 0x0112  # EXIF orientation; 5..8 turn the image a quarter
QUARTER_TURNS = (5, 6, 7, 8)


def folder_problem(paths):
    """The failure of an input with a folder at an output ``paths`` (never deleted), or None."""
    path = next((p for p in paths if os.path.isdir(p)), None)
    return path and f"its output {path!r} is a folder; move it or choose another --output_dir"


def outputs_problem(outputs, size, overwrite, num_classes=None):
    """Why the existing files at the ``outputs`` of an image of ``size`` (``(width, height)``
    or None) make it fail, or None: a folder at an output's name (never deleted, even with
    ``overwrite``), or, when outputs are kept, a ``_labels.png`` that is not a label map this
    tool writes for this image: a palette PNG of its size whose values are class ids below
    ``num_classes`` (a user's file, or another image's outputs, kept silently).

    Example:
        outputs_problem(["out/a_labels.png"], (480, 360), overwrite=False, num_classes=21)
    """
    if problem := folder_problem(outputs):
        return problem
    labels = next((p for p in outputs if p.endswith("_labels.png")), None)
    if overwrite or size is None or labels is None or not os.path.exists(labels):
        return None
    what = _label_map_problem(labels, size, num_classes)
    return what and (f"its output {labels!r} exists but {what}: it is not this image's label "
                     "map. It was kept; move it, or pass --overwrite to replace it")


def _label_map_problem(path, size, num_classes):
    """How the PNG at ``path`` differs from a label map of ``size`` (``(width, height)``) and
    ``num_classes`` classes as :func:`write_frame_outputs` writes it, or None."""
    try:
        with Image.open(path) as existing:
            kind, found, mode = existing.format, existing.size, existing.mode
            top = int(np.asarray(existing).max(initial=0)) if kind == "PNG" else 0
    except Exception:  # noqa: BLE001 - not an image at all
        kind, found = "not an image", None
    if kind != "PNG":
        return f"is {'not an image' if found is None else kind}, not a PNG"
    if found != tuple(size):
        return f"is {found[1]}x{found[0]} pixels (HxW), not this image's {size[1]}x{size[0]}"
    if mode != "P":
        return f"is a {mode}-mode PNG, not a palette (P) label map"
    if num_classes is not None and top >= num_classes:
        return (f"holds the value {top}, not a class id of the model's {num_classes} classes "
                f"(0..{num_classes - 1})")
    return None


def _process_image(predictor, item, sequence, report, write):
    """Predicts one image file and writes its outputs; failures go into ``report``.

    Returns:
        ``"done"`` (predicted), ``"kept"`` (its outputs existed) or ``"failed"`` (unreadable).
    """
    outputs = predictor.image_outputs(item)
    size, frames = image_header(item.path)
    problem = outputs_problem(outputs, size, predictor.opts.overwrite, predictor.num_classes)
    if problem:
        report.fail(item.path, problem)
        return "failed"
    if not predictor.opts.overwrite and all(os.path.exists(p) for p in outputs):
        report.skipped += len(outputs)
        return "kept"
    try:
        image = read_image(item.path)
    except ValueError as e:
        report.fail(item.path, str(e))
        return "failed"
    if frames > 1:
        report.warnings.append(f"{item.path}: {frames} frames (an animation or pages); only "
                               "the first was predicted")
    probs = predictor.probabilities(image)
    if sequence is not None:
        probs = sequence.step(probs)
    write_frame_outputs(predictor, os.path.join(item.out_dir, item.stem), image, probs, write)
    report.processed += 1
    return "done"


# ProRes 4444 keeps alpha and FFmpeg's own decoder reads it back (its VP9 decoder drops it).
_ALPHA_CODECS = {"mov": ("prores_ks", "yuva444p10le")}


def _mask_frame(frame, mask, fmt):
    """A matte as a video frame: grey matte (mp4) or frame + alpha (webm, mov)."""
    if fmt in ("webm", "mov"):
        return np.dstack([frame, mask])
    return np.repeat(mask[..., None], 3, axis=-1)


def _video_writer(path, fps, fmt, overwrite):
    writer = video.VideoWriter(path, fps=fps, overwrite=overwrite)
    if path.endswith(f".{fmt}") and fmt in _ALPHA_CODECS:
        writer.codec, writer.pix_fmt = _ALPHA_CODECS[fmt]  # set before the first frame
    return writer


def video_outputs_problem(paths, info, fmt, overwrite):
    """Why the existing files at a video's output ``paths`` (the overlay video, then the mask
    videos in ``fmt``) make it fail, or None: a folder at one (never deleted), or, when kept,
    a file that is not a video of the size its outputs have (mp4: even) or, where both are
    known, of its frame count (within 10% and a frame, as ``video.read_video`` checks)."""
    if problem := folder_problem(paths):
        return problem
    for index, path in enumerate(paths):
        if overwrite or not os.path.exists(path):
            continue
        width, height, what = info["width"], info["height"], None
        if not (index and fmt in ("webm", "mov")):  # H.264 4:2:0: even sizes
            width, height = width - width % 2, height - height % 2
        try:
            found = video.video_info(path)
        except ValueError as e:
            found, what = None, f"is not a readable video ({e})"
        expected, count = info["frames"], found and found["frames"]
        if found and (found["width"], found["height"]) != (width, height):
            what = f"is {found['height']}x{found['width']} pixels (HxW), not {height}x{width}"
        elif found and expected and count and abs(count - expected) > 0.1 * expected + 1:
            what = f"has {count} frames, not {expected}"
        if what:
            return (f"its output {path!r} exists but {what}: it is not this video's "
                    f"{'mask' if index else 'overlay'} video. It was kept; move it, or pass "
                    "--overwrite to replace it")
    return None


def _open_writers(paths, kept, fps, opts):
    """The writers of the outputs not ``kept`` (None for those); one that cannot be opened
    closes those opened before it."""
    writers = []
    try:
        for path, keep in zip(paths, kept):
            writers.append(None if keep else
                           _video_writer(path, fps, opts.video_format, opts.overwrite))
    except BaseException:
        _close_writers(writers, keep=False)
        raise
    return writers


def _close_writers(writers, keep):
    """Closes every writer (moving its file into place when ``keep``), even after one failed.
    Returns ``(videos written, the first failure naming its output, or None)``."""
    written, problem = 0, None
    for writer in filter(None, writers):
        try:
            writer.close(keep=keep)
            written += keep
        except (OSError, ValueError) as e:
            problem = problem or (f"cannot write its output {writer.path!r} "
                                  f"({type(e).__name__}: {e})")
    return written, problem


def _process_video(predictor, item, report, write, progress):
    """Predicts every frame of a video; writes overlay and mask videos and per-frame PNGs.

    Without ``overwrite`` existing videos are kept (their writers are not opened), and the
    video is skipped only when every output exists: its videos and each frame's files (a
    frame count the container does not give means the frames are predicted again). Existing
    outputs that are not this video's fail it first (:func:`video_outputs_problem`).
    """
    opts = predictor.opts
    try:
        info = video.video_info(item.path)
    except ValueError as e:
        report.fail(item.path, str(e))
        return
    paths = predictor.video_outputs(item)
    problem = video_outputs_problem(paths, info, opts.video_format, opts.overwrite)
    for index in range(info["frames"] or 0):  # each frame's files, as an image's
        base = os.path.join(item.out_dir, item.stem, f"frame_{index:06d}")
        problem = problem or outputs_problem(predictor.frame_outputs(base, False), (
            info["width"], info["height"]), opts.overwrite, predictor.num_classes)
    if problem:
        report.fail(item.path, problem)
        return
    if not opts.overwrite and info["frames"]:
        every = paths + predictor.video_frame_outputs(item, info["frames"])
        if all(os.path.exists(p) for p in every):
            report.skipped += len(every)
            return
    kept = [not opts.overwrite and os.path.exists(p) for p in paths]
    report.skipped += sum(kept)
    writers = _open_writers(paths, kept, info["fps"], opts)
    sequence = SmoothedSequence(opts.smooth_alpha)
    mattes = AlphaMasks(predictor.mask_ids, margin=opts.mask_margin, hold=opts.mask_hold,
                        radius=opts.mask_feather)
    ok, decoded = False, 0
    try:
        for index, (frame, time) in enumerate(video.read_video(item.path, times=True)):
            decoded += 1
            probs = sequence.step(predictor.probabilities(frame))
            base = os.path.join(item.out_dir, item.stem, f"frame_{index:06d}")
            alphas = mattes.step(frame, probs)
            labels = write_frame_outputs(predictor, base, frame, probs, write, overlay_file=False,
                                         alphas=alphas)
            if writers[0] is not None:
                writers[0].write(overlay(frame, labels, alpha=opts.alpha,
                                         palette=predictor.palette, ignore_label=None),
                                 time=time)
            for writer, c in zip(writers[1:], predictor.mask_ids):
                if writer is not None:
                    writer.write(_mask_frame(frame, alphas[c], opts.video_format), time=time)
            report.processed += 1
            progress.update(1)
        if not decoded:  # its writers would close without a stream: no file, yet "written"
            raise ValueError(f"No frame of the video '{item.path}' could be decoded")
        ok = True
    except ValueError as e:
        report.fail(item.path, str(e))
    finally:
        written, problem = _close_writers(writers, keep=ok)
    report.written += written
    if problem:
        report.fail(item.path, problem)
    elif ok:
        report.flicker[item.path] = sequence.summary()


def _count_frames(items):
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


def _note_restart(report, item, status, kept_frames):
    """Warns (once per sequence) when a smoothed sequence predicts a frame after frames whose
    outputs were kept: they are not in its moving average, which restarts there, so its labels
    differ from one uninterrupted run."""
    kept = kept_frames.get(item.sequence, 0)
    if status == "kept":
        kept_frames[item.sequence] = kept + 1
    elif status == "done" and kept > 0:
        kept_frames[item.sequence] = -1  # warned
        report.warnings.append(
            f"{item.sequence}: smoothing restarts at {os.path.basename(item.path)}: the outputs "
            f"of {kept} earlier frame(s) were kept, not predicted, so they are not in its "
            "moving average and its labels differ from an uninterrupted run (use --overwrite "
            "to smooth the whole sequence again)")


def run(opts):
    """Predicts every input of ``opts`` and writes the outputs (see the module docstring).

    Args:
        opts: a :class:`PredictOptions`.

    Returns:
        A :class:`Report`. Raises ValueError for bad options, FileNotFoundError when no input
        names an image or video; unreadable inputs among others are reported in
        ``report.failures``.

    Example:
        report = run(PredictOptions(model="m.keras", inputs=["frames/"], output_dir="out"))
        report.processed, report.failures
    """
    opts.check()
    report = Report()
    items = expand_inputs(opts.inputs, opts.output_dir, report)
    if not items:  # nothing to predict: a user error (exit 2), not a batch with failures
        found = "; ".join(f"{path}: {message}" for path, message in report.failures[:3])
        raise FileNotFoundError(f"No image or video to predict in --input={list(opts.inputs)!r}"
                                + (f" ({found})" if found else ""))
    check_outputs_apart(items, opts)  # before the model loads: never write over an input
    predictor = Predictor(opts)
    report.model_input = predictor.input_note
    write = _output_writer(report, opts.overwrite)
    sequences, kept_frames = {}, {}  # sequence -> frames kept (not predicted) so far
    with Progress(_count_frames(items), opts.progress) as progress:
        for item in items:
            if item.kind == "video":
                try:
                    _process_video(predictor, item, report, write, progress)
                except ImportError as e:
                    report.fail(item.path, str(e))
                continue
            sequence = None
            if item.sequence is not None:
                sequence = sequences.setdefault(item.sequence,
                                                SmoothedSequence(opts.smooth_alpha))
            status = _process_image(predictor, item, sequence, report, write)
            progress.update(1)
            if sequence is not None and opts.smooth_alpha < 1.0:
                _note_restart(report, item, status, kept_frames)
    for name, sequence in sequences.items():
        if sequence.compared:
            report.flicker[name] = sequence.summary()
    single = sum(item.kind == "image" and item.sequence is None for item in items)
    if opts.smooth_alpha < 1.0 and single:
        report.warnings.append(
            f"--smooth_alpha smooths the frames of a folder, a glob or a video: {single} "
            "image(s) given one by one were predicted on their own (pass their folder or a "
            "glob to smooth them as one sequence)")
    return report


def print_report(report, stream=None, errors=None):
    """Prints the summary of a :func:`run`: counts and flicker per sequence on ``stream``
    (default stdout), warnings and failures on ``errors`` (default: stderr, or ``stream`` where
    one is given).

    Example:
        >>> print_report(Report(written=2, processed=1, skipped=3))
        processed 1 frame, wrote 2 files, kept 3 existing (use --overwrite to replace)
    """
    errors = errors or stream or sys.stderr
    stream = stream or sys.stdout
    if report.model_input:
        print(report.model_input, file=stream)
    kept = (f", kept {report.skipped} existing (use --overwrite to replace)"
            if report.skipped else "")
    print(f"processed {_count(report.processed, 'frame')}, wrote "
          f"{_count(report.written, 'file')}{kept}", file=stream)
    for name, figures in report.flicker.items():
        print(f"flicker {name}: {json.dumps(figures)}", file=stream)
    for line in report.warnings:
        print(f"warning: {line}", file=errors)
    if report.failures:
        print(f"{len(report.failures)} input(s) failed:", file=errors)
        for path, message in report.failures:
            print(f"  {path}: {message}", file=errors)


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"
