"""Segments an image with an exported .tflite model, without TensorFlow or keras_fcn.

What a mobile or edge app does: it needs only the LiteRT interpreter (`pip install
ai-edge-litert numpy pillow`), the `.tflite` file and its sidecar `.json` (written next to it by
`tools/export.py`), which says the input size and type, whether the output is logits or class
ids, the class names and the palette.

    python examples/litert_segment.py model_int8.tflite street.png out.png [--overwrite]

Prints the share of pixels of each class and writes a colour label map at the photo's size
(the model's class ids resized back, nearest neighbour). The photo is read as
tools/predict.py reads it: upright by its EXIF orientation, 16-bit grey by its high byte.
An existing output is replaced only with --overwrite, and never when it is the input image,
the model or its sidecar.
"""

import json
import math
import os
import sys
import tempfile

import numpy as np
from PIL import Image, ImageOps


def sidecar_path(tflite_path):
    return os.path.splitext(tflite_path)[0] + ".json"


def _tensor_spec_problem(spec):
    """What is wrong with a sidecar's "input" entry (None if nothing)."""
    if not isinstance(spec, dict):
        return "'input' must be an object with 'shape', 'dtype' and 'quantization'"
    shape, quantization = spec.get("shape"), spec.get("quantization")
    if not (isinstance(shape, list) and len(shape) == 4
            and all(isinstance(d, int) and d > 0 for d in shape)):
        return f"'input.shape' must be [1, height, width, 3]; it is {shape!r}"
    dtype = spec.get("dtype")
    if dtype not in ("uint8", "int8", "float32", "float16"):
        return f"'input.dtype' must be uint8, int8, float32 or float16; it is {dtype!r}"
    if not (isinstance(quantization, dict) and all(
            isinstance(quantization.get(key), (int, float)) for key in ("scale", "zero_point"))):
        return "'input.quantization' must have a numeric 'scale' and 'zero_point'"
    return None


