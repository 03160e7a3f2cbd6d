"""Converts released FCN weights (Caffe .caffemodel or PyTorch .pth) into a keras_fcn model file.

The weights are converted to Keras layouts, loaded by layer name into a freshly built
keras_fcn model (keras_fcn.weights.convert_to_keras_model) and saved atomically. The tool
reports which layers were set, which model layers kept their initialization, and which
converted layers the model has no place for. A source that sets no layer of the model (a file
of another network) is an error (exit status 2), not a randomly initialized "converted" model;
an .npz with keras.applications VGG16 names (block1_conv1, ...) is renamed as load_weights does.

Example:
  python tools/convert_weights.py --input fcn8s-heavy-pascal.caffemodel --model fcn8s \\
      --num_classes 21 --output fcn8s_voc.weights.h5
  python tools/convert_weights.py --input fcn32s_from_caffe.pth --model fcn32s \\
      --output fcn32s.keras
"""

import os
import re

# TensorFlow's C++ start-up errors (cuInit on CPU-only machines) are not our output; a
# TF_CPP_MIN_LOG_LEVEL set by the user wins. Set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sys

from absl import flags, logging

from keras_fcn.io import check_writable
from keras_fcn.models import build_fcn
from keras_fcn.weights import SAVED_SUFFIXES, convert_to_keras_model, save_weights_file

# --model -> the build_fcn variant.
MODELS = {"fcn32s": "32s", "fcn16s": "16s", "fcn8s": "8s", "fcn8s_at_once": "8s_at_once"}

flags.DEFINE_string("input", None, "Source weights: .caffemodel, .pth/.pt (a state dict), or .npz "
                    "(keys '<layer>/<index>', as --output=x.npz writes them).")
flags.DEFINE_enum("model", None, list(MODELS), "Which FCN to build.")
flags.DEFINE_integer("num_classes", 21, "Number of classes of the source model.")
flags.DEFINE_string("output", None, "Output: .weights.h5, .keras or .npz.")
flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")
flags.DEFINE_bool("strict", True, "Fail on source layers with weights that cannot be mapped "
                  "(unknown names, or learned layers the model has no place for: a finer FCN's "
                  "score_pool4/score_pool3, say; upsampling layers are only reported) and on "
                  "trunk layers of the model without weights in the file (--nostrict: warn, "
                  "skip the unused layers and keep the missing ones at their initialization).")
flags.DEFINE_list("rename", [], "Source-to-keras_fcn layer names, e.g. score59=score_fr.")
flags.DEFINE_list("widths", None, "VGG16 block widths (tests and experiments only).")
flags.DEFINE_integer("fc_units", None, "fc6/fc7 width (tests and experiments only).")
FLAGS = flags.FLAGS


def parse_rename(pairs):
    """Parses ["old=new", ...] into {old: new}, e.g. ["score59=score_fr"]."""
    rename = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise ValueError(f"--rename expects old=new pairs. Received: {pair!r}")
        rename[old] = new
    return rename


def parse_widths(values):
    """--widths as a tuple of positive ints (None if unset), as train.py reads it."""
    if not values:
        return None
    try:
        widths = tuple(int(w) for w in values)
    except ValueError:
        widths = ()
    if len(widths) != len(values) or min(widths) < 1:
        raise ValueError("--widths must be comma-separated positive integers. Received: "
                         f"widths={','.join(values)!r}")
    return widths


def check_unused(unused, model_flag, source):
    """Strict mode: refuses source layers with learned weights the model has no place for
    (upsampling layers, fixed bilinear in the paper's stages, are only reported), naming them
    and the --model that has them.

    Example:
        >>> check_unused(["upscore"], "fcn16s", "fcn32s.pth")  # an earlier stage: fine
        >>> check_unused(["score_pool4", "upscore2"], "fcn32s", "fcn16s.pth")
        Traceback (most recent call last):
        ValueError: fcn16s.pth has learned layers that the fcn32s model has no place for:
        ['score_pool4'] (all unused: ['score_pool4', 'upscore2']); convert it with
        --model=fcn16s, or pass --nostrict to leave them out.
    """
    learned = [name for name in unused if not name.startswith("upscore")]
    if not learned:
        return
    matching = ("fcn8s (or fcn8s_at_once)" if "score_pool3" in unused
                else "fcn16s" if "score_pool4" in unused else None)
    hint = f"convert it with --model={matching}, or pass" if matching else "pass"
    raise ValueError(f"{source} has learned layers that the {model_flag} model has no place "
                     f"for: {learned} (all unused: {sorted(unused)}); {hint} --nostrict to "
                     "leave them out.")


