"""Bad input files for tests/test_fuzz.py: seeded generators, no network, no big files.

Every generator takes a `random.Random` (or a seed) so a failing case can be reproduced from
its label alone. Run as a script, this module is the subprocess worker of the fuzz tests for
the native decoders (TF image decoding, the LiteRT interpreter): a segfault there kills the
worker, not the test run, and the last "START <case>" line it printed names the culprit.

    python tests/fuzz_cases.py <spec.json>    # prints one JSON result line per case
"""

import collections
import io
import json
import os
import random
import signal
import struct
import sys
import zlib
import contextlib

import numpy as np

SEED = 8  # the seed of every fuzz test (tests/test_fuzz.py)
COUNTS = collections.Counter()  # cases tried per target, filled by tests/test_fuzz.py

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Payloads that are not images but may carry an image name.
NON_IMAGES = {
    "text": b"hello, this is not an image\n",
    "html": b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n",
    "zero_bytes": b"",
    "png_signature_only": PNG_SIGNATURE,
    "jpeg_soi_only": b"\xff\xd8\xff",
}


def npy_bytes(array=None):
    """An .npy file's bytes (a common "image" mix-up in data folders)."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 4, 3), np.uint8) if array is None else array)
    return buffer.getvalue()


def non_images():
    """{label: bytes} of files that are not images."""
    return dict(NON_IMAGES, npy=npy_bytes())


def random_rgb(rng, height=16, width=20):
    """A random uint8 RGB image from `rng` (a `random.Random`)."""
    seed = rng.randrange(2 ** 31)
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)


def encode(array, fmt="PNG", mode=None, **params):
    """Encodes an array with PIL (optionally converted to `mode` first); returns bytes."""
    from PIL import Image

    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def odd_mode_images(rng, height=16, width=20):
    """{label: (bytes, extension)} of images in modes other than 8-bit RGB."""
    rgb = random_rgb(rng, height, width)
    return {
        "rgba_png": (encode(rgb, mode="RGBA"), ".png"),
        "la_png": (encode(rgb, mode="LA"), ".png"),
        "one_bit_png": (encode(rgb, mode="1"), ".png"),
        "palette_png": (encode(rgb, mode="P"), ".png"),
        "gray_png": (encode(rgb, mode="L"), ".png"),
        "i16_png": (encode(np.full((height, width), 40000, np.uint16)), ".png"),
        "cmyk_jpeg": (encode(rgb, "JPEG", mode="CMYK"), ".jpg"),
        "gray_jpeg": (encode(rgb, "JPEG", mode="L"), ".jpg"),
        "progressive_jpeg": (encode(rgb, "JPEG", progressive=True), ".jpg"),
    }


def truncations(data, rng, count):
    """`count` (label, bytes) copies of `data` cut at random offsets in [0, len)."""
    offsets = sorted(rng.sample(range(len(data)), min(count, len(data))))
    return [(f"cut@{offset}", data[:offset]) for offset in offsets]


def byte_flips(data, rng, count, max_flips=8, keep_header=8):
    """`count` (label, bytes) copies of `data` with 1..max_flips random bytes replaced.

    The first `keep_header` bytes are kept so that the file is still recognised as its
    format and the decoder itself (not the format sniffing) meets the damage.
    """
    cases = []
    for _ in range(count):
        corrupt = bytearray(data)
        positions = [rng.randrange(keep_header, len(data)) for _ in range(rng.randint(1, max_flips))]
        for position in positions:
            corrupt[position] = (corrupt[position] + rng.randrange(1, 256)) % 256
        cases.append((f"flip@{','.join(map(str, sorted(positions)))}", bytes(corrupt)))
    return cases


def insertions(data, rng, count, max_len=6):
    """`count` copies of `data` with a few random bytes inserted at a random offset."""
    cases = []
    for _ in range(count):
        position = rng.randrange(len(data))
        extra = bytes(rng.randrange(256) for _ in range(rng.randint(1, max_len)))
        cases.append((f"insert@{position}", data[:position] + extra + data[position:]))
    return cases


def _png_chunk(kind, payload):
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def bomb_png(width=100_000, height=100_000, color_type=0):
    """A small, well-formed PNG whose IHDR declares `width` x `height` pixels.

    The CRCs are right, so only the declared size is wrong: a reader that trusts the header
    would allocate width * height * channels bytes (30 GB for RGB 100000 x 100000).
    """
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1024)
    return (PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels)
            + _png_chunk(b"IEND", b""))


def mask_png(array):
    """A single-channel PNG of `array` (uint8 -> mode L, uint16 -> 16-bit)."""
    return encode(np.asarray(array))


def signed_mask_tiff(array):
    """A 32-bit signed ("I" mode) TIFF: the only common way to store negative mask values."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.int32), mode="I").save(buffer, format="TIFF")
    return buffer.getvalue()


