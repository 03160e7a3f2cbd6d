"""Converts released FCN weights (Caffe .caffemodel or PyTorch .pth) into a keras_fcn model file.

The weights are converted to Keras layouts (keras_fcn.convert), loaded by layer name into a
freshly built keras_fcn model, and saved. The tool reports which layers were set, which model
layers kept their initialization, and which converted layers the model has no place for.

Example:
  python tools/convert_weights.py --input fcn8s-heavy-pascal.caffemodel --model fcn8s \\
      --num_classes 21 --output fcn8s_voc.weights.h5
  python tools/convert_weights.py --input fcn32s_from_caffe.pth --model fcn32s \\
      --output fcn32s.keras
"""

import os
import sys
import tempfile

from absl import app, flags, logging

MODELS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s_at_once")
OUTPUT_SUFFIXES = (".weights.h5", ".keras", ".npz")

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script, so that importing this
    module from tests defines no global flags that could clash with other tools)."""
    flags.DEFINE_string("input", None, "Source weights: .caffemodel, .pth/.pt, or .npz.")
    flags.DEFINE_enum("model", None, MODELS, "Which FCN to build.")
    flags.DEFINE_integer("num_classes", 21, "Number of classes of the source model.")
    flags.DEFINE_string("output", None, "Output: .weights.h5, .keras or .npz.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")
    flags.DEFINE_bool("strict", True, "Fail on source layers with weights that cannot be mapped.")
    flags.DEFINE_list("rename", [], "Source-to-keras_fcn layer names, e.g. score59=score_fr.")
    flags.DEFINE_list("widths", None, "VGG16 block widths (tests and experiments only).")
    flags.DEFINE_integer("fc_units", None, "fc6/fc7 width (tests and experiments only).")


def parse_rename(pairs):
    """Parses ["old=new", ...] into {old: new}.

    Example:
      >>> parse_rename(["score59=score_fr"])
      {'score59': 'score_fr'}
    """
    rename = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise ValueError(f"--rename expects old=new pairs. Received: {pair!r}")
        rename[old] = new
    return rename


def read_converted_weights(path, rename=None, strict=True):
    """Reads a source file into {keras_layer_name: [arrays]} by its extension.

    Args:
      path: .caffemodel, .pth/.pt (PyTorch state dict) or .npz (keras_fcn.convert.save_npz).
      rename: optional {source_name: keras_name}.
      strict: fail on source layers with weights that cannot be mapped.

    Returns:
      The converted weights.
    """
    from keras_fcn.weights import convert

    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file not found: {path!r}")
    if path.endswith(".caffemodel"):
        return convert.convert_caffemodel(path, rename=rename, strict=strict)
    if path.endswith((".pth", ".pt")):
        return convert.convert_torch_state_dict(path, rename=rename, strict=strict)
    if path.endswith(".npz"):
        weights = convert.load_npz(path)
        return {(rename or {}).get(k, k): v for k, v in weights.items()}
    raise ValueError(f"unknown input type: {path!r}. Expected .caffemodel, .pth, .pt or .npz.")


def build_model(model, num_classes, widths=None, fc_units=None):
    """Builds the keras_fcn model named by --model with random weights.

    Example:
      >>> build_model("fcn8s", 21).name  # doctest: +SKIP
      'fcn8s'
    """
    import keras_fcn

    variant = {"fcn32s": "32s", "fcn16s": "16s", "fcn8s": "8s", "fcn8s_at_once": "8s_at_once"}
    if model not in variant:
        raise ValueError(f"unknown model {model!r}. Expected one of {MODELS}.")
    kwargs = {}
    if widths is not None:
        kwargs["widths"] = tuple(int(w) for w in widths)
    if fc_units is not None:
        kwargs["fc_units"] = int(fc_units)
    if not kwargs:
        builders = {"fcn32s": keras_fcn.build_fcn32s, "fcn16s": keras_fcn.build_fcn16s}
        if model in builders:
            return builders[model](num_classes=num_classes, weights=None)
        return keras_fcn.build_fcn8s(
            num_classes=num_classes, weights=None, at_once=model == "fcn8s_at_once")
    return keras_fcn.build_fcn(variant[model], num_classes=num_classes, weights=None,
                               name=model, **kwargs)


def check_output(path, overwrite):
    """Raises if the output has an unsupported suffix, or exists and overwrite is False."""
    if not path.endswith(OUTPUT_SUFFIXES):
        raise ValueError(f"unknown output type: {path!r}. Expected one of {OUTPUT_SUFFIXES}.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"output exists: {path!r}; pass --overwrite to replace it")


def _write(model, path):
    """Writes model weights to path in the format its suffix names."""
    from keras_fcn import weights
    from keras_fcn.weights import convert

    if path.endswith(".npz"):
        convert.save_npz(weights.read_weights(model), path)
    elif path.endswith(".keras"):
        model.save(path)
    else:
        model.save_weights(path)


def save_atomically(model, path, overwrite=False):
    """Saves to a temporary file beside path, then moves it into place.

    Without overwrite, the final step is a hard link, which fails if path appeared meanwhile.

    Returns:
      The path written.
    """
    check_output(path, overwrite)
    suffix = next(s for s in OUTPUT_SUFFIXES if path.endswith(s))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".convert-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        os.remove(tmp)  # Keras refuses some existing files; only the unique name is needed.
        _write(model, tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"output exists: {path!r}; pass --overwrite to replace it") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def convert(input_path, model, output, num_classes=21, overwrite=False, strict=True,
            rename=None, widths=None, fc_units=None):
    """Converts input_path into a keras_fcn model of the given kind and saves it to output.

    Args:
      input_path: .caffemodel, .pth/.pt or .npz.
      model: one of MODELS.
      output: .weights.h5, .keras or .npz; never replaced unless overwrite.
      num_classes: classes of the source model.
      overwrite: replace an existing output.
      strict: fail on source layers with weights that cannot be mapped.
      rename: optional {source_name: keras_name}.
      widths, fc_units: non-default backbone sizes (tests and experiments).

    Returns:
      {"set": [...], "missing": [...], "unused": [...]} layer names: set from the file, model
      layers left at their initialization, converted layers the model does not have.
    """
    from keras_fcn import weights as weights_lib

    check_output(output, overwrite)  # fail before the slow part
    converted = read_converted_weights(input_path, rename=rename, strict=strict)
    net = build_model(model, num_classes, widths, fc_units)
    try:
        done = weights_lib.set_weights_by_name(net, converted)
    except ValueError as e:
        raise ValueError(f"{input_path} does not fit a {model} with num_classes={num_classes}: "
                         f"{e}") from None
    with_weights = sorted(layer.name for layer in net.layers if layer.weights)
    report = {
        "set": sorted(done),
        "missing": sorted(set(with_weights) - set(done)),
        "unused": sorted(set(converted) - set(done)),
    }
    save_atomically(net, output, overwrite)
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("input", "model", "output"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    try:
        report = convert(
            FLAGS.input, FLAGS.model, FLAGS.output, num_classes=FLAGS.num_classes,
            overwrite=FLAGS.overwrite, strict=FLAGS.strict, rename=parse_rename(FLAGS.rename),
            widths=FLAGS.widths, fc_units=FLAGS.fc_units)
    except (ValueError, OSError) as e:
        print(f"convert_weights: error: {e}", file=sys.stderr)
        return 1
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
    define_flags()
    app.run(main)