def cli_words(message):
    """The library's advice in this tool's flags: ``rename={'a': 'b'}`` -> ``--rename=a=b``,
    ``pass strict=False`` -> ``pass --nostrict``, ``build it with num_classes=3`` -> ``pass
    --num_classes=3`` (also fc_units).

    Example:
        >>> cli_words("map it with rename={'score59': ...} (pass strict=False to skip it)")
        'map it with --rename=score59=<name> (pass --nostrict to skip it)'
        >>> cli_words("score_fr: the file has 3 classes: build it with num_classes=3.")
        'score_fr: the file has 3 classes: pass --num_classes=3.'
    """
    def flag(match):
        pairs = re.findall(r"'([^']*)': (?:'([^']*)'|\.\.\.)", match.group(1))
        return "--rename=" + ",".join(f"{old}={new or '<name>'}" for old, new in pairs)

    message = re.sub(r"rename=\{([^{}]*)\}", flag, message)
    message = message.replace("pass strict=False", "pass --nostrict")
    return re.sub(r"build it with (num_classes|fc_units)=", r"pass --\1=", message)


def output_folder(output):
    """Refuses an --output whose folder, or a folder above it, is an existing file."""
    folder = os.path.dirname(os.path.abspath(output))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"--output={output!r}: {folder!r} is a file, not a folder; "
                                 "expected an output path inside a folder.")


def convert():
    """Builds the model, loads the converted weights, saves it; returns the report."""
    for name in ("input", "model", "output"):
        if not FLAGS[name].value:
            raise ValueError(f"--{name} is required")
    if not FLAGS.output.endswith(SAVED_SUFFIXES):
        raise ValueError(
            f"Unknown output type: {FLAGS.output!r}. Expected one of {SAVED_SUFFIXES}.")
    widths = parse_widths(FLAGS.widths)
    if FLAGS.fc_units is not None and FLAGS.fc_units < 1:
        raise ValueError(f"--fc_units must be >= 1. Received: {FLAGS.fc_units}")
    output_folder(FLAGS.output)
    check_writable(FLAGS.output, FLAGS.overwrite)  # fail before the slow part
    model = build_fcn(MODELS[FLAGS.model], FLAGS.num_classes, weights=None, name=FLAGS.model,
                      widths=widths, fc_units=FLAGS.fc_units)
    report = convert_to_keras_model(FLAGS.input, model, rename=parse_rename(FLAGS.rename),
                                    strict=FLAGS.strict)
    if FLAGS.strict:  # before anything is written
        check_unused(report["unused"], FLAGS.model, FLAGS.input)
    save_weights_file(model, FLAGS.output, overwrite=FLAGS.overwrite)
    return report


def main(argv):
    if len(argv) > 1:
        print(f"convert_weights: error: unexpected arguments: {argv[1:]}", file=sys.stderr)
        return 2
    try:
        report = convert()
    except (ValueError, OSError) as error:
        print(f"convert_weights: error: {cli_words(str(error))}", file=sys.stderr)
        return 2
    logging.info("set %d layers: %s", len(report["set"]), ", ".join(report["set"]))
    if report["missing"]:
        logging.warning("not in %s, left at initialization: %s", FLAGS.input,
                        ", ".join(report["missing"]))
    if report["unused"]:
        logging.warning("in %s but not in the %s model: %s", FLAGS.input, FLAGS.model,
                        ", ".join(report["unused"]))
    print(f"wrote {FLAGS.output} ({len(report['set'])} layers set, "
          f"{len(report['missing'])} missing, {len(report['unused'])} unused)")
    return 0


if __name__ == "__main__":
    from keras_fcn.training.cli import run_main

    run_main(main)  # a bad flag too: one line on stderr, exit status 2