def write(path, data):
    """Writes bytes to `path` (creating folders); returns the path as str."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as file:
        file.write(data)
    return path


def odd_arrays():
    """{label: (array, ok)} inputs for `inference.predict`; ok=False means a ValueError is due."""
    return {
        "uint8": (np.zeros((8, 8, 3), np.uint8), True),
        "bool": (np.ones((8, 8, 3), bool), False),  # 0/1 pixels: an almost black photo
        "int64": (np.full((8, 8, 3), 7, np.int64), True),
        "float16": (np.full((8, 8, 3), 100, np.float16), True),
        "float64_huge": (np.full((8, 8, 3), 1e30), False),  # outside [0, 255]
        "one_pixel": (np.zeros((1, 1, 3), np.uint8), True),
        "thin_row": (np.zeros((1, 37, 3), np.uint8), True),
        "non_contiguous": (np.zeros((8, 16, 3), np.uint8)[:, ::2], True),
        "zero_size": (np.zeros((0, 0, 3), np.uint8), False),
        "zero_height": (np.zeros((0, 8, 3), np.float32), False),
        "nan": (np.full((8, 8, 3), np.nan, np.float32), False),
        "one_nan": (np.where(np.eye(8, dtype=bool)[..., None], np.nan, 1.0), False),
        "inf": (np.full((8, 8, 3), np.inf), False),
        "strings": (np.full((8, 8, 3), "a"), False),
        "objects": (np.empty((8, 8, 3), object), False),
        "complex": (np.zeros((8, 8, 3), complex), False),
        "one_channel": (np.zeros((8, 8, 1), np.uint8), False),
        "four_channels": (np.zeros((8, 8, 4), np.uint8), False),
        "two_d": (np.zeros((8, 8), np.uint8), False),
        "five_d": (np.zeros((1, 1, 8, 8, 3), np.uint8), False),
    }


# Round 2 (issue 26, item 5): the Python API's arguments. Each pool mixes good and bad values;
# the tests decide what is valid by their own rules, not by calling the library's checks.
BATCH_SIZES = (1, 2, 3, 0, -1, 1.5, True, "2", None)
TILE_SIZES = (None, "auto", 8, 16, 1, 0, -5, 2.5, True, "big", "8")
TILE_OVERLAPS = (0, 4, 7, 16, -1, 1.0, True, "4", None)
SCALES = ((1.0,), (0.5, 1.0), (2,), (), (0,), (-1.0,), (float("nan"),), (float("inf"),),
          ("a",), (True,), (np.float32(0.75),), (1e-3,))
IMAGE_DTYPES = ("uint8", "uint16", "int32", "int8", "float16", "float32", "float64", "bool")
IMAGE_SHAPES = ((8, 8, 3), (5, 9, 3), (1, 1, 3), (8, 8), (8, 8, 4), (8, 8, 1), (0, 8, 3),
                (8, 8, 3, 1), (3,))
IMAGE_FILLS = ("zeros", "max255", "over255", "negative", "nan", "inf")


def predict_argument_cases(rng, count):
    """``count`` seeded ``(label, kwargs)`` for ``inference.predict``'s options."""
    cases = []
    for i in range(count):
        kwargs = dict(batch_size=rng.choice(BATCH_SIZES), tile_size=rng.choice(TILE_SIZES),
                      tile_overlap=rng.choice(TILE_OVERLAPS), scales=rng.choice(SCALES))
        cases.append((f"args{i}", kwargs))
    return cases


