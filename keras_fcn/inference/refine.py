"""Edge-aware refinement of class probabilities (a cheap stand-in for a dense CRF).

Example:
    labels, probs = predict(model, image)
    refined = refine_boundaries(image, probs, radius=4, eps=1e-2)
    labels = refined.argmax(-1)
"""

import math
import numbers

import numpy as np
from scipy.ndimage import uniform_filter

from keras_fcn.inference.images import check_image


def _box_mean(x, radius):
    """Mean of ``x`` ``(H, W, ...)`` over (2r+1)^2 windows, clipped at the image borders."""
    size = (2 * radius + 1,) * 2 + (1,) * (x.ndim - 2)
    # Zeros outside the image, divided by the share of each window inside it: the mean of the
    # pixels the window covers.
    inside = uniform_filter(np.ones(x.shape[:2]), size[:2], mode="constant")
    return uniform_filter(x, size, mode="constant") / inside.reshape(inside.shape + size[2:])


def _check_probabilities(p):
    """Raises ValueError naming the first pixel whose probabilities cannot be normalized."""
    finite = np.isfinite(p)
    if not finite.all():
        raise ValueError(f"probabilities have {int(p.size - finite.sum())} NaN or infinite "
                         "values; expected a softmax in [0, 1].")
    if p.size and p.min() < 0:
        y, x, c = (int(i) for i in np.argwhere(p < 0)[0])
        raise ValueError(f"probabilities must be non-negative (a softmax, not logits). "
                         f"Received: probabilities[{y}, {x}, {c}]={float(p[y, x, c])}")
    sums = p.sum(axis=-1)
    if sums.size and sums.min() <= 0:
        y, x = (int(i) for i in np.argwhere(sums <= 0)[0])
        raise ValueError(f"probabilities must have a positive sum at every pixel (a softmax "
                         f"sums to 1). Received: all {p.shape[-1]} probabilities are 0 at "
                         f"pixel ({y}, {x}).")


def refine_boundaries(image, probabilities, *, radius=4, eps=1e-2):
    """Edge-aware refinement of class probabilities with a colour guided filter.

    Each class probability map is filtered with the image as the guide (He, Sun, Tang,
    "Guided Image Filtering", ECCV 2010): inside a window the output is an affine function
    of the image colour, so class boundaries snap to image edges. Cheap (a few box filters,
    vectorised numpy), no training, no extra package. (Dense CRF: ``pydensecrf`` 1.0rc3 fails
    to build on Python 3.11 (``longintrepr.h``); its fork ``pydensecrf2`` 1.1 ships no wheels
    but builds from source with a C++ compiler.)

    Args:
        image: RGB ``(H, W, 3)`` in [0, 255].
        probabilities: ``(H, W, C)`` softmax: finite, non-negative, with a positive sum at
            every pixel (it need not be exactly 1; the result is normalized).
        radius: window radius in pixels.
        eps: regularization (on colours scaled to [0, 1]), a finite number > 0; larger is
            smoother.

    Returns:
        float32 ``(H, W, C)`` probabilities (non-negative, summing to 1).

    Raises:
        ValueError: a negative or non-integer ``radius``; ``eps`` that is not a finite number
            > 0; shapes that do not match; an image that ``predict`` refuses (16-bit, NaN);
            probabilities that are NaN, infinite or negative (logits?) or all zero at a pixel.

    Example:
        refined = refine_boundaries(image, probs, radius=4, eps=1e-2)
        labels = refined.argmax(-1)
    """
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer. Received: radius={radius!r}")
    if (isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps)
            or eps <= 0):
        raise ValueError(f"eps must be a finite number > 0 (e.g. 1e-2). Received: eps={eps!r}")
    image = np.asarray(image)
    p = np.asarray(probabilities, dtype="float64")
    if image.ndim != 3 or p.ndim != 3 or image.shape[:2] != p.shape[:2] or image.shape[-1] != 3:
        raise ValueError(
            f"image (H, W, 3) and probabilities (H, W, C) must match. Received: "
            f"image={image.shape}, probabilities={p.shape}"
        )
    check_image("passed to refine_boundaries", image)
    _check_probabilities(p)
    guide = image.astype("float64") / 255.0
    mean_i = _box_mean(guide, radius)                                   # (H, W, 3)
    mean_p = _box_mean(p, radius)                                       # (H, W, C)
    corr_ip = _box_mean(guide[..., :, None] * p[..., None, :], radius)  # (H, W, 3, C)
    cov_ip = corr_ip - mean_i[..., :, None] * mean_p[..., None, :]
    corr_ii = _box_mean(guide[..., :, None] * guide[..., None, :], radius)  # (H, W, 3, 3)
    cov_ii = corr_ii - mean_i[..., :, None] * mean_i[..., None, :]
    a = np.linalg.solve(cov_ii + eps * np.eye(3), cov_ip)               # (H, W, 3, C)
    b = mean_p - np.einsum("hwk,hwkc->hwc", mean_i, a)
    q = np.einsum("hwk,hwkc->hwc", guide, _box_mean(a, radius)) + _box_mean(b, radius)
    q = np.maximum(q, 0.0)
    q /= np.maximum(q.sum(axis=-1, keepdims=True), 1e-12)
    return q.astype("float32")
