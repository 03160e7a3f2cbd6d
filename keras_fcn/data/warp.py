"""Smooth random camera motion as affine warps, with their exact flow and validity masks.

A warp is a 2x3 affine matrix ``M`` in pixel index coordinates ``(x, y)`` (pixel centres at
integers): the warped image at pixel ``p`` is the source image at ``M @ [x, y, 1]``. Its
*backward flow* is ``M p - p``: where the content of each pixel of the warped image sits in the
source. A pixel is *valid* when that place lies inside the source (the rest is border fill).
Everything runs in TensorFlow with stateless random draws, so it works inside ``tf.data`` and the
same seed gives the same warps.

Example:
    >>> matrices = random_affine(tf.constant([0, 7], tf.int64), batch=4, height=64, width=64)
    >>> flow, valid = affine_flow(matrices, 64, 64)

    moved = warp_images(images, flow)          # images (4, 64, 64, 3)
"""

import math

import tensorflow as tf

# The largest move of a consistency training pair: a video camera's motion between frames.
# Measured (docs/temporal.md): these cut flicker more per unit of loss weight than the first
# defaults, 8 px (every phase of the FCN-8s output stride), 5% and 2 degrees.
PAIR_MAX_SHIFT = 2.0  # pixels
PAIR_MAX_ZOOM = 0.01  # relative scale change
PAIR_MAX_ROTATION = 0.5  # degrees


def affine_matrices(shift, log_scale, angle, height, width):
    """2x3 matrices of a zoom by ``exp(log_scale)`` and a rotation by ``angle`` (radians) about
    the image centre, then a shift (pixels, ``(dx, dy)``), each of shape ``(N,)`` / ``(N, 2)``.

    Example:
        >>> affine_matrices(tf.constant([[2.0, 0.0]]), tf.zeros([1]), tf.zeros([1]), 8, 8
        ...                 ).numpy().tolist()
        [[[1.0, -0.0, 2.0], [0.0, 1.0, 0.0]]]
    """
    shift, log_scale, angle = (tf.cast(v, tf.float32) for v in (shift, log_scale, angle))
    scale = tf.exp(log_scale)
    cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
    linear = tf.stack([tf.stack([cos, -sin], -1), tf.stack([sin, cos], -1)], -2)  # (N, 2, 2)
    centre = (tf.cast(tf.stack([width, height]), tf.float32) - 1.0) / 2.0
    offset = centre - tf.linalg.matvec(linear, tf.broadcast_to(centre, tf.shape(shift))) + shift
    return tf.concat([linear, offset[..., tf.newaxis]], -1)


def compose(first, second):
    """The matrix of warping by ``first`` then by ``second`` (the same as one warp by the
    result, up to border fill and interpolation).

    Example:
        both = compose(pan, zoom)
    """
    def square(m):
        bottom = tf.broadcast_to(tf.constant([[0.0, 0.0, 1.0]]), tf.shape(m[..., :1, :]))
        return tf.concat([m, bottom], -2)
    return tf.linalg.matmul(square(first), square(second))[..., :2, :]


def invert(matrices):
    """The inverse warps of 2x3 affine ``matrices``.

    Example:
        invert(compose(a, b))  # == compose(invert(b), invert(a))
    """
    linear = tf.linalg.inv(matrices[..., :2])
    return tf.concat([linear, -tf.linalg.matvec(linear, matrices[..., 2])[..., tf.newaxis]], -1)


def pixel_grid(height, width):
    """``(H, W, 2)`` float32 ``(x, y)`` index coordinates of every pixel."""
    y, x = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32),
                       indexing="ij")
    return tf.stack([x, y], -1)


def inside(coords, height, width, margin=0.0):
    """Whether ``(..., 2)`` ``(x, y)`` coordinates lie in an ``height`` x ``width`` image
    (between the first and the last pixel centre, so bilinear sampling needs no fill), at
    least ``margin`` pixels from its edge."""
    low = margin - 1e-3  # float round-off of an exact integer warp must not drop the last row
    x, y = coords[..., 0], coords[..., 1]
    return ((x >= low) & (x <= tf.cast(width, tf.float32) - 1 - low)
            & (y >= low) & (y <= tf.cast(height, tf.float32) - 1 - low))


def _source_coords(matrices, height, width):
    """``(N, H, W, 2)``: where each pixel of the warped images comes from."""
    linear = tf.einsum("nij,hwj->nhwi", matrices[..., :2], pixel_grid(height, width))
    return linear + matrices[:, tf.newaxis, tf.newaxis, :, 2]