def _filled(shape, dtype, fill):
    array = np.zeros(shape, dtype)
    if array.size == 0 or fill == "zeros":
        return array
    kind = array.dtype.kind
    value = {"max255": 255, "over255": 40000, "negative": -3, "nan": np.nan, "inf": np.inf}[fill]
    if kind == "b" or (kind in "iu" and fill in ("nan", "inf")):
        return array
    if kind in "iu":
        info = np.iinfo(array.dtype)
        value = min(max(value, info.min), info.max)
    array.flat[array.size // 2] = value
    return array


def image_argument_cases(rng, count):
    """``count`` seeded ``(label, images, meta)``: one image, a stack or a list of mixed sizes;
    ``meta`` is a list of ``(shape, dtype, fill)`` per image (the test's oracle reads it)."""
    cases = []
    for i in range(count):
        kind = rng.choice(("single", "batch", "list"))
        n = 1 if kind == "single" else rng.randint(1, 3)
        shape = rng.choice(IMAGE_SHAPES)
        meta = []
        for _ in range(n):
            if kind == "list":
                shape = rng.choice(IMAGE_SHAPES)
            meta.append((shape, rng.choice(IMAGE_DTYPES), rng.choice(IMAGE_FILLS)))
        arrays = [_filled(*m) for m in meta]
        images = arrays if kind == "list" else arrays[0] if kind == "single" else np.stack(arrays)
        cases.append((f"images{i}_{kind}", images, kind, meta))
    return cases


OPTION_VALUES = {
    "mc_samples": (1, 0, -2, 10), "smooth_alpha": (0.0, -0.5, 1.5, float("nan"), 0.5, 1.0),
    "tile_size": (0, -3, 512, "auto", None, "x"), "tile_overlap": (-1, 64, 2048),
    "scales": ((), (0.0,), (1.0,), (float("inf"),)), "video_format": ("avi", "mp4", "MOV", ""),
    "mask_margin": (1.0, -0.1, 0.2), "mask_hold": (0, 1, 3), "mask_feather": (-1, 0, 4),
    "uncertainty": (["entropy"], ["bogus"], ["margin", "mc_dropout"], []),
}


def option_cases(rng, count):
    """``count`` seeded ``(label, field, value)``: one ``PredictOptions`` field changed."""
    fields = sorted(OPTION_VALUES)
    cases = []
    for i in range(count):
        field = rng.choice(fields)
        cases.append((f"opt{i}_{field}", field, rng.choice(OPTION_VALUES[field])))
    return cases


@contextlib.contextmanager
def time_limit(seconds, label):
    """Raises TimeoutError in the block after `seconds` (SIGALRM; Python-level hangs only)."""

    def expire(signum, frame):
        raise TimeoutError(f"case {label} took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------------------------
# Subprocess worker for the native decoders
# --------------------------------------------------------------------------------------------


def _outcome(fn):
    try:
        fn()
        return {"outcome": "ok"}
    except Exception as error:  # recorded, judged by the test
        return {"outcome": "error", "type": type(error).__name__,
                "mro": [c.__name__ for c in type(error).__mro__],
                "message": str(error)[:2000]}


def _dataset_case(pair, validate):
    from keras_fcn import data

    def run():
        dataset = data.make_dataset([pair], num_classes=3, validate=validate)
        for image, mask in dataset:
            if image.shape[1:3] != mask.shape[1:3]:
                raise AssertionError(f"image {image.shape} and mask {mask.shape} differ")

    return run


def _tflite_case(path):
    from keras_fcn import export

    def run():
        runner = export.TFLiteRunner(path, num_threads=1)
        shape = tuple(int(d) for d in runner.input_info()["shape"][1:])
        runner.labels(np.zeros(shape, np.uint8))

    return run


def _tflite_ops_case(path):
    from keras_fcn import export

    return lambda: export.tflite_ops(path)


def write_tflite_cases(folder, seed, count):
    """Writes a tiny valid .tflite and corrupt copies of it; returns {label: path}."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((8, 8, 3), batch_size=1)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    good = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    rng = random.Random(seed)
    cases = {"valid": good, "text": NON_IMAGES["text"], "zero_bytes": b"",
             "html": NON_IMAGES["html"], "png": encode(np.zeros((4, 4, 3), np.uint8))}
    cases.update(truncations(good, rng, count))
    cases.update(byte_flips(good, rng, count, keep_header=0))
    return {label: write(os.path.join(folder, f"model_{i}.tflite"), data)
            for i, (label, data) in enumerate(cases.items())}


def run_worker(spec):
    """Runs the cases of `spec`; prints 'START <id>' then one JSON line per case."""
    if spec.get("tflite_dir"):
        paths = write_tflite_cases(spec["tflite_dir"], spec["seed"], spec["tflite_count"])
        for label, path in paths.items():
            spec["cases"].append({"id": f"tflite:{label}", "kind": "tflite", "path": path})
            spec["cases"].append({"id": f"tflite_ops:{label}", "kind": "tflite_ops", "path": path})
    for case in spec["cases"]:
        print(f"START {case['id']}", flush=True)
        if case["kind"] == "dataset":
            fn = _dataset_case(tuple(case["pair"]), case["validate"])
        elif case["kind"] == "tflite":
            fn = _tflite_case(case["path"])
        else:
            fn = _tflite_ops_case(case["path"])
        result = dict(_outcome(fn), id=case["id"], path=case.get("path"),
                      pair=case.get("pair"))
        print("RESULT " + json.dumps(result), flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    with open(sys.argv[1], encoding="utf-8") as spec_file:
        run_worker(json.load(spec_file))
