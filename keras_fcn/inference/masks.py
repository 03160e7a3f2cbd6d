"""Per-class video masks for editing: temporal hysteresis and soft, feathered alpha edges.

A mask pixel changes state only when the evidence for the change stays past a margin for a few
frames, so a label that hesitates near a tie does not flicker. The alpha is soft where the
class probability is near the decision and snaps to image edges with the guided filter of
`keras_fcn.inference.refine_boundaries`.

Example:
    >>> masks = AlphaMasks([15], margin=0.1, hold=2)

    for frame, probs in zip(frames, frame_probabilities):
        alpha = masks.step(frame, probs)[15]     # uint8 (H, W), 255 = the class
"""

import numpy as np

from keras_fcn.inference.refine import refine_boundaries


def class_evidence(probabilities, class_id):
    """``p[class_id]`` minus the largest other class probability: > 0 where the class wins.

    Example:
        >>> class_evidence(np.array([[[0.2, 0.7, 0.1]]]), 1).round(2).tolist()
        [[0.5]]
    """
    p = np.asarray(probabilities, dtype="float32")
    others = np.delete(p, class_id, axis=-1)
    return p[..., class_id] - others.max(axis=-1)


class Hysteresis:
    """Binary masks that change state only on lasting evidence.

    A pixel that is off turns on after ``hold`` consecutive frames with evidence above
    ``margin``; a pixel that is on turns off after ``hold`` frames with evidence below
    ``-margin``. The first frame (or a frame of another size) starts from evidence > 0.

    Args:
        margin: evidence margin, in [0, 1).
        hold: consecutive frames the evidence must stay past the margin, >= 1.

    Example:
        >>> hysteresis = Hysteresis(margin=0.2, hold=1)
        >>> hysteresis(np.array([0.5, -0.1])).tolist(), hysteresis(np.array([-0.1, 0.1])).tolist()
        ([True, False], [True, False])
    """

    def __init__(self, margin=0.1, hold=2):
        if isinstance(margin, bool) or not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [0, 1). Received: margin={margin!r}")
        if isinstance(hold, bool) or not isinstance(hold, (int, np.integer)) or hold < 1:
            raise ValueError(f"hold must be an integer >= 1. Received: hold={hold!r}")
        self.margin, self.hold = float(margin), int(hold)
        self.state = self.count = None

    def reset(self):
        """Forgets the state: the next frame starts anew."""
        self.state = self.count = None

    def __call__(self, evidence):
        """The bool masks of this frame from its evidence (see `class_evidence`)."""
        evidence = np.asarray(evidence, dtype="float32")
        if self.state is None or self.state.shape != evidence.shape:
            self.state = evidence > 0
            self.count = np.zeros(evidence.shape, dtype="int32")
            return self.state.copy()
        against = np.where(self.state, evidence < -self.margin, evidence > self.margin)
        self.count = np.where(against, self.count + 1, 0)
        switch = self.count >= self.hold
        self.state ^= switch
        self.count[switch] = 0
        return self.state.copy()


def feathered_alpha(image, evidence, state, margin, *, radius=4, eps=1e-2):
    """A soft alpha matte in [0, 1]: the mask ``state`` with edges from the evidence, refined
    by the guided filter with the image as guide.

    Where ``|evidence| < margin`` the alpha follows the evidence (0.5 at a tie), kept on the
    side of 0.5 that ``state`` says, so the soft edge never contradicts the hysteresis.

    Args:
        image: RGB ``(H, W, 3)`` in [0, 255].
        evidence: ``(H, W)`` from `class_evidence`.
        state: ``(H, W)`` bool mask (from `Hysteresis`).
        margin: width of the soft band, in evidence units (0: a hard mask, only filtered).
        radius, eps: of `refine_boundaries`; ``radius=0`` skips the filter.

    Returns:
        float32 ``(H, W)`` in [0, 1].

    Example:
        alpha = feathered_alpha(frame, class_evidence(probs, 15), probs.argmax(-1) == 15,
                                0.1)
    """
    state = np.asarray(state, dtype=bool)
    soft = state.astype("float32")
    if margin > 0:
        ramp = np.clip(0.5 + np.asarray(evidence, dtype="float32") / (2 * margin), 0.0, 1.0)
        soft = np.where(state, np.maximum(ramp, 0.5), np.minimum(ramp, 0.5))
    if radius == 0:
        return soft.astype("float32")
    refined = refine_boundaries(image, np.stack([1.0 - soft, soft], axis=-1), radius=radius,
                                eps=eps)
    return refined[..., 1]


def to_uint8(alpha):
    """An alpha in [0, 1] as uint8 0..255 (rounded)."""
    return np.round(np.clip(alpha, 0.0, 1.0) * 255.0).astype("uint8")


class AlphaMasks:
    """The alpha mattes of some classes over a video: hysteresis, then feathered edges.

    Args:
        class_ids: the classes to matte.
        margin: see `Hysteresis` and `feathered_alpha`.
        hold: see `Hysteresis`.
        radius, eps: of the guided filter (`refine_boundaries`); ``radius=0``: no filter.

    Example:
        >>> masks = AlphaMasks([15])

        rgba = np.dstack([frame, masks.step(frame, probs)[15]])  # PNG with alpha
    """

    def __init__(self, class_ids, margin=0.1, hold=2, radius=4, eps=1e-2):
        self.class_ids = [int(c) for c in class_ids]
        self.margin, self.radius, self.eps = float(margin), int(radius), eps
        self.hysteresis = {c: Hysteresis(margin, hold) for c in self.class_ids}

    def step(self, image, probabilities):
        """Returns ``{class_id: uint8 (H, W) alpha}`` of this frame."""
        alphas = {}
        for c in self.class_ids:
            evidence = class_evidence(probabilities, c)
            state = self.hysteresis[c](evidence)
            alphas[c] = to_uint8(feathered_alpha(image, evidence, state, self.margin,
                                                 radius=self.radius, eps=self.eps))
        return alphas