def affine_flow(matrices, height, width):
    """The backward flow ``(N, H, W, 2)`` of warps ``(N, 2, 3)`` and its validity ``(N, H, W)``.

    ``flow[n, y, x]`` is where (relative to ``(x, y)``) the content of pixel ``(x, y)`` of the
    warped image sits in the source; ``valid`` is False where that falls outside the source.

    Example:
        >>> flow, valid = affine_flow(affine_matrices([[1.5, 0.0]], [0.0], [0.0], 4, 4), 4, 4)
        >>> flow[0, 0, 0].numpy(), valid[0, 0].numpy()
        (array([1.5, 0. ], dtype=float32), array([ True,  True, False, False]))
    """
    source = _source_coords(matrices, height, width)
    return source - pixel_grid(height, width), inside(source, height, width)


def sample(images, coords, method="bilinear"):
    """Samples ``images`` ``(N, H, W, C)`` at ``(x, y)`` coordinates ``(N, H', W', 2)``.

    Coordinates outside the image are clamped to its edge (mask them with `inside`).
    ``method`` is "bilinear" (differentiable in ``images``) or "nearest" (for label maps;
    halves round up, ``floor(x + 0.5)``, so a half-pixel move is a clean one-pixel shift).

    Example:
        sample(images, pixel_grid(64, 64)[tf.newaxis] + 0.5)  # half a pixel right and down
    """
    if method not in ("bilinear", "nearest"):
        raise ValueError(f"method must be 'bilinear' or 'nearest'. Received: method={method!r}")
    shape = tf.shape(images)
    limit = tf.cast(tf.stack([shape[2] - 1, shape[1] - 1]), coords.dtype)
    coords = tf.clip_by_value(coords, 0.0, limit)

    def gather(corner):
        index = tf.cast(corner, tf.int32)
        return tf.gather_nd(images, tf.stack([index[..., 1], index[..., 0]], -1), batch_dims=1)

    if method == "nearest":  # floor(x + 0.5): tf.round's half-to-even drops and doubles labels
        return gather(tf.floor(coords + 0.5))
    low = tf.floor(coords)
    high = tf.minimum(low + 1.0, limit)
    weight = tf.cast(coords - low, images.dtype)
    wx, wy = weight[..., :1], weight[..., 1:]
    top = gather(low) * (1 - wx) + gather(tf.stack([high[..., 0], low[..., 1]], -1)) * wx
    bottom = (gather(tf.stack([low[..., 0], high[..., 1]], -1)) * (1 - wx)
              + gather(high) * wx)
    return top * (1 - wy) + bottom * wy


def warp_images(images, flow, method="bilinear"):
    """``images`` ``(N, H, W, C)`` moved by a backward ``flow`` ``(N, H, W, 2)``:
    ``out[n, y, x] = images[n, y + flow_y, x + flow_x]`` (see `sample`).

    Example:
        moved = warp_images(images, affine_flow(matrices, 64, 64)[0])
    """
    shape = tf.shape(flow)
    return sample(images, pixel_grid(shape[1], shape[2])[tf.newaxis] + flow, method)


def random_affine(seed, batch, height, width, *, max_shift=PAIR_MAX_SHIFT,
                  max_zoom=PAIR_MAX_ZOOM, max_rotation=PAIR_MAX_ROTATION):
    """``batch`` random small camera moves (sub-pixel shift, zoom, rotation) as 2x3 matrices.

    Args:
        seed: int ``[2]`` stateless seed.
        batch: number of matrices.
        height, width: image size (the zoom and rotation are about its centre).
        max_shift: largest shift along each axis, in pixels.
        max_zoom: largest relative scale change (0.05: between 1/1.05 and 1.05).
        max_rotation: largest rotation, in degrees.

    Example:
        >>> matrices = random_affine(tf.constant([0, 1], tf.int64), 8, 180, 240)
    """
    draws = tf.random.stateless_uniform([batch, 4], seed, -1.0, 1.0)
    return affine_matrices(draws[:, :2] * max_shift, draws[:, 2] * math.log1p(max_zoom),
                           draws[:, 3] * math.radians(max_rotation), height, width)


