"""Runs an FCN model on images, folders of frames, globs or videos and writes what it sees.

For each image <stem> it writes, in --output_dir: <stem>_labels.png (palette PNG, pixel value =
class id), <stem>_overlay.png (class colours over the image, with a legend),
<stem>_mask_<class>.png (0/255, per class of --classes) and <stem>_<map>.png/.npy (the maps of
--uncertainty: <stem>_entropy, <stem>_margin; mc_dropout gives <stem>_mc_variance and
<stem>_mc_mutual_info). A folder's outputs go to <output_dir>/<folder name>/. A video <stem>.mp4
gives <stem>_overlay.mp4, <stem>_mask_<class>.<video_format> (mp4: a white-on-black matte; mov:
ProRes 4444 with the mask as alpha, which editors import; webm: VP9 with alpha) and per-frame RGBA
PNGs in <output_dir>/<stem>/. Videos are read upright (their rotation tag applied) and their
outputs keep the source's frame times; the output videos have no audio. mp4 videos (the overlay
always) need even sizes: an odd width or height loses its last column or row there (webm, mov and
the per-frame PNGs keep every pixel). Video masks have temporal hysteresis (--mask_margin,
--mask_hold) and soft edges (--mask_feather). Frames of a folder or a video can be smoothed in time
(--smooth_alpha); the label flicker before and after is reported. Existing outputs are kept unless
--overwrite (a smoothed sequence resumed that way restarts its smoothing, with a warning); an input
fails, naming the file, where a folder holds one of its output names (never deleted, even with
--overwrite) or a kept output is not one it would write (a label map that is not a palette PNG of
its size and the model's class ids, a video of another size or frame count, or not a video). No
output may be one of the inputs, nor a folder's outputs go into that folder itself (exit 2).
Folders are read in natural order (frame_2 before frame_10); videos in a folder are predicted as
videos. 16-bit grey images keep their high byte (v >> 8, as TF), EXIF orientation is applied, and
models of more than 256 classes are refused (the label PNGs are 8-bit). Inputs that cannot be read
are listed at the end and make the exit status 1; a bad flag value exits with status 2.

Class names and colours come from the model's labels file (<model>.labels.json, or the
labels.json of its run folder) when there is one. Without one a 21-class model takes the PASCAL
VOC names; any other model's classes are unnamed: their masks are <stem>_mask_class<id> and
--classes takes ids or those names (--classes=class1 or 1); colours are the VOC palette. As in
tools/evaluate.py, --image_size=auto (the default) feeds the model each frame resized to the
training resolution that labels file records (training's --image_size; none recorded: the
frame's own size), and resizes the probabilities back to the frame, so every output has the
frame's size; --tile_size, --tta and --scales apply at the model's input size. The size used
is printed with the summary. --image_size=native feeds frames at their own size; H,W a size.

Examples:
  python tools/predict.py --model=fcn8s_voc.keras --input=photos/ --input='extra/*.jpg' \\
      --output_dir=out --classes=person,car --uncertainty=entropy,margin
  python tools/predict.py --model=fcn8s_voc.keras --output_dir=out photos/*.jpg
  python tools/predict.py --model=camvid.keras --input=drive.mp4 --output_dir=out \\
      --classes=Car --smooth_alpha=0.5 --tile_size=512 --tta=flip
"""

import os

# No TensorFlow start-up errors (cuInit on CPU-only machines) in the tool's output; a value
# set by the user wins. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

from keras_fcn import io  # noqa: E402
from keras_fcn.inference import files, predictor  # noqa: E402
from keras_fcn.inference.predict import AUTO_TILE_SIZE  # noqa: E402

FLAGS = flags.FLAGS
TTA = ("flip",)

flags.DEFINE_string("model", None, "Model file (.keras) or a preset name (docs/presets.md).")
flags.DEFINE_multi_string("input", None, "Image file, folder of frames, glob or video; "
                          "repeat the flag for several. Positional arguments are inputs too.")
flags.DEFINE_string("output_dir", None, "Where outputs are written.")
flags.DEFINE_list("classes", [], "Classes to write binary masks for: names, ids, or "
                  "class<id> (a class without a name, as its mask files are named).")
flags.DEFINE_list("uncertainty", [], f"Uncertainty maps: any of {predictor.UNCERTAINTIES}.")
flags.DEFINE_integer("mc_samples", 10, "Monte-Carlo dropout passes, each with the tiles, "
                     "--tta and --scales of the label maps.")
flags.DEFINE_float("smooth_alpha", 1.0, "Weight of the current frame in the moving average of "
                   "probabilities over frames (1 = no smoothing).")
flags.DEFINE_string("image_size", "auto",
                    "'H,W' to resize inputs, 'native' for none, 'auto' to use the training "
                    "resolution recorded in the labels file next to the model (outputs are "
                    "resized back to each frame's size).")
