"""Temporal consistency of video predictions: smoothing probabilities and measuring flicker.

Example:
    >>> sequence = SmoothedSequence(alpha=0.5)

    for probs in frame_probabilities:
        labels = sequence.step(probs).argmax(-1)
    >>> sequence.summary()        # flicker before and after smoothing
    {'frames': ..., 'pixels_compared': ..., 'flicker_raw': ..., 'flicker_smoothed': ...,
     'smooth_alpha': 0.5}
"""

import numbers

import numpy as np

from keras_fcn import _tf


def _check_alpha(alpha):
    # numbers.Real: a numpy float32 alpha (from a config array, say) is a number too.
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1]. Received: alpha={alpha!r}")
    return float(alpha)


class TemporalSmoother:
    """Exponential moving average of class probabilities over video frames (flow-free).

    ``smoothed_t = alpha * probs_t + (1 - alpha) * smoothed_{t-1}``; ``alpha=1`` is no
    smoothing. The average restarts when the frame size changes or on ``reset()``. NaN or
    infinite values are refused (ValueError): they would stay in the average for good.

    Args:
        alpha: weight of the current frame, in (0, 1].

    Example:
        >>> smoother = TemporalSmoother(alpha=0.5)

        smoothed = [smoother(p) for p in frame_probabilities]
    """

    def __init__(self, alpha):
        self.alpha = _check_alpha(alpha)
        self.state = None

    def reset(self):
        """Forgets the average: the next frame starts a new one."""
        self.state = None

    def __call__(self, probabilities):
        p = np.asarray(probabilities, dtype="float32")
        finite = np.isfinite(p)
        if not finite.all():
            raise ValueError(f"TemporalSmoother needs finite probabilities. Received: "
                             f"{int(p.size - finite.sum())} NaN or infinite values (of {p.size})")
        if self.state is None or self.state.shape != p.shape:
            self.state = p.copy()
        else:
            self.state = self.alpha * p + (1.0 - self.alpha) * self.state
        return self.state


def smooth_probabilities(frames, alpha):
    """Applies ``TemporalSmoother(alpha)`` to a sequence of probability maps.

    Args:
        frames: iterable of ``(H, W, C)`` probabilities.
        alpha: weight of the current frame, in (0, 1].

    Returns:
        A list of smoothed float32 ``(H, W, C)`` maps.

    Example:
        smoothed = smooth_probabilities(probs_per_frame, alpha=0.4)
    """
    smoother = TemporalSmoother(alpha)
    return [smoother(p).copy() for p in frames]


