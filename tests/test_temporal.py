"""Temporal consistency: exact warps and flows, the consistency loss, flicker under known motion,
and the alpha mattes of video masks."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fcn.data import warp as warp_lib
from keras_fcn.inference import files, masks, predictor, temporal
from keras_fcn.training import TrainConfig, consistency, run
from tiny import TINY_FC, TINY_WIDTHS, tiny_fcn

try:
    import av  # noqa: F401

    HAS_AV = True
except ImportError:
    HAS_AV = False

try:
    import cv2  # noqa: F401

    HAS_CV2 = True
except ImportError:
    HAS_CV2 = False

H, W = 24, 32


def _shift(dx, dy, count=1):
    shifts = tf.constant([[dx, dy]] * count, tf.float32)
    return warp_lib.affine_matrices(shifts, tf.zeros([count]), tf.zeros([count]), H, W)


def _ramp_image():
    """An image linear in x and y: bilinear interpolation of it is exact at any shift."""
    y, x = np.mgrid[:H, :W].astype("float32")
    return np.stack([3 * x + y, x - 2 * y + 50, 0.5 * x + 0.25 * y], -1)[None]


def test_integer_shift_is_exact():
    image = np.random.default_rng(0).uniform(0, 255, (1, H, W, 3)).astype("float32")
    flow, valid = warp_lib.affine_flow(_shift(3, -2), H, W)
    moved = warp_lib.warp_images(image, flow).numpy()[0]
    # moved[y, x] = image[y - 2, x + 3]: the content moved 3 left and 2 down.
    np.testing.assert_array_equal(moved[2:, :W - 3], image[0, :H - 2, 3:])
    np.testing.assert_allclose(flow.numpy()[0], np.broadcast_to([3, -2], (H, W, 2)), atol=1e-5)
    expected = np.zeros((H, W), bool)
    expected[2:, :W - 3] = True
    np.testing.assert_array_equal(valid.numpy()[0], expected)
    np.testing.assert_array_equal(warp_lib.warp_images(image, flow, "nearest").numpy()[0][valid[0]],
                                  moved[valid[0].numpy()])


def test_sub_pixel_shift_matches_the_closed_form():
    flow, valid = warp_lib.affine_flow(_shift(1.25, 0.5), H, W)
    moved = warp_lib.warp_images(_ramp_image(), flow).numpy()[0]
    y, x = np.mgrid[:H, :W].astype("float32")
    expected = np.stack([3 * (x + 1.25) + y + 0.5, x + 1.25 - 2 * (y + 0.5) + 50,
                         0.5 * (x + 1.25) + 0.25 * (y + 0.5)], -1)
    inside = valid.numpy()[0]
    np.testing.assert_allclose(moved[inside], expected[inside], atol=1e-3)
    assert not inside[:, W - 2:].any() and not inside[H - 1].any()  # border left out
    assert inside[:H - 1, :W - 2].all()
    np.testing.assert_allclose(flow.numpy()[0][..., 0], 1.25, atol=1e-5)


def test_camera_path_step_flow_matches_the_frames():
    path = warp_lib.camera_path(tf.constant([4, 0], tf.int64), 4, H, W, pan=1.3, zoom=0.01,
                                rotation=0.5)
    frames = warp_lib.warp_images(np.repeat(_ramp_image(), 4, 0),
                           warp_lib.affine_flow(path, H, W)[0]).numpy()
    flow, valid = warp_lib.step_flow(path, H, W)
    back = warp_lib.warp_images(frames[:-1], flow).numpy()  # frame t seen from frame t + 1
    ok = valid.numpy()
    assert ok.mean() > 0.5
    np.testing.assert_allclose(back[ok], frames[1:][ok], atol=0.05)
    steps = np.abs(flow.numpy()[ok]).max()
    assert 0.05 < steps < 6  # small, sub-pixel-to-pixel steps


def _one_by_one_model():
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, kernel_initializer="glorot_normal")(
        inputs / 255.0))


def _pooling_model():
    inputs = keras.Input((H, W, 3))
    x = keras.layers.Conv2D(1, 3, padding="same")(inputs / 255.0 - 0.5)
    x = keras.layers.UpSampling2D(8, interpolation="bilinear")(keras.layers.AveragePooling2D(8)(x))
    return keras.Model(inputs, keras.layers.Concatenate()([10 * x, -10 * x]))  # two classes


def _loss_of(model, matrices, kind="kl"):
    keras.utils.set_random_seed(0)
    blocks = np.random.default_rng(1).uniform(0, 255, (2, H // 8, W // 8, 3))
    images = np.kron(blocks, np.ones((1, 8, 8, 1))).astype("float32")  # 8x8 blocks
    flow, valid = warp_lib.affine_flow(matrices, H, W)
    moved = warp_lib.warp_images(images, flow)
    return float(consistency.consistency_loss(model(images), model(moved), flow, valid, kind))


def test_consistency_loss_zero_for_an_equivariant_model_positive_otherwise():
    keras.utils.set_random_seed(0)
    assert _loss_of(_one_by_one_model(), _shift(3, -2, 2)) == pytest.approx(0.0, abs=1e-6)
    assert _loss_of(_pooling_model(), _shift(3, -2, 2)) > 1e-2
    # A sub-pixel shift of a per-pixel model is only interpolation error: small.
    assert _loss_of(_one_by_one_model(), _shift(0.5, 0.25, 2)) < 0.05


def test_pseudo_label_consistency_loss_matches_numpy():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2, (2, H, W, 3)).astype("float32")
    moved_logits = rng.normal(0, 2, (2, H, W, 3)).astype("float32")
    matrices = _shift(3, -2, 2)  # integer shift: the warp of probabilities is exact inside
    flow, valid = warp_lib.affine_flow(matrices, H, W)
    got = float(consistency.consistency_loss(logits, moved_logits, flow, valid, kind="ce"))
    # numpy: moved pixel (y, x) shows first pixel (y - 2, x + 3) (flow = (+3, -2) in (x, y)).
    keep = valid.numpy()
    total, count = 0.0, 0
    for n in range(2):
        for y, x in zip(*np.nonzero(keep[n])):
            sy = y + int(round(float(flow[n, y, x, 1])))
            sx = x + int(round(float(flow[n, y, x, 0])))
            target = np.argmax(logits[n, sy, sx])
            z = moved_logits[n, y, x]
            total += np.log(np.exp(z - z.max()).sum()) + z.max() - z[target]
            count += 1
    assert count > 0 and got == pytest.approx(total / count, rel=1e-4)
    # An equivariant model pays only its own uncertainty: the mean -log top probability of
    # the moved prediction over the valid pixels (closed form).
    model = _one_by_one_model()
    blocks = np.random.default_rng(1).uniform(0, 255, (2, H // 8, W // 8, 3))
    images = np.kron(blocks, np.ones((1, 8, 8, 1))).astype("float32")
    moved = warp_lib.warp_images(images, flow)
    moved_probs = tf.nn.softmax(model(moved)).numpy()
    expected = -np.log(moved_probs.max(-1))[keep].mean()
    got = float(consistency.consistency_loss(model(images), model(moved), flow, valid, "ce"))
    assert got == pytest.approx(expected, rel=1e-4)
    both = float(consistency.consistency_loss(model(images), model(moved), flow, valid, "kl+ce"))
    kl = float(consistency.consistency_loss(model(images), model(moved), flow, valid, "kl"))
    assert both == pytest.approx(got + kl, rel=1e-5)
    with pytest.raises(ValueError, match="kind"):
        consistency.consistency_loss(logits, moved_logits, flow, valid, kind="l2")
    with pytest.raises(ValueError, match="kind"):
        consistency.add_consistency(_one_by_one_model(), 1.0, kind="l2")


def test_add_warped_pairs_layout_and_training_step():
    images = np.random.default_rng(0).uniform(0, 255, (4, H, W, 3)).astype("float32")
    labels = np.random.default_rng(1).integers(0, 3, (4, H, W)).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    pairs = warp_lib.add_warped_pairs(ds, seed=3)
    (x, (m, flow, valid)), = pairs.take(1)
    assert x.shape == (4, H, W, 3) and m.shape == (2, H, W) and flow.shape == (2, H, W, 2)
    np.testing.assert_array_equal(x[:2], images[:2])
    np.testing.assert_allclose(warp_lib.warp_images(x[:2], flow), x[2:], atol=1e-3)
    again = next(iter(warp_lib.add_warped_pairs(ds, seed=3)))[1][1]
    np.testing.assert_array_equal(flow, again)  # seeded
    assert valid.numpy().mean() > 0.3

    model = _one_by_one_model()  # the FCN-8s wiring: test_tiny_fcn8s_run_with_...
    trainer = consistency.add_consistency(model, 0.5)
    assert trainer.fcn is model and trainer.trainable_weights == model.trainable_weights
    trainer.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    before = [w.copy() for w in model.get_weights()]
    history = trainer.fit(pairs, validation_data=ds, epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["val_loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # The loss of a pair batch is the compiled loss of the labelled half plus the weighted term.
    (x, y), = pairs.take(1)
    y_pred = trainer(x)
    plain = trainer.compute_loss(x=x, y=y[0], y_pred=y_pred[:2], training=False)
    term = consistency.consistency_loss(y_pred[:2], y_pred[2:], y[1], y[2])
    total = trainer.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
    assert float(total) == pytest.approx(float(plain) + 0.5 * float(term), rel=1e-5)
    with pytest.raises(ValueError, match="weight"):
        consistency.add_consistency(model, 0)


def test_tiny_fcn8s_run_with_temporal_consistency(tmp_path, capsys):
    footage = None
    if HAS_CV2:  # also the user's own frames, with their optical flow
        footage = tmp_path / "footage"
        (footage / "clip").mkdir(parents=True)
        for index in range(3):
            frame = np.roll(_textured(32, 32)[0], index, axis=1).astype("uint8")
            Image.fromarray(frame).save(footage / "clip" / f"f{index}.png")
    config = TrainConfig(dataset="shapes", model="fcn8s", widths=TINY_WIDTHS, fc_units=TINY_FC,
                         epochs=1, num_train=8, num_val=4, shapes_size=32, batch_size=4,
                         image_size=(32, 32), optimizer="adam", learning_rate=1e-3,
                         temporal_consistency=0.1, temporal_warp=(2.0, 0.01, 0.5),
                         temporal_loss="ce",
                         unlabelled_video_dir=footage and str(footage),
                         output_dir=str(tmp_path / "run"), verbose="0")
    result = run(config)
    report = result["reports"]["8s"]
    assert report["status"] == "completed"
    assert np.isfinite(report["history"][0]["loss"])
    if footage:  # 3 frames of one clip: 2 pairs, said (the start-up line gives the cap)
        assert (f"Unlabelled video: 2 frame pairs read from {footage} (--unlabelled_pairs=500 "
                "at most).") in capsys.readouterr().out
    assert os.path.exists(tmp_path / "run" / "model.keras")


def test_temporal_warp_limits_bound_the_pairs_and_bad_values_name_themselves():
    limits = warp_lib.warp_limits((2, 0.01, 0.5))
    assert limits == {"max_shift": 2.0, "max_zoom": 0.01, "max_rotation": 0.5}
    assert warp_lib.warp_limits(None) == {} and warp_lib.warp_limits(()) == {}
    ds = tf.data.Dataset.from_tensor_slices((tf.zeros([8, 40, 40, 3]), tf.zeros([8, 40, 40])))
    layout = warp_lib.add_warped_pairs(ds.batch(8), seed=3, **limits)
    flow = next(iter(layout))[1][1].numpy()
    # Largest displacement of a 40x40 frame: shift 2 + zoom 1% and 0.5 degrees of the
    # half-diagonal (28.3 px): 2 * sqrt(2) + 0.01 * 28.3 + 0.0087 * 28.3 < 3.4 px.
    assert 0.5 < np.abs(flow).max() and np.linalg.norm(flow, axis=-1).max() < 3.4
    for bad in [(1, 2), (-1, 0.01, 0.5), (2, 1.5, 0.5), (2, float("nan"), 0)]:
        with pytest.raises(ValueError, match="temporal_warp"):
            warp_lib.warp_limits(bad)
    with pytest.raises(ValueError, match="temporal_warp and temporal_loss need temporal_cons"):
        run(TrainConfig(dataset="shapes", model="fcn32s", widths=TINY_WIDTHS, fc_units=TINY_FC,
                        epochs=1, num_train=4, num_val=2, shapes_size=32, batch_size=2,
                        temporal_warp=(2.0, 0.01, 0.5), output_dir="/nonexistent/never",
                        verbose="0"))


def test_flow_flicker_static_clip_is_zero_and_tiny_clip_by_hand():
    labels = np.random.default_rng(0).integers(0, 3, (5, 6))
    still = np.zeros((5, 6, 2), "float32")
    assert temporal.flow_flicker_rate([labels] * 4, [still] * 3) == 0.0
    # Frame 2 is frame 1 moved one pixel left (flow +1 in x), with one pixel changed and one
    # pixel marked occluded; the last column has no source and is left out.
    first = np.array([[0, 1, 2, 2], [1, 1, 0, 2]])
    second = np.array([[1, 2, 2, 9], [1, 0, 1, 9]])  # (1, 2) changed from 2 to 1
    flow = np.zeros((2, 4, 2), "float32")
    flow[..., 0] = 1.0
    valid = np.ones((2, 4), bool)
    valid[0, 0] = False
    # Compared: 2 x 3 in frame minus 1 occluded = 5 pixels; changed: (1, 2) only.
    assert temporal.flow_changes(first, second, flow, valid) == (1, 5)
    assert temporal.flow_flicker_rate([first, second], [flow], [valid]) == pytest.approx(0.2)
    # Probabilities give the same labels after the warp of an integer shift.
    one_hot = np.eye(10)[first]
    assert temporal.flow_changes(one_hot, np.eye(10)[second], flow, valid) == (1, 5)
    # An unknown (NaN or infinite) flow leaves its pixel out, as the occluded one: it failed
    # as a TensorFlow gather error. (1, 2), the changed pixel, unknown: nothing changed.
    unknown = flow.copy()
    unknown[1, 2, 0], unknown[0, 1, 1] = np.nan, np.inf
    assert temporal.flow_changes(first, second, unknown, valid) == (0, 3)
    assert temporal.flow_changes(one_hot, np.eye(10)[second], unknown) == (0, 4)


def test_hysteresis_needs_lasting_evidence():
    hysteresis = masks.Hysteresis(margin=0.2, hold=2)
    states = [hysteresis(np.array(e)).tolist() for e in
              ([0.5, -0.5, 0.1], [-0.3, 0.1, -0.1], [-0.3, 0.3, -0.1], [0.1, 0.3, 0.3])]
    assert states == [[True, False, True], [True, False, True], [False, False, True],
                      [False, True, True]]


def _clipped_window_mean(x, radius):
    """The mean over each (2r+1)^2 window, cut at the borders: loops, independent of scipy."""
    out = np.empty(x.shape, "float64")
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            rows = slice(max(0, i - radius), i + radius + 1)
            out[i, j] = x[rows, max(0, j - radius):j + radius + 1].mean()
    return out


def test_feathered_alpha_keeps_the_state_side():
    image = np.zeros((8, 8, 3), "uint8")
    evidence = np.linspace(-0.3, 0.3, 64).reshape(8, 8)
    state = np.arange(64).reshape(8, 8) >= 24  # on slightly before evidence > 0
    alpha = masks.feathered_alpha(image, evidence, state, 0.2, radius=0)
    # Pixel k: evidence e = -0.3 + 0.6 k / 63, ramp 0.5 + e / (2 * 0.2) clipped to [0, 1], then
    # kept at 0.5 or above where the state is on (k >= 24), at 0.5 or below where it is off.
    ramp = [min(max(0.5 + (-0.3 + 0.6 * k / 63) / 0.4, 0.0), 1.0) for k in range(64)]
    expected = np.array([max(r, 0.5) if k >= 24 else min(r, 0.5)
                         for k, r in enumerate(ramp)]).reshape(8, 8)
    np.testing.assert_allclose(alpha, expected, atol=1e-6)
    assert alpha[0, 0] == 0.0 and alpha[7, 7] == 1.0 and alpha[3, 0] == 0.5  # k = 24: e < 0
    # A flat guide has no colour variance, so the guided filter's slope is 0 and its output
    # is the window mean of the window means of the input (windows 9 x 9 cut at the borders).
    soft = masks.feathered_alpha(np.full((8, 8, 3), 128, "uint8"), evidence, state, 0.2)
    np.testing.assert_allclose(soft, _clipped_window_mean(_clipped_window_mean(expected, 4), 4),
                               atol=1e-6)


@pytest.mark.parametrize("video_format", ["mov", "mp4"])
def test_video_masks_carry_the_alpha_as_written(tmp_path, video_format):
    if not HAS_AV:
        pytest.skip("PyAV not installed (pip install keras_fcn[video])")
    from keras_fcn.inference import video

    model_path = str(tmp_path / "tiny.keras")
    keras.utils.set_random_seed(2)
    tiny_fcn(dropout=0.0).save(model_path)
    clip = str(tmp_path / "clip.mp4")
    rng = np.random.default_rng(0)
    with video.VideoWriter(clip, fps=5) as writer:
        for _ in range(3):
            writer.write(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    opts = predictor.PredictOptions(model=model_path, inputs=[clip], classes=["1"],
                                    output_dir=str(tmp_path / "out"), video_format=video_format)
    report = files.run(opts)
    assert not report.failures and report.processed == 3
    frames = list(video.read_video(clip))
    model = predictor.Predictor(opts)
    mattes = masks.AlphaMasks([1], margin=opts.mask_margin, hold=opts.mask_hold,
                              radius=opts.mask_feather)
    expected = [mattes.step(f, model.probabilities(f))[1] for f in frames]
    for index, alpha in enumerate(expected):
        png = tmp_path / "out" / "clip" / f"frame_{index:06d}_mask_class1.png"
        with Image.open(png) as written:
            assert written.mode == "RGBA"
            rgba = np.asarray(written)
        np.testing.assert_array_equal(rgba[..., 3], alpha)
        np.testing.assert_array_equal(rgba[..., :3], frames[index])
    import av as pyav

    with pyav.open(str(tmp_path / "out" / f"clip_mask_class1.{video_format}")) as container:
        decoded = [f.to_ndarray(format="rgba" if video_format == "mov" else "gray")
                   for f in container.decode(video=0)]
    assert len(decoded) == 3
    got = decoded[-1][..., 3] if video_format == "mov" else decoded[-1]
    tolerance = 2 if video_format == "mov" else 40  # ProRes alpha is near lossless; H.264 not
    assert np.abs(got.astype(int) - expected[-1]).max() <= tolerance


def _textured(height, width, seed=0):
    """A smooth random texture (optical flow needs gradients everywhere)."""
    coarse = np.random.default_rng(seed).uniform(0, 255, (1, height // 4, width // 4, 3))
    return tf.image.resize(coarse, (height, width), "bicubic").numpy().clip(0, 255)


def test_video_pairs_flow_matches_a_known_shift_and_trains(tmp_path):
    if not HAS_CV2:
        pytest.skip("OpenCV not installed (pip install keras_fcn[flow])")
    from keras_fcn.training import video_pairs

    size = (48, 64)
    image = _textured(*size)
    flow, _ = warp_lib.affine_flow(warp_lib.affine_matrices(
        tf.constant([[2.0, -1.0]]), tf.zeros([1]), tf.zeros([1]), *size), *size)
    moved = warp_lib.warp_images(image.astype("float32"), flow).numpy()
    first, second = (np.round(f[0]).astype("uint8") for f in (image, moved))
    estimate, valid = video_pairs.estimate_flow(first, second)
    assert 0.5 < valid.mean() and not valid[:, -2:].any()  # the right border has no source
    np.testing.assert_allclose(np.median(estimate[valid], axis=0), [2.0, -1.0], atol=0.25)

    folder = tmp_path / "footage" / "clip"
    folder.mkdir(parents=True)
    for index, frame in enumerate([first, second, first]):
        Image.fromarray(frame).save(folder / f"f{index}.png")
    pairs = video_pairs.video_pair_dataset(str(tmp_path / "footage"), size)
    assert pairs.cardinality() == 2
    labelled = tf.data.Dataset.from_tensor_slices(
        (np.stack([image[0]] * 2).astype("float32"), np.zeros((2, *size), "int32"))).batch(2)
    train = video_pairs.add_video_pairs(warp_lib.add_warped_pairs(labelled),
                                        pairs.repeat().batch(1))
    x, (masks, flow, valid) = next(iter(train))
    assert x.shape[0] == 6 and masks.shape[0] == 2 and flow.shape[0] == 3 == valid.shape[0]
    trainer = consistency.add_consistency(_one_by_one_model(), 0.5)
    trainer.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    history = trainer.fit(train, epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(history["loss"][0])
    with pytest.raises(ValueError, match="no two consecutive frames"):
        video_pairs.video_pair_dataset(str(folder), size)  # image files, no clip folder


def test_video_pair_frames_come_in_natural_order(tmp_path):
    """frame_10 sorted before frame_2 as text, so the "consecutive" training pairs were not;
    16-bit frames were clipped to white (now read as the training pipelines read them)."""
    from keras_fcn.training import video_pairs

    clip = tmp_path / "footage" / "clip"
    clip.mkdir(parents=True)
    for index in (1, 2, 10):
        Image.fromarray(np.full((4, 4, 3), index, np.uint8)).save(clip / f"frame_{index}.png")
    Image.fromarray(np.full((4, 4), 200 * 256 + 99, np.uint16)).save(clip / "frame_11.png")
    (frames,) = list(video_pairs._clips(str(tmp_path / "footage")))
    assert [int(frame[0, 0, 0]) for frame in frames] == [1, 2, 10, 200]  # 16 bits: the high byte


# Review 7: reproducers of bugs that gave a wrong result or an unclear error.

RNG = np.random.default_rng(7)


def test_smoother_takes_a_numpy_alpha_and_matches_the_documented_average():
    """alpha=np.float32(0.5) was refused as 'alpha must be in (0, 1]', which it is."""
    frames = [RNG.dirichlet(np.ones(3), size=(4, 5)).astype("float32") for _ in range(4)]
    got = temporal.smooth_probabilities(frames, np.float32(0.25))
    expected = [frames[0]]
    for frame in frames[1:]:  # smoothed_t = alpha * probs_t + (1 - alpha) * smoothed_{t-1}
        expected.append(0.25 * frame + 0.75 * expected[-1])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert temporal.SmoothedSequence(np.float32(0.5)).alpha == 0.5


def test_smoother_refuses_nan_instead_of_carrying_it_for_ever():
    """One NaN made every later smoothed frame NaN (argmax 0 everywhere it spread)."""
    frames = [RNG.dirichlet(np.ones(3), size=(2, 2)).astype("float32") for _ in range(3)]
    frames[1][0, 1, 2] = np.nan
    smoother = temporal.TemporalSmoother(0.5)
    smoother(frames[0])
    with pytest.raises(ValueError, match=r"TemporalSmoother needs finite probabilities\. "
                                         r"Received: 1 NaN or infinite values \(of 12\)"):
        smoother(frames[1])
    sequence = temporal.SmoothedSequence(0.5)
    with pytest.raises(ValueError, match="finite probabilities"):
        sequence.step(np.full((2, 2, 3), np.inf, "float32"))


def test_flicker_rate_refuses_probabilities():
    """Probability maps (H, W, C) were compared value by value: a flicker near 1 that looks
    like a measurement."""
    probs = [RNG.dirichlet(np.ones(3), size=(4, 5)) for _ in range(2)]
    with pytest.raises(ValueError, match=r"FlickerMeter counts integer \(H, W\) label maps "
                                         r"\(argmax of the probabilities\)\. Received: "
                                         r"shape=\(4, 5, 3\), dtype=float64"):
        temporal.flicker_rate(probs)
    with pytest.raises(ValueError, match=r"Received: shape=\(4, 5\), dtype=float64"):
        temporal.flicker_rate([p[..., 0] for p in probs])  # one class's probability map
    assert temporal.flicker_rate([p.argmax(-1) for p in probs]) == pytest.approx(
        np.mean(probs[0].argmax(-1) != probs[1].argmax(-1)))


def test_flow_flicker_valid_masks_are_checked():
    """Too few valid masks raised IndexError, a transposed one a numpy broadcast error."""
    labels = RNG.integers(0, 3, (6, 7))
    flow = np.zeros((6, 7, 2), "float32")
    with pytest.raises(ValueError, match=r"Give one valid mask per flow\. Received: 2 flows "
                                         r"and 1 valid masks"):
        temporal.flow_flicker_rate([labels] * 3, [flow] * 2, [np.ones((6, 7), bool)])
    with pytest.raises(ValueError, match=r"valid must be an \(H, W\) = \(6, 7\) mask\. "
                                         r"Received: valid\.shape=\(7, 6\)"):
        temporal.flow_changes(labels, labels, flow, np.ones((7, 6), bool))


@pytest.mark.skipif(not HAS_CV2, reason="OpenCV not installed (pip install keras_fcn[flow])")
def test_video_pairs_do_not_pair_frames_of_different_sizes(tmp_path):
    """A 32x40 frame followed by a 30x50 one (another clip in the same folder) became a
    training pair, both stretched to one size."""
    from keras_fcn.training import video_pairs

    clip = tmp_path / "footage" / "clip"
    clip.mkdir(parents=True)
    texture = tf.image.resize(RNG.uniform(0, 255, (1, 8, 10, 3)), (32, 40), "bicubic")
    texture = texture.numpy().clip(0, 255).astype("uint8")[0]
    for name, frame in [("f1", texture), ("f2", np.roll(texture, 1, 1)),
                        ("f3", texture[:30]), ("f4", np.roll(texture[:30], 1, 1))]:
        Image.fromarray(frame).save(clip / f"{name}.png")
    pairs = list(video_pairs.video_pairs(str(tmp_path / "footage"), (32, 40)))
    assert len(pairs) == 2  # f1-f2 and f3-f4, not f2-f3
    with pytest.raises(ValueError, match=r"estimate_flow needs two uint8 RGB frames of one "
                                         r"\(H, W, 3\) shape\. Received: \(32, 40, 3\) float32"):
        video_pairs.estimate_flow(texture.astype("float32"), texture.astype("float32"))


def test_add_video_pairs_names_a_size_mismatch():
    """Pairs of another size than the training images failed inside tf.data's map with
    'Dimension 0 in both shapes must be equal'."""
    from keras_fcn.training import video_pairs

    labelled = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 24, 32, 3), "float32"), np.zeros((2, 24, 32), "int32"))).batch(2)
    pairs = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 32, 40, 3), "float32"), np.zeros((2, 32, 40, 3), "float32"),
         np.zeros((2, 32, 40, 2), "float32"), np.ones((2, 32, 40), bool))).batch(1)
    with pytest.raises(ValueError, match=r"The video pairs must have the training images' "
                                         r"size \(H, W\) \(24, 32\)\. Received: pairs of "
                                         r"\(32, 40\)"):
        video_pairs.add_video_pairs(warp_lib.add_warped_pairs(labelled), pairs)
    # Sizes known only at run time: the batch that comes is refused with the same words
    # (tf.concat failed with "ConcatOp : Dimensions of inputs should match").
    def any_size(dataset):
        specs = tuple(tf.TensorSpec([None] * s.shape.rank, s.dtype) for s in dataset.element_spec)
        return tf.data.Dataset.from_generator(dataset.as_numpy_iterator, output_signature=specs)

    train = video_pairs.add_video_pairs(warp_lib.add_warped_pairs(any_size(labelled)),
                                        any_size(pairs))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"(?s)The video pairs must have the size \(H, W\) of the training images.*"
                             r"\[32 40\].*\[24 32\]"):
        next(iter(train))


# Data / datasets / weights audit, round 4: each test failed on the code before its fix.


def test_nearest_warp_half_pixel_shift_is_a_clean_shift():
    from keras_fcn.data import warp

    labels = tf.constant(np.arange(8, dtype=np.float32).reshape(1, 1, 8, 1))
    flow = tf.constant(np.tile(np.array([0.5, 0.0], np.float32), (1, 1, 8, 1)))
    got = warp.warp_images(labels, flow, "nearest").numpy().ravel().tolist()
    assert got == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 7.0]
    coords = tf.constant([[[[1.5, 0.0], [2.5, 0.0], [2.49, 0.0]]]], tf.float32)
    assert warp.sample(labels, coords, "nearest").numpy().ravel().tolist() == [2.0, 3.0, 2.0]