flags.DEFINE_integer("tile_size", None, "Predict images larger than this in tiles. Unset: "
                     "tiles of 1024 for images of more than 2048x2048 pixels (bounded memory, "
                     "docs/reliability.md); 0: one pass, refused above 4096x4096 pixels.")
flags.DEFINE_integer("tile_overlap", 64, "Overlap of tiles in pixels (< the tile size; unset "
                     "with a --tile_size under 256: a quarter of it).")
flags.DEFINE_list("tta", [], "Test-time augmentation: 'flip'.")
flags.DEFINE_list("scales", ["1.0"], "Test-time scales, e.g. 0.75,1,1.25.")
flags.DEFINE_float("alpha", 0.5, "Opacity of the class colours in overlays.")
flags.DEFINE_enum("video_format", "mp4", predictor.VIDEO_FORMATS, "Container of mask videos. "
                  "mp4 (H.264 4:2:0, also the overlay video) crops an odd width or height by "
                  "one pixel; webm and mov keep the frame size.")
flags.DEFINE_float("mask_margin", 0.1, "Video masks: a pixel changes state only when its class "
                   "evidence (keras_fcn.inference.masks.class_evidence) stays past this margin")
flags.DEFINE_integer("mask_hold", 2, "... for this many frames in a row (hysteresis).")
flags.DEFINE_integer("mask_feather", 4, "Video masks: guided-filter radius of the soft alpha "
                     "edges (0: hard edges).")
flags.DEFINE_bool("overwrite", False, "Replace existing outputs.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_enum("precision", None, ["float32", "bfloat16", "float16", "auto"],
                  "Compute precision (default: the model's own, float32). bfloat16 is several "
                  "times faster on CPUs with AMX or AVX512-BF16; auto picks it there.")
flags.DEFINE_bool("jit_compile", None, "XLA on/off on TensorFlow (default: the faster path "
                  "for this CPU, keras_fcn.runtime.fast_path; KERAS_FCN_JIT=0/1 also sets it; "
                  "JAX always compiles, PyTorch runs eagerly).")


def _tile_size(value):
    """--tile_size as predict's tile_size: unset -> "auto", 0 -> None (one pass)."""
    if value is None:
        return "auto"
    if value < 0:
        raise ValueError(f"--tile_size must be >= 0 (0: no tiles). Received: {value}")
    return value or None


def _tile_overlap(tile_size):
    """--tile_overlap for predict's ``tile_size``: its default 64 is at most a quarter of a
    smaller --tile_size; a value the user gave must be below the tile size."""
    overlap = FLAGS.tile_overlap
    limit = AUTO_TILE_SIZE if tile_size == "auto" else tile_size
    if limit is None:  # one pass: no tiles
        return overlap
    if not FLAGS["tile_overlap"].present:
        return min(overlap, limit // 4)
    if not 0 <= overlap < limit:
        given = (f"--tile_size={limit}" if tile_size != "auto"
                 else f"the tile size ({AUTO_TILE_SIZE})")
        raise ValueError(f"--tile_overlap must be >= 0 and smaller than {given}. "
                         f"Received: --tile_overlap={overlap}")
    return overlap


def options_from_flags(extra_inputs=()):
    """The run's options; a bad --tta or --scales value raises ValueError naming it."""
    bad = [t for t in FLAGS.tta if t not in TTA]
    if bad:
        raise ValueError(f"--tta accepts {TTA}. Received: {bad}")
    try:
        scales = tuple(float(s) for s in FLAGS.scales)
    except ValueError as error:
        raise ValueError(f"--scales must be numbers. Received: {FLAGS.scales}") from error
    tile_size = _tile_size(FLAGS.tile_size)
    return predictor.PredictOptions(
        model=FLAGS.model, inputs=list(FLAGS.input or []) + list(extra_inputs),
        output_dir=FLAGS.output_dir, classes=FLAGS.classes, uncertainty=FLAGS.uncertainty,
        mc_samples=FLAGS.mc_samples, smooth_alpha=FLAGS.smooth_alpha,
        tile_size=tile_size, tile_overlap=_tile_overlap(tile_size),
        tta_flip="flip" in FLAGS.tta, scales=scales, alpha=FLAGS.alpha,
        video_format=FLAGS.video_format, overwrite=FLAGS.overwrite, progress=FLAGS.progress,
        precision=FLAGS.precision, jit_compile=FLAGS.jit_compile,
        mask_margin=FLAGS.mask_margin, mask_hold=FLAGS.mask_hold,
        mask_feather=FLAGS.mask_feather, image_size=FLAGS.image_size,
    )


def main(argv):
    # Positional arguments are inputs too, so an unquoted glob expanded by the shell works.
    opts = options_from_flags(argv[1:])
    io.expect_folder(opts.output_dir, "--output_dir")
    with io.directory_lock(opts.output_dir, "predict"):  # one writer per output folder
        report = files.run(opts)
    files.print_report(report)
    return 1 if report.failures else 0


if __name__ == "__main__":
    from keras_fcn.training.cli import run_main

    run_main(main, positional=True)  # the inputs are words, not flags
