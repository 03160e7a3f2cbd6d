"""NumPy colour jitter and Gaussian blur of images (never masks), for the NumPy input pipeline
(`keras_fcn.data.arrays.SegmentationPyDataset`): the twins of the tf.data pipeline's
`keras_fcn.data.augment.jitter_factors`, `apply_jitter` and `gaussian_blur`.

Needs only NumPy (SciPy for the blur): no TensorFlow, no Keras. The draws come from a NumPy
`Generator`, so a seed gives reproducible data here but not the tf.data pipeline's draws; the
same factors give the same image as `augment.apply_jitter` (up to float round-off).

Example:
    >>> rng = np.random.default_rng(0)
    >>> image = np.full((4, 4, 3), 100.0, np.float32)
    >>> jitter_factors(rng, **photometric_ranges(0.5)).shape
    (4,)

    image = apply_jitter(image, jitter_factors(rng, **photometric_ranges(0.5)))
"""

import math

import numpy as np

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # the gray level of saturation: w . (R, G, B)


def photometric_ranges(strength):
    """The colour-jitter ranges of photometric augmentation of `strength` in (0, 1].

    Brightness shift up to 64 * strength (of 255), contrast and saturation factors in
    1 +- strength / 2, hue rotation up to 0.1 * strength of a turn (36 degrees at 1). The
    0.1.0 `color_jitter=True` is strength 0.5 without hue.

    Raises:
        ValueError: `strength` is not a number in (0, 1] (the message names it).

    Example:
        >>> photometric_ranges(0.5)["contrast"]
        (0.75, 1.25)
    """
    try:
        value = float(strength)
    except (TypeError, ValueError):  # named as given: None, "strong"
        value = None
    if value is None or not 0 < value <= 1:
        raise ValueError(f"`photometric` must be in (0, 1] (0: off). Received: "
                         f"photometric={strength if value is None else value!r}")
    factors = (1.0 - value / 2, 1.0 + value / 2)
    return {"brightness": 64.0 * value, "contrast": factors, "saturation": factors,
            "hue": 0.1 * value}


def jitter_factors(rng, brightness=32.0, contrast=(0.75, 1.25), saturation=(0.75, 1.25),
                   hue=0.0):
    """Draws float32 (4,): (brightness shift in [-brightness, brightness], contrast factor,
    saturation factor, hue angle in radians, drawn in [-hue, hue] turns; exactly 0, and not
    drawn, when `hue` is 0), in this order, from the NumPy Generator `rng`.

    The ranges and meaning of `keras_fcn.data.augment.jitter_factors` (its draws are
    TensorFlow's, these NumPy's).

    Example:
        >>> factors = jitter_factors(np.random.default_rng(0), **photometric_ranges(1.0))
        >>> bool(abs(factors[0]) <= 64 and 0.5 <= factors[1] <= 1.5), factors.dtype
        (True, dtype('float32'))
        >>> float(jitter_factors(np.random.default_rng(0))[3])
        0.0
    """
    shift = rng.uniform(-brightness, brightness)
    contrast_factor = rng.uniform(*contrast)
    saturation_factor = rng.uniform(*saturation)
    angle = rng.uniform(-hue, hue) * (2 * math.pi) if hue else 0.0
    return np.array([shift, contrast_factor, saturation_factor, angle], np.float32)


def hue_matrix(angle):
    """(3, 3) rotation of RGB about the gray axis (1, 1, 1) by `angle` radians, for row-vector
    pixels (`pixels @ matrix`): gray stays gray, R + G + B and the distance from gray are kept;
    only the hue turns. An angle of 0 gives the identity exactly (`augment.hue_matrices`).

    Example:
        >>> hue_matrix(0.0).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        >>> third = hue_matrix(2 * np.pi / 3)  # a third of a turn: R -> G -> B -> R
        >>> np.round(np.array([30.0, 60.0, 90.0]) @ third, 6).tolist()
        [90.0, 30.0, 60.0]
    """
    cos, sin = math.cos(angle), math.sin(angle)
    cross = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
    rotation = cos * np.eye(3) + sin / math.sqrt(3.0) * cross + (1.0 - cos) / 3.0 * np.ones(
        (3, 3))
    return rotation.T


def apply_jitter(image, factors):
    """Colour jitter of one image (H, W, 3), 0..255, with `factors` (4,) of `jitter_factors`.

    Brightness `b`, contrast `c` (about the mean `m` after the shift) and saturation `s` (about
    the gray level `g = w . x`) compose into one affine map of each pixel `x`:
        out = s c x + (1 - s) c (w . x) 1 + (c b + (1 - c) m) (s + (1 - s) sum(w)) 1,
    then the hue rotation `hue_matrix` (which keeps the gray offset), then a clip to 0..255:
    the algebra of `keras_fcn.data.augment.apply_jitter`, for one image.

    Returns:
        float32 (H, W, 3) in 0..255.

    Example:
        >>> apply_jitter(np.full((1, 2, 3), 100.0), [10.0, 2.0, 1.0, 0.0]).tolist()
        [[[110.0, 110.0, 110.0], [110.0, 110.0, 110.0]]]
        >>> float(apply_jitter(np.full((1, 1, 3), 250.0), [20.0, 1.0, 1.0, 0.0]).max())
        255.0
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must be (H, W, 3). Received: shape={image.shape}")
    shift, contrast, saturation, angle = (float(f) for f in np.asarray(factors, np.float64))
    weights = np.array(GRAY_WEIGHTS)
    mean = float(image.mean(dtype=np.float64)) + shift
    offset = (contrast * shift + (1.0 - contrast) * mean) * (
        saturation + (1.0 - saturation) * weights.sum())
    matrix = saturation * contrast * np.eye(3) + (1.0 - saturation) * contrast * np.outer(
        weights, np.ones(3))
    matrix = (matrix @ hue_matrix(angle)).astype(np.float32)
    # Per channel, not `pixels @ matrix`: a (pixels, 3) x (3, 3) matmul goes to the BLAS,
    # whose threads then spin on every core, taking the CPU the PyDataset's workers decode
    # with (twice the CPU time per image on 2 cores, benchmarks/results/array_pipeline.md).
    pixels = image.reshape(-1, 3)
    out = np.empty_like(pixels)
    for j in range(3):
        column = out[:, j]
        np.multiply(pixels[:, 0], matrix[0, j], out=column)
        column += pixels[:, 1] * matrix[1, j]
        column += pixels[:, 2] * matrix[2, j]
    out += np.float32(offset)
    return np.clip(out, 0.0, 255.0, out=out).reshape(image.shape)


def blur_radius(max_sigma):
    """Kernel radius of the random blur: 3 standard deviations of the largest blur.

    Example:
        >>> blur_radius(1.5), blur_radius(0.1)
        (5, 1)
    """
    return max(1, math.ceil(3.0 * max_sigma))


def gaussian_blur(image, sigma, radius):
    """Blurs a float (H, W, C) image with a Gaussian of std ``sigma`` (kernel ``2 radius + 1``,
    normalized, mirrored edges: scipy.ndimage's "reflect"): the numpy twin of
    ``keras_fcn.data.augment.gaussian_blur``.

    Example:
        >>> round(float(gaussian_blur(np.ones((8, 8, 3)), 1.0, 3).mean()), 6)
        1.0
    """
    from scipy import ndimage

    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * np.square(offsets / np.float32(sigma)))
    kernel /= kernel.sum()
    rows = ndimage.correlate1d(np.asarray(image, np.float32), kernel, axis=0, mode="reflect")
    return ndimage.correlate1d(rows, kernel, axis=1, mode="reflect")