def load_sidecar(tflite_path):
    """The sidecar of ``tflite_path``, checked: a ValueError names it and what is wrong."""
    path = sidecar_path(tflite_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The sidecar {path!r} of {tflite_path!r} is missing.")
    with open(path, encoding="utf-8") as f:
        try:
            meta = json.load(f)
        except ValueError as error:  # bad JSON, or not UTF-8
            raise ValueError(f"The sidecar {path!r} is not valid JSON: {error}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"The sidecar {path!r} must hold a JSON object (as tools/export.py "
                         "writes it).")
    missing = [key for key in ("input", "class_names", "palette") if key not in meta]
    if missing:
        raise ValueError(f"The sidecar {path!r} lacks {missing}: it must give 'input', "
                         "'class_names' and 'palette' (as tools/export.py writes them).")
    problem = _tensor_spec_problem(meta["input"])
    names, palette = meta["class_names"], meta["palette"]
    if problem is None and not (isinstance(names, list) and names
                                and all(isinstance(n, str) for n in names)):
        problem = "'class_names' must be a non-empty list of names"
    if problem is None and not (isinstance(palette, list) and all(
            isinstance(c, list) and len(c) == 3
            and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette)):
        problem = "'palette' must be a list of [R, G, B] colours (0..255)"
    count = meta.get("num_classes", len(names))
    if problem is None and not (len(names) == count and len(palette) >= count):
        problem = (f"it gives {len(names)} class names and {len(palette)} palette colours "
                   f"for {count} classes (num_classes)")
    if problem is None and meta.get("output_kind", "logits") not in ("logits", "class_ids"):
        problem = f"'output_kind' must be 'logits' or 'class_ids'; it is {meta['output_kind']!r}"
    if problem is not None:
        raise ValueError(f"The sidecar {path!r} is not usable: {problem}.")
    return meta


def check_tflite_file(tflite_path):
    """Refuses a file that is no TFLite model (a flatbuffer with the identifier "TFL3" at
    bytes 4-8), a .keras model given by mistake, say: named before its sidecar is looked for."""
    with open(tflite_path, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3":
        extension = os.path.splitext(tflite_path)[1].lower()
        kind = (" It is a Keras model: export it with tools/export.py and pass the .tflite file."
                if extension in (".keras", ".h5") else "")
        raise ValueError(f"{tflite_path!r} is not a usable .tflite model: it lacks the TFLite "
                         f"identifier 'TFL3' at bytes 4-8.{kind}")


def make_interpreter(tflite_path, threads=2):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # a TensorFlow install has the same interpreter
        try:
            from tensorflow.lite import Interpreter
        except ImportError:
            raise ImportError("Running a .tflite model needs the LiteRT interpreter: "
                              "`pip install ai-edge-litert` (or TensorFlow, whose tf.lite "
                              "has the same one); neither is installed.") from None
    if not os.path.isfile(tflite_path):
        raise FileNotFoundError(f"The model {tflite_path!r} is missing.")
    try:
        interpreter = Interpreter(model_path=tflite_path, num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{tflite_path!r} is not a usable .tflite model: {error}") from None
    return interpreter


def check_model(meta, tflite_path, input_detail, output_detail):
    """The sidecar must describe the model: its input shape and its number of classes."""
    path = sidecar_path(tflite_path)
    shape = [int(d) for d in input_detail["shape"]]
    if list(meta["input"]["shape"]) != shape:
        raise ValueError(f"The sidecar {path!r} gives the input shape {meta['input']['shape']} "
                         f"but {tflite_path!r} takes {shape}.")
    dtype = np.dtype(input_detail["dtype"]).name
    if meta["input"]["dtype"] != dtype:
        raise ValueError(f"The sidecar {path!r} gives the input dtype {meta['input']['dtype']} "
                         f"but {tflite_path!r} takes {dtype}.")
    scale, zero_point = (float(v) for v in input_detail["quantization"])
    given = meta["input"]["quantization"]
    if not (math.isclose(given["scale"], scale, rel_tol=1e-6)
            and given["zero_point"] == zero_point):
        # The pixels would be quantized with the wrong scale: a wrong map, no error.
        raise ValueError(f"The sidecar {path!r} gives the input quantization (scale "
                         f"{given['scale']}, zero point {given['zero_point']}) but "
                         f"{tflite_path!r} has (scale {scale}, zero point {int(zero_point)}).")
    channels = int(output_detail["shape"][-1])
    if meta.get("output_kind", "logits") == "logits" and channels != len(meta["class_names"]):
        raise ValueError(f"The sidecar {path!r} names {len(meta['class_names'])} classes but "
                         f"{tflite_path!r} predicts {channels}.")


def check_output(out_path, protected, overwrite):
    """Refuses to write over the input image, the model or its sidecar, and over an existing
    file unless ``overwrite``."""
    from PIL import Image

    for what, path in protected:
        if os.path.abspath(path) == os.path.abspath(out_path) or (
                os.path.exists(path) and os.path.exists(out_path)
                and os.path.samefile(path, out_path)):
            raise ValueError(f"The output {out_path!r} is the {what}; choose another output.")
    if os.path.isdir(out_path):
        raise ValueError(f"The output {out_path!r} is a folder; expected an image file path.")
    extension = os.path.splitext(out_path)[1].lower()
    if extension not in Image.registered_extensions():
        raise ValueError(f"The output {out_path!r} needs an image extension (.png). "
                         f"Received: {extension or 'none'}")
    if os.path.exists(out_path) and not overwrite:
        raise FileExistsError(f"The output {out_path!r} exists; pass --overwrite to replace "
                              "it.")


def save_image(image, out_path):
    """Saves through a temporary file in the same folder (created if missing): an existing
    output is replaced only by a complete one."""
    folder, base = os.path.split(os.path.abspath(out_path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"Cannot create the folder {folder!r} of the output "
                      f"{out_path!r}: {error.strerror or error}") from None
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=os.path.splitext(base)[1],
                                   dir=folder)
        os.close(fd)
        image.save(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out_path)
    except OSError as error:  # it names the temporary file: name the output
        raise OSError(f"Cannot write the output {out_path!r}: "
                      f"{error.strerror or error}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def read_photo(image):
    """An opened photo as an RGB ``Image``, as tools/predict.py reads it: upright by its EXIF
    orientation, and 16-bit grey by its high byte (PIL's convert("RGB") clips it to white)."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "F":
        raise ValueError("The photo has 32-bit float pixels (mode F), which have no known "
                         "scale; save it as 8- or 16-bit RGB or grey.")
    if image.mode.startswith("I"):
        grey = np.asarray(image).astype(np.int64)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise ValueError("The photo has 32-bit integer pixels outside 0..65535; save it "
                             "as 8- or 16-bit.")
        return Image.fromarray((grey >> 8).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def open_photo(path):
    """The photo file ``path`` read by :func:`read_photo`; an error names the file. PIL's own
    errors do not, and one of them (``DecompressionBombError``, for a photo of more than
    ~179 million pixels) is neither an OSError nor a ValueError: it ended in a traceback."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The image {path!r} is missing." if not os.path.isdir(path)
                                else f"The image {path!r} is a folder; expected an image file.")
    try:
        opened = Image.open(path)
        opened.load()  # a damaged or truncated file fails here
    except Exception as error:  # noqa: BLE001 - PIL raises many types, see the docstring
        raise ValueError(f"The image {path!r} cannot be read: {type(error).__name__}: "
                         f"{error}") from None
    with opened:
        try:
            return read_photo(opened)
        except ValueError as error:
            raise ValueError(f"The image {path!r}: {error}") from None


def to_input(image, spec):
    """Resizes an RGB image to the model's input and converts it to its dtype."""
    _, height, width, _ = spec["shape"]
    pixels = np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR))
    dtype = np.dtype(spec["dtype"])
    scale, zero_point = spec["quantization"]["scale"], spec["quantization"]["zero_point"]
    if dtype == np.uint8 and not scale:
        return pixels[None]
    if dtype in (np.int8, np.uint8):  # quantized input: real = scale * (q - zero_point)
        info = np.iinfo(dtype)
        q = np.round(pixels / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)[None]
    return pixels.astype(dtype)[None]


def class_ids(output, kind):
    """Class ids ``(H, W)`` of the batch-1 output: a label map, or the argmax of logits."""
    if kind == "class_ids":
        return output[0].astype(np.int64)
    return output[0].argmax(-1)  # dequantization keeps the argmax (positive scale)


def to_photo_size(ids, size):
    """Class ids ``(h, w)`` at the model's size resized (nearest) to the photo's ``(W, H)``."""
    if ids.shape[::-1] == tuple(size):
        return ids
    resized = Image.fromarray(ids.astype(np.int32)).resize(size, Image.NEAREST)
    return np.asarray(resized).astype(np.int64)


def main(argv):
    overwrite = "--overwrite" in argv[1:]
    args = [a for a in argv[1:] if a != "--overwrite"]
    if len(args) != 3 or any(a.startswith("--") for a in args):
        print(__doc__)
        return 2
    tflite_path, image_path, out_path = args
    check_output(out_path, [("input image", image_path), ("model", tflite_path),
                            ("model's sidecar", sidecar_path(tflite_path))], overwrite)
    if not os.path.isfile(tflite_path):  # named first: its sidecar is missing too
        raise FileNotFoundError(f"The model {tflite_path!r} is missing.")
    check_tflite_file(tflite_path)
    meta = load_sidecar(tflite_path)
    interpreter = make_interpreter(tflite_path)
    (input_detail,), (output_detail,) = (interpreter.get_input_details(),
                                         interpreter.get_output_details())
    check_model(meta, tflite_path, input_detail, output_detail)
    image = open_photo(image_path)
    interpreter.set_tensor(input_detail["index"], to_input(image, meta["input"]))
    photo_size = image.size
    interpreter.invoke()
    ids = class_ids(interpreter.get_tensor(output_detail["index"]),
                    meta.get("output_kind", "logits"))
    names, palette = meta["class_names"], np.asarray(meta["palette"], np.uint8)
    if ids.min() < 0 or ids.max() >= len(names):
        raise ValueError(f"{tflite_path!r} predicts class {int(ids.max())} but its sidecar "
                         f"{sidecar_path(tflite_path)!r} names {len(names)} classes.")
    ids = to_photo_size(ids, photo_size)
    for class_id, count in zip(*np.unique(ids, return_counts=True)):
        print(f"{names[class_id]:>20s}: {100.0 * count / ids.size:5.1f}%")
    save_image(Image.fromarray(palette[ids]), out_path)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    # a missing file or sidecar, an unreadable image, no interpreter installed
    except (OSError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