class FlickerMeter:
    """Counts label changes between consecutive frames, one frame at a time (no frame list
    kept in memory).

    Attributes:
        changed: pixels whose label changed, over all pairs compared.
        total: pixels compared, over all pairs.

    Example:
        meter = FlickerMeter()

        for labels in label_frames:
            meter.update(labels)
        meter.rate
    """

    def __init__(self):
        self.previous = None
        self.changed = 0
        self.total = 0

    @property
    def shape(self):
        """Shape of the last frame, or None before the first one (or after ``restart``)."""
        return None if self.previous is None else self.previous.shape

    def restart(self):
        """Starts a new run of frames (of any size); the counts so far are kept."""
        self.previous = None

    def update(self, labels):
        """Adds a frame of ``(H, W)`` labels; a frame of another size than the previous one
        raises ValueError, and so do probabilities (``(H, W, C)``, or fractions)."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.dtype.kind not in "biuf" or (
                labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels))):
            # Probabilities counted every changed value: a rate near 1 that looks real.
            raise ValueError(f"FlickerMeter counts integer (H, W) label maps (argmax of the "
                             f"probabilities). Received: shape={labels.shape}, "
                             f"dtype={labels.dtype}")
        if self.previous is not None:
            if self.previous.shape != labels.shape:
                raise ValueError(
                    f"Frames must share one size. Received: {self.previous.shape} and "
                    f"{labels.shape}"
                )
            self.changed += int(np.count_nonzero(self.previous != labels))
            self.total += labels.size
        self.previous = labels.copy()

    @property
    def rate(self):
        """Fraction of pixels that changed label, over all consecutive pairs (0.0 if none)."""
        return self.changed / self.total if self.total else 0.0


def flicker_rate(label_frames):
    """Fraction of pixels whose label changes between consecutive frames, over all pairs.

    Args:
        label_frames: sequence of integer ``(H, W)`` label maps of one size.

    Returns:
        A float in [0, 1] (0.0 for fewer than 2 frames).

    Example:
        >>> flicker_rate([np.array([[0, 1]]), np.array([[0, 2]]), np.array([[0, 2]])])
        0.25
    """
    meter = FlickerMeter()
    for labels in label_frames:
        meter.update(labels)
    return meter.rate


def flow_changes(previous, current, flow, valid=None):
    """Label changes between two consecutive frames once the first is moved by the known flow.

    Args:
        previous: the first frame's ``(H, W)`` labels, or ``(H, W, C)`` probabilities (moved
            with bilinear interpolation, then the argmax; labels are moved to the nearest pixel).
        current: the second frame's ``(H, W)`` labels or ``(H, W, C)`` probabilities.
        flow: ``(H, W, 2)`` backward flow: pixel ``p`` of ``current`` shows what pixel
            ``p + flow[p]`` (``(x, y)``) of ``previous`` shows.
        valid: optional ``(H, W)`` bool, False at occluded pixels; pixels whose
            ``p + flow[p]`` is outside the frame, or whose flow is NaN or infinite (an
            unknown flow, as optical-flow files mark it), are left out as well.

    Returns:
        ``(changed, compared)`` pixel counts.

    Example:
        >>> flow = np.zeros((1, 3, 2), "float32"); flow[..., 0] = 1.0  # content moved left by 1
        >>> flow_changes(np.array([[0, 1, 2]]), np.array([[1, 0, 0]]), flow)
        (1, 2)
    """
    previous, current = np.asarray(previous), np.asarray(current)
    flow = np.asarray(flow, dtype="float32")
    if current.ndim == 3:
        current = current.argmax(-1)
    height, width = current.shape
    if flow.shape != (height, width, 2) or previous.shape[:2] != (height, width):
        raise ValueError(f"previous, current (H, W) and flow (H, W, 2) must match. Received: "
                         f"previous={previous.shape}, current={current.shape}, "
                         f"flow={flow.shape}")
    if valid is not None and np.shape(valid) != (height, width):
        raise ValueError(f"valid must be an (H, W) = {(height, width)} mask. Received: "
                         f"valid.shape={np.shape(valid)}")
    known = np.isfinite(flow).all(-1)
    flow = np.where(known[..., None], flow, 0.0).astype("float32")  # sampled, then left out
    _tf.require("keras_fcn.inference.flow_changes (optical-flow warping)")
    from keras_fcn.data import warp as warp_lib

    source = warp_lib.pixel_grid(height, width) + flow
    keep = warp_lib.inside(source, height, width).numpy() & known
    if valid is not None:
        keep &= np.asarray(valid, dtype=bool)
    if previous.ndim == 3:
        moved = warp_lib.sample(previous[None].astype("float32"), source[None]).numpy()
        moved = moved[0].argmax(-1)
    else:
        moved = warp_lib.sample(previous[None, ..., None], source[None], "nearest").numpy()
        moved = moved[0, ..., 0]
    return int(np.count_nonzero((moved != current) & keep)), int(np.count_nonzero(keep))


def flow_flicker_rate(frames, flows, valids=None):
    """Fraction of pixels whose label changes between consecutive frames, after moving each
    frame by the known flow to the next one; occluded and out-of-frame pixels are left out.

    Args:
        frames: ``T`` label maps ``(H, W)`` or probabilities ``(H, W, C)``.
        flows: ``T - 1`` flows; ``flows[t]`` maps pixels of frame ``t + 1`` into frame ``t``
            (see `flow_changes`, `keras_fcn.data.warp.step_flow`).
        valids: optional ``T - 1`` bool masks (False: occluded).

    Returns:
        A float in [0, 1] (0.0 when nothing is compared).

    Example:
        flow, valid = step_flow(path, 180, 240)
        flow_flicker_rate(label_frames, flow.numpy(), valid.numpy())
    """
    frames = list(frames)
    if len(flows) != len(frames) - 1:
        raise ValueError(f"Give one flow per pair of consecutive frames. Received: "
                         f"{len(frames)} frames and {len(flows)} flows")
    if valids is not None and len(valids) != len(flows):
        raise ValueError(f"Give one valid mask per flow. Received: {len(flows)} flows and "
                         f"{len(valids)} valid masks")
    changed = compared = 0
    for t in range(len(frames) - 1):
        counts = flow_changes(frames[t], frames[t + 1], flows[t],
                              None if valids is None else valids[t])
        changed, compared = changed + counts[0], compared + counts[1]
    return changed / compared if compared else 0.0


class SmoothedSequence:
    """Smooths the probabilities of a frame sequence and measures the flicker before and after.

    A frame of another size than the previous one starts a new run (the average and the
    frame-to-frame comparison restart; the flicker counts go on).

    Args:
        alpha: weight of the current frame, in (0, 1]; 1 is no smoothing.

    Example:
        >>> sequence = SmoothedSequence(alpha=0.5)

        smoothed = [sequence.step(p) for p in frame_probabilities]
        >>> sequence.summary()["flicker_smoothed"] <= sequence.summary()["flicker_raw"]
        True
    """

    def __init__(self, alpha):
        self.alpha = _check_alpha(alpha)
        self.smoother = TemporalSmoother(alpha)
        self.raw = FlickerMeter()
        self.smoothed = FlickerMeter()
        self.frames = 0

    def step(self, probabilities):
        """Returns the probabilities to use for this frame, updating the meters."""
        labels = np.argmax(probabilities, axis=-1)
        self.frames += 1
        if self.raw.shape not in (None, labels.shape):
            self.smoother.reset()
            self.raw.restart()
            self.smoothed.restart()
        self.raw.update(labels)
        if self.alpha >= 1.0:
            return probabilities
        out = self.smoother(probabilities)
        self.smoothed.update(np.argmax(out, axis=-1))
        return out

    @property
    def compared(self):
        """Pixels compared between consecutive frames so far (0 before a second frame)."""
        return self.raw.total

    def summary(self):
        """The flicker before (and, when smoothing, after) smoothing, as a JSON-able dict:
        "frames" seen, "pixels_compared" between consecutive frames of one size, the share of
        them whose label changed ("flicker_raw", "flicker_smoothed"), "smooth_alpha"."""
        result = {"frames": self.frames, "pixels_compared": self.raw.total,
                  "flicker_raw": self.raw.rate}
        if self.alpha < 1.0:
            result["flicker_smoothed"] = self.smoothed.rate
            result["smooth_alpha"] = self.alpha
        return result
