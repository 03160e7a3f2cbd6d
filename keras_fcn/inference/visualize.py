"""Pictures of predictions: class colours, overlays with a legend, masks, heatmaps, label PNGs.

Label maps are integer ``(H, W)`` class ids in 0..255; palettes are ``(K, 3)`` colours for the
first K ids, the PASCAL VOC colours (``keras_fcn.labels.voc_palette``) for the others.

Example:
    rgb = overlay(image, labels, alpha=0.5)
    rgb = overlay_with_legend(image, labels, class_names=VOC_CLASSES)
    save_png("labels.png", labels, palette=True)   # opens with class colours
"""

import numbers

import numpy as np

from keras_fcn import io
from keras_fcn._checks import check_int
from keras_fcn.inference.images import check_image
from keras_fcn.labels import IGNORE_LABEL, check_palette, voc_palette  # noqa: F401 (API)

OVERLAY_ROWS = 512  # overlay blends this many rows at a time


def full_palette(palette=None):
    """A (256, 3) uint8 palette: ``palette`` first, the VOC colours after it.

    Args:
        palette: optional ``(K, 3)`` colours, K <= 256: whole numbers in 0..255 (uint8 RGB).
            Floats are accepted when they are whole numbers; a float palette in [0, 1]
            (matplotlib's scale) is refused rather than truncated to near black.

    Raises:
        ValueError: a palette of another shape, or colours that are not whole numbers in
            0..255.

    Example:
        >>> full_palette([[1, 2, 3]])[:2].tolist()
        [[1, 2, 3], [128, 0, 0]]
    """
    full = np.asarray(voc_palette(256), dtype="uint8")
    if palette is not None:
        palette = check_palette(palette)
        full[: len(palette)] = palette.astype("uint8")
    return full


def check_labels(labels):
    """``labels`` as an array; raises ValueError unless it is an integer (H, W) map in 0..255."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be an integer (H, W) map. Received: shape={labels.shape}, "
            f"dtype={labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(
            f"labels must be in 0..255. Received: min={labels.min()}, max={labels.max()}"
        )
    return labels


def colorize(labels, palette=None):
    """Maps a label map to RGB colours.

    Args:
        labels: integer ``(H, W)`` class ids in 0..255.
        palette: optional ``(K, 3)`` colours for the first K ids (VOC colours otherwise), as
            for :func:`full_palette`.

    Returns:
        uint8 ``(H, W, 3)``.

    Raises:
        ValueError: ``labels`` is not an integer ``(H, W)`` map in 0..255, or a bad palette
            (see :func:`full_palette`).

    Example:
        >>> colorize(np.array([[0, 1]]))[0, 1].tolist()
        [128, 0, 0]
    """
    return full_palette(palette)[check_labels(labels)]


def overlay(image, labels, *, alpha=0.5, palette=None, ignore_label=IGNORE_LABEL):
    """Blends class colours over an image: ``round((1 - alpha) * image + alpha * colour)``.

    Args:
        image: RGB ``(H, W, 3)`` in [0, 255]: uint8, or integers or floats in that range.
        labels: integer ``(H, W)`` class ids.
        alpha: weight of the class colour, in [0, 1].
        palette: optional ``(K, 3)`` colours (VOC colours by default).
        ignore_label: pixels with this label are left as they are (None: every pixel is
            coloured, as for predicted labels, where 255 is a class of a 256-class model).

    Returns:
        uint8 ``(H, W, 3)``.

    Raises:
        ValueError: ``alpha`` outside [0, 1]; ``labels`` not an integer ``(H, W)`` map in
            0..255; an image of another shape than ``labels``, or one that ``predict`` refuses
            too (not real numbers, integers outside 0..255 such as 16-bit images, NaN or
            infinite values), or a float image outside [0, 255].

    Example:
        >>> overlay(np.full((1, 1, 3), 100, np.uint8), np.array([[1]]), alpha=0.5).tolist()
        [[[114, 50, 50]]]
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) \
            or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1]. Received: alpha={alpha!r}")
    image = np.asarray(image)
    labels = check_labels(labels)
    if image.shape[:2] != labels.shape or image.shape[-1] != 3:
        raise ValueError(
            f"image (H, W, 3) and labels (H, W) must match. Received: image={image.shape}, "
            f"labels={labels.shape}"
        )
    # predict's checks: 16-bit, NaN, non-numbers, floats outside [0, 255]
    check_image("passed to overlay", image)
    out = np.empty(image.shape, "uint8")
    # In bands of rows: the float temporaries of a whole 12000x12000 image would be ~7 GB.
    for top in range(0, image.shape[0], OVERLAY_ROWS):
        rows = slice(top, top + OVERLAY_ROWS)
        part = np.asarray(image[rows], dtype="float32")
        colours = colorize(labels[rows], palette).astype("float32")
        blended = (1.0 - alpha) * part + alpha * colours
        if ignore_label is not None:
            blended = np.where((labels[rows] == ignore_label)[..., None], part, blended)
        out[rows] = np.clip(np.floor(blended + 0.5), 0, 255).astype("uint8")
    return out


