"""Segments an image with an exported .tflite model, without TensorFlow or keras_fcn.

What a mobile or edge app does: it needs only the LiteRT interpreter (`pip install
ai-edge-litert numpy pillow`), the `.tflite` file and its sidecar `.json` (written next to it by
`tools/export.py`), which says the input size and type, whether the output is logits or class
ids, the class names and the palette.

    python examples/litert_segment.py model_int8.tflite street.png out.png

Prints the share of pixels of each class and writes a colour label map.
"""

import json
import os
import sys

import numpy as np
from PIL import Image


def load_sidecar(tflite_path):
    path = os.path.splitext(tflite_path)[0] + ".json"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The sidecar {path!r} of {tflite_path!r} is missing.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def make_interpreter(tflite_path, threads=2):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # a TensorFlow install has the same interpreter
        from tensorflow.lite import Interpreter
    interpreter = Interpreter(model_path=tflite_path, num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


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


def main(argv):
    if len(argv) != 4:
        print(__doc__)
        return 2
    tflite_path, image_path, out_path = argv[1:]
    meta = load_sidecar(tflite_path)
    interpreter = make_interpreter(tflite_path)
    (input_detail,), (output_detail,) = (interpreter.get_input_details(),
                                         interpreter.get_output_details())
    interpreter.set_tensor(input_detail["index"], to_input(Image.open(image_path), meta["input"]))
    interpreter.invoke()
    ids = class_ids(interpreter.get_tensor(output_detail["index"]),
                    meta.get("output_kind", "logits"))
    names, palette = meta["class_names"], np.asarray(meta["palette"], np.uint8)
    for class_id, count in zip(*np.unique(ids, return_counts=True)):
        print(f"{names[class_id]:>20s}: {100.0 * count / ids.size:5.1f}%")
    Image.fromarray(palette[ids]).save(out_path)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, ValueError) as error:  # a missing file or sidecar, an unreadable image
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
