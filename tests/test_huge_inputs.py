"""Huge images through tools/predict.py and keras_fcn.inference.predict (issue 26, item 4).

Images above ``predict.AUTO_TILE_PIXELS`` run in tiles by default; the peak RSS of a child
process is measured and bounded by ``2 GB + (4 C + 16) bytes per pixel`` (C classes: the
float32 probabilities, the blend weights, the label maps and the uint8 image). An image that
would run in one pass past ``MAX_UNTILED_PIXELS`` is refused up front, naming tile_size.
Decompression bombs stay refused. The tiled outputs are checked against untiled predictions of
the crops only one tile covers, and against a numpy blend of per-tile predictions.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from tiny import saved_raw_rgb_fcn
from tool_flags import run_in_process
from PIL import Image

import fuzz_cases as fc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 3
BASE_BYTES = 2e9


def rss_limit(pixels, num_classes=NUM_CLASSES):
    """The stated bound on the peak RSS of one huge-image prediction (docs/reliability.md)."""
    return BASE_BYTES + (4 * num_classes + 16) * pixels


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, path = saved_raw_rgb_fcn(tmp_path_factory.mktemp("model"), NUM_CLASSES, 5)
    return model, path


def blocks(height, width):
    """A cheap-to-encode uint8 image of coloured blocks (a PNG of a few MB at 12000x12000)."""
    colours = np.array([[200, 30, 30], [20, 180, 40], [40, 40, 220], [250, 250, 250]], "uint8")
    rows = (np.arange(height) // 700)[:, None]
    cols = (np.arange(width) // 900)[None, :]
    return colours[(rows + 2 * cols) % len(colours)]


def write_png(path, height, width):
    Image.fromarray(blocks(height, width)).save(path, compress_level=1)
    return str(path)


def single_tile_regions(length, tile=1024, overlap=64):
    """The first and last ranges of positions covered by one tile only, and the tiles' size
    (1024 grown to start on the 32-pixel grid)."""
    from keras_fcn.inference.predict import tile_layout

    size, starts = tile_layout(length, tile, overlap)
    return (slice(0, starts[1]), slice(starts[-2] + size, length)), size


def peak_rss(args, timeout):
    """Runs ``args`` in a child; returns (completed process, its peak RSS in bytes)."""
    wrapper = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
               "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
               "sys.exit(p.returncode)")
    done = subprocess.run([sys.executable, "-c", wrapper, sys.executable, *args],
                          capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    line = [x for x in done.stdout.splitlines() if x.startswith("MAXRSS")][-1]
    return done, int(line.split()[1]) * 1024  # Linux reports kB


def check_tool_on_huge_image(tmp_path, tiny, height, width):
    model, model_path = tiny
    image_path = write_png(tmp_path / "huge.png", height, width)
    out = tmp_path / "out"
    done, rss = peak_rss([os.path.join(ROOT, "tools", "predict.py"), f"--model={model_path}",
                          f"--output_dir={out}", "--noprogress", image_path], timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert rss < rss_limit(height * width), (rss, rss_limit(height * width))
    labels = np.asarray(Image.open(out / "huge_labels.png"))
    assert labels.shape == (height, width)
    _check_single_tile_crops(model, blocks(height, width), labels)
    return rss


def _check_single_tile_crops(model, image, labels):
    """The labels where only the first or the last tile counts equal untiled predictions."""
    from keras_fcn.inference import predict

    height, width = labels.shape
    (row_regions, tile_h), (col_regions, tile_w) = (single_tile_regions(height),
                                                     single_tile_regions(width))
    for rows, top in zip(row_regions, (0, height - tile_h)):
        for cols, left in zip(col_regions, (0, width - tile_w)):
            crop = image[top:top + tile_h, left:left + tile_w]
            expected = predict(model, crop, tile_size=None, return_probabilities=False)
            region = (slice(rows.start - top, rows.stop - top),
                      slice(cols.start - left, cols.stop - left))
            np.testing.assert_array_equal(labels[rows, cols], expected[region])


def test_auto_tiles_equal_a_numpy_blend_of_untiled_tile_predictions(tiny, monkeypatch):
    import importlib

    predict_module = importlib.import_module("keras_fcn.inference.predict")
    from keras_fcn.inference import predict

    model, _ = tiny
    monkeypatch.setattr(predict_module, "AUTO_TILE_SIZE", 64)
    monkeypatch.setattr(predict_module, "AUTO_TILE_PIXELS", 100 * 100)
    image = np.random.default_rng(0).integers(0, 256, (130, 150, 3)).astype("uint8")
    _, probs = predict(model, image, tile_overlap=16)
    # The reference: each tile predicted on its own, blended with ramps written out here. The
    # 64-pixel tiles grow to 66x86 so that they start on the 32-pixel grid and end flush.
    total = np.zeros((130, 150, NUM_CLASSES))
    weights = np.zeros((130, 150, 1))
    ramp = lambda n: np.clip(np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5) / 16,
                             1 / 16, 1)
    weight = np.outer(ramp(66), ramp(86))[..., None]
    for top in (0, 32, 64):
        for left in (0, 64):
            _, tile = predict(model, image[top:top + 66, left:left + 86], tile_size=None)
            total[top:top + 66, left:left + 86] += tile * weight
            weights[top:top + 66, left:left + 86] += weight
    np.testing.assert_allclose(probs, total / weights, atol=1e-5)
    # Below the threshold: one pass, as tile_size=None.
    small = image[:90, :100]
    np.testing.assert_array_equal(predict(model, small, tile_overlap=16)[1],
                                  predict(model, small, tile_size=None)[1])


def test_one_pass_past_the_limit_is_refused_up_front_naming_tile_size(tiny):
    from keras_fcn.inference import predict

    model, _ = tiny
    image = np.zeros((4097, 4097, 3), "uint8")
    with pytest.raises(ValueError, match=r"4097x4097 .*tile_size=1024.*Received: tile_size=None"):
        predict(model, image, tile_size=None)
    with pytest.raises(ValueError, match="tile_size must be a positive integer.*'big'"):
        predict(model, image, tile_size="big")


def test_tool_refuses_one_pass_past_the_limit_naming_the_flag(tmp_path, tiny):
    _, model_path = tiny
    image_path = write_png(tmp_path / "wide.png", 16, 4096 * 4096 // 16 + 16)
    # in this process, as the script runs (the memory-bound test below runs it in a subprocess)
    done = run_in_process("tools/predict.py", f"--model={model_path}",
                          f"--output_dir={tmp_path / 'out'}", "--tile_size=0", "--noprogress",
                          image_path, positional=True)
    assert "--tile_size=1024" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr[-2000:]
    assert not list(tmp_path.glob("out/*.png"))


def test_decompression_bombs_stay_refused(tmp_path):
    from keras_fcn.inference.files import read_image

    path = fc.write(tmp_path / "bomb.png", fc.bomb_png())
    with pytest.raises(ValueError, match="cannot read image.*DecompressionBomb"):
        read_image(path)
    # A real 12000x12000 image is below PIL's limit (2 x 89.5 M pixels) and is read.
    assert Image.MAX_IMAGE_PIXELS * 2 > 12000 * 12000


def test_tool_on_a_3000x2500_image_within_the_memory_bound(tmp_path, tiny):
    rss = check_tool_on_huge_image(tmp_path, tiny, 3000, 2500)
    print(f"3000x2500 peak RSS {rss / 1e9:.2f} GB")


@pytest.mark.slow
@pytest.mark.parametrize("height, width", [(12000, 12000), (2000, 30000)])
def test_tool_on_huge_images_within_the_memory_bound(tmp_path, tiny, height, width):
    rss = check_tool_on_huge_image(tmp_path, tiny, height, width)
    print(f"{height}x{width} peak RSS {rss / 1e9:.2f} GB")


API_SCRIPT = """
import sys, numpy as np, keras
sys.path.insert(0, {tests!r})
from test_huge_inputs import blocks, _check_single_tile_crops
from keras_fcn.inference import predict
model = keras.models.load_model({model!r}, compile=False)
image = blocks({height}, {width})
labels, probs = predict(model, image)
assert labels.shape == ({height}, {width}) and probs.shape == ({height}, {width}, 3)
np.testing.assert_allclose(probs[::997, ::991].sum(-1), 1.0, atol=1e-4)
_check_single_tile_crops(model, image, labels)
"""


@pytest.mark.slow
@pytest.mark.parametrize("height, width", [(12000, 12000), (2000, 30000)])
def test_predict_api_on_huge_images_within_the_memory_bound(tmp_path, tiny, height, width):
    _, model_path = tiny
    script = API_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)),
                               model=model_path, height=height, width=width)
    done, rss = peak_rss(["-c", script], timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert rss < rss_limit(height * width), (rss, rss_limit(height * width))
    print(f"API {height}x{width} peak RSS {rss / 1e9:.2f} GB")