def classes_present(labels, ignore_label=IGNORE_LABEL):
    """Sorted class ids present in ``labels`` (``ignore_label`` left out).

    Example:
        >>> classes_present(np.array([[3, 0, 255, 3]]))
        [0, 3]
    """
    return [int(i) for i in np.unique(np.asarray(labels)) if i != ignore_label]


def _class_name(class_names, class_id):
    if class_names is not None and class_id < len(class_names):
        return str(class_names[class_id])
    return f"class {class_id}"


def draw_legend(height, class_ids, class_names=None, palette=None, width=160):
    """Draws a legend (colour swatch and name per class) as an RGB image.

    Args:
        height: height of the legend image in pixels.
        class_ids: class ids to list, in order.
        class_names: optional names indexed by class id.
        palette: optional ``(K, 3)`` colours (VOC colours by default).
        width: width in pixels.

    Returns:
        uint8 ``(height, width, 3)``, white background.

    Example:
        draw_legend(64, [0, 15], VOC_CLASSES).shape
    """
    from PIL import Image, ImageDraw

    colours = full_palette(palette)
    ids = [check_int(f"class_ids[{i}]", c) for i, c in enumerate(class_ids)]
    outside = [c for c in ids if not 0 <= c <= 255]
    if outside:
        raise ValueError(f"class_ids must be in 0..255 (the palette's ids). Received: "
                         f"{outside[0]}")
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    row = 14
    for i, class_id in enumerate(ids):
        top = 4 + i * row
        if top + 10 > height:
            draw.text((4, top - 2), "...", fill=(0, 0, 0))
            break
        draw.rectangle([4, top, 14, top + 10], fill=tuple(int(c) for c in colours[class_id]),
                       outline=(0, 0, 0))
        draw.text((20, top - 1), _class_name(class_names, class_id), fill=(0, 0, 0))
    return np.asarray(canvas, dtype="uint8")


def overlay_with_legend(image, labels, *, alpha=0.5, palette=None, class_names=None,
                        legend_width=160, ignore_label=IGNORE_LABEL):
    """``overlay`` with a legend of the classes present appended on the right.

    Args:
        image, labels, alpha, palette, ignore_label: as for ``overlay``.
        class_names: optional names indexed by class id.
        legend_width: width of the legend strip in pixels.

    Returns:
        uint8 ``(H, W + legend_width, 3)``; ``[:, :W]`` equals ``overlay(...)``.

    Example:
        overlay_with_legend(image, labels, class_names=VOC_CLASSES).shape[1]
    """
    blended = overlay(image, labels, alpha=alpha, palette=palette, ignore_label=ignore_label)
    legend = draw_legend(max(blended.shape[0], 1), classes_present(labels, ignore_label),
                         class_names, palette, legend_width)
    return np.concatenate([blended, legend[: blended.shape[0]]], axis=1)