def camera_path(seed, num_frames, height, width, *, pan=1.5, zoom=0.004, rotation=0.15):
    """A smooth random camera path: the matrix of every frame from the first.

    Pan, zoom and rotation each move at a random speed that changes smoothly (a random
    acceleration), so the steps between frames are sub-pixel to a few pixels.

    Args:
        seed: int ``[2]`` stateless seed.
        num_frames: frames of the clip (frame 0 is the source image itself).
        height, width: image size.
        pan: largest pan speed, pixels per frame along each axis.
        zoom: largest relative zoom per frame.
        rotation: largest rotation per frame, in degrees.

    Returns:
        ``(num_frames, 2, 3)`` float32: frame ``t`` is `warp_images` of frame 0 by matrix ``t``.

    Example:
        >>> path = camera_path(tf.constant([3, 0], tf.int64), 12, 180, 240)

        frames = [warp_images(image[None], affine_flow(path[t:t + 1], 180, 240)[0])
                  for t in range(12)]
    """
    draws = tf.random.stateless_uniform([2, 4], seed, -1.0, 1.0)
    limits = tf.constant([pan, pan, math.log1p(zoom), math.radians(rotation)], tf.float32)
    speed, accel = draws[0] * limits, draws[1] * limits / max(num_frames - 1, 1)
    t = tf.range(num_frames, dtype=tf.float32)[:, tf.newaxis]
    motion = speed * t + 0.5 * accel * t * t  # (T, 4)
    return affine_matrices(motion[:, :2], motion[:, 2], motion[:, 3], height, width)


def step_flow(path, height, width):
    """The flow and validity from each frame of a `camera_path` to the frame before.

    ``flow[t]`` maps pixels of frame ``t + 1`` into frame ``t``; ``valid[t]`` excludes pixels
    whose content lies outside frame ``t``, or outside the source image or within a pixel of
    its edge (there frame ``t`` is interpolated from border fill).

    Returns:
        (``(T - 1, H, W, 2)`` flow, ``(T - 1, H, W)`` bool).

    Example:
        flow, valid = step_flow(camera_path(seed, 12, 180, 240), 180, 240)
    """
    relative = compose(invert(path[:-1]), path[1:])
    flow, valid = affine_flow(relative, height, width)
    in_source = inside(_source_coords(path[1:], height, width), height, width, margin=1.0)
    return flow, valid & in_source


def warp_limits(values):
    """The ``max_shift``, ``max_zoom``, ``max_rotation`` keywords of `random_affine` from
    ``(shift, zoom, rotation)`` (None or empty: the defaults), checked.

    Example:
        >>> warp_limits((2, 0.01, 0.5))
        {'max_shift': 2.0, 'max_zoom': 0.01, 'max_rotation': 0.5}
    """
    if not values:
        return {}
    names = ("max_shift", "max_zoom", "max_rotation")
    if len(values) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   and math.isfinite(v) and v >= 0 for v in values):
        raise ValueError("temporal_warp must be three numbers >= 0: the largest shift "
                         "(pixels), zoom (relative) and rotation (degrees), e.g. 2,0.01,0.5. "
                         f"Received: {tuple(values)!r}")
    if values[1] >= 1:
        raise ValueError(f"temporal_warp's zoom must be below 1 (a relative scale change). "
                         f"Received: {values[1]!r}")
    return {name: float(v) for name, v in zip(names, values)}


def add_warped_pairs(dataset, seed=0, **limits):
    """Turns batches ``(images, masks)`` into the training elements of the consistency loss.

    Each batch becomes ``(concat([images, moved]), (masks, flow, valid))``: ``moved`` is each
    image under its own `random_affine` warp (seeded by ``seed`` and the batch number), and
    ``flow``/``valid`` say where each pixel of ``moved`` comes from (see `affine_flow`).
    ``keras_fcn.training.consistency`` reads this layout.

    Args:
        dataset: batched ``tf.data.Dataset`` of (float images (B, H, W, 3), masks (B, H, W)).
        seed: int seed.
        **limits: ``max_shift``, ``max_zoom``, ``max_rotation`` of `random_affine`.

    Example:
        train_ds = add_warped_pairs(prepare_dataset(decoded, batch_size=8), seed=0)
    """
    def pair(index, element):
        images, masks = element
        shape = tf.shape(images)
        matrices = random_affine(tf.stack([tf.cast(seed, tf.int64), index]), shape[0],
                                 shape[1], shape[2], **limits)
        flow, valid = affine_flow(matrices, shape[1], shape[2])
        # Border fill: the dataset mean is unknown here, the edge colour is a neutral choice.
        moved = warp_images(images, flow)
        return tf.concat([images, moved], 0), (masks, flow, valid)

    return dataset.enumerate().map(pair, num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=True).prefetch(tf.data.AUTOTUNE)