def binary_mask(labels, classes):
    """A 0/255 mask of the pixels whose label is one of ``classes``.

    Args:
        labels: integer ``(H, W)`` class ids in 0..255.
        classes: a class id (an int) or a sequence of ids.

    Returns:
        uint8 ``(H, W)`` with 255 inside the mask, 0 elsewhere.

    Raises:
        ValueError: ``labels`` is not an integer ``(H, W)`` map in 0..255 (probabilities
            ``(H, W, C)``, say), or a class id that is not an int.

    Example:
        >>> binary_mask(np.array([[0, 15, 7]]), [15, 7]).tolist()
        [[0, 255, 255]]
    """
    labels = check_labels(labels)
    if isinstance(classes, np.ndarray) and classes.ndim == 0:
        classes = classes.item()
    if isinstance(classes, (str, bytes, numbers.Number, np.generic)):
        ids = [check_int("classes", classes)]
    else:
        try:
            ids = [check_int(f"classes[{i}]", c) for i, c in enumerate(classes)]
        except TypeError:  # not iterable
            raise ValueError("classes must be a class id (an int) or a sequence of ids. "
                             f"Received: classes={classes!r}") from None
    return np.where(np.isin(labels, ids), 255, 0).astype("uint8")


def heatmap(values, *, cmap="viridis", vmin=None, vmax=None):
    """Applies a matplotlib colormap to a 2-D array.

    Args:
        values: float ``(H, W)``; NaN shows in the colormap's "bad" colour (black).
        cmap: matplotlib colormap name.
        vmin, vmax: finite value range mapped to the ends of the colormap, ``vmin <= vmax``
            (by default the range of the finite values: one infinite value used to squash
            all the others into one colour).

    Returns:
        uint8 RGB ``(H, W, 3)``.

    Raises:
        ValueError: ``values`` not 2-D, or ``vmin``/``vmax`` not finite or ``vmin > vmax``.

    Example:
        heatmap(entropy(probs), vmin=0, vmax=np.log(21)).shape
    """
    import matplotlib

    values = np.asarray(values, dtype="float32")
    if values.ndim != 2:
        raise ValueError(f"heatmap expects a 2-D array. Received: shape={values.shape}")
    given = [v for v in (vmin, vmax) if v is not None]
    if not all(np.isfinite(float(v)) for v in given) or (len(given) == 2 and vmin > vmax):
        raise ValueError(f"heatmap needs finite vmin <= vmax. Received: vmin={vmin!r}, "
                         f"vmax={vmax!r}")
    finite = values[np.isfinite(values)]
    lo = (float(finite.min()) if finite.size else 0.0) if vmin is None else float(vmin)
    hi = (float(finite.max()) if finite.size else 0.0) if vmax is None else float(vmax)
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    scaled = np.where(np.isnan(values), np.nan, scaled)  # the "bad" colour, always
    rgba = matplotlib.colormaps[cmap](np.clip(scaled, 0.0, 1.0))
    return np.round(rgba[..., :3] * 255).astype("uint8")


def save_png(path, array, palette=None, overwrite=True):
    """Saves a uint8 image atomically: RGB ``(H, W, 3)``, grey ``(H, W)`` or, with
    ``palette``, a palette ("P" mode) PNG whose pixel values are the class ids.

    Args:
        path: destination ``.png`` path.
        array: uint8 image or, with ``palette``, an integer label map in 0..255.
        palette: ``True`` for the VOC palette or a ``(K, 3)`` palette; None for RGB/grey.
        overwrite: if False and ``path`` exists, raises ``FileExistsError``.

    Returns:
        ``path``.

    Example:
        save_png("labels.png", labels, palette=True)  # opens with class colours
    """
    if palette is None:
        return io.save_png(path, array, overwrite=overwrite)
    from PIL import Image

    image = Image.fromarray(check_labels(array).astype("uint8"), mode="P")
    image.putpalette(full_palette(None if palette is True else palette).reshape(-1).tolist())
    return io.save_png(path, image, overwrite=overwrite)
