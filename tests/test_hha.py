"""HHA encoding on synthetic scenes with known geometry."""

import re

import numpy as np
import pytest

from keras_fcn.datasets import hha

CAMERA_HEIGHT = 1.5  # metres
TILT_DEG = 20.0  # camera pitched down
WALL_DISTANCE = 4.0  # metres, horizontally in front of the camera


def _plane_scene(height=480, width=640, camera_height=CAMERA_HEIGHT, tilt_deg=TILT_DEG,
                 wall=WALL_DISTANCE, intrinsics=hha.NYU_INTRINSICS):
    """Depth of a flat floor and a wall seen by a camera at a known height and tilt.

    Returns depth (H, W), the true up vector in the camera frame, a floor mask and the true
    height (m) of every pixel above the floor.
    """
    fx, fy, cx, cy = intrinsics
    tilt = np.radians(tilt_deg)
    up = np.array([0.0, -np.cos(tilt), -np.sin(tilt)])
    forward = np.array([0.0, -np.sin(tilt), np.cos(tilt)])
    u = (np.arange(width) - cx) / fx
    v = (np.arange(height) - cy) / fy
    rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((height, width))), -1)
    along_up, along_forward = rays @ up, rays @ forward
    with np.errstate(divide="ignore"):
        t_floor = np.where(along_up < -1e-6, -camera_height / along_up, np.inf)
        t_wall = np.where(along_forward > 1e-6, wall / along_forward, np.inf)
    depth = np.minimum(t_floor, t_wall)
    true_height = camera_height + depth * along_up
    return depth.astype(np.float32), up, t_floor <= t_wall, true_height


def _interior(mask, margin=8):
    """Mask pixels at least ``margin`` px away from the mask's border (no mixed normals)."""
    from scipy import ndimage

    return ndimage.binary_erosion(mask, iterations=margin)


def test_gravity_height_and_angles_of_a_tilted_camera():
    depth, up, floor, true_height = _plane_scene()
    parts = hha.hha_components(depth)
    assert np.degrees(np.arccos(np.clip(parts["up"] @ up, -1, 1))) < 1.0
    assert parts["camera_height"] == pytest.approx(CAMERA_HEIGHT, abs=0.03)
    floor_in, wall_in = _interior(floor), _interior(~floor)
    assert np.median(parts["angle"][floor_in]) < 2.0  # floor normal parallel to gravity
    assert np.median(parts["angle"][wall_in]) == pytest.approx(90.0, abs=2.0)
    height_error = np.abs(parts["height"] / 100.0 - true_height)[floor_in | wall_in]
    assert np.percentile(height_error, 95) < 0.03  # within 3 cm


def test_uint8_channels_follow_the_original_scaling():
    depth, _, floor, true_height = _plane_scene()
    image = hha.compute_hha(depth)
    assert image.dtype == np.uint8 and image.shape == (480, 640, 3)
    floor_in, wall_in = _interior(floor), _interior(~floor)
    # disparity = 31000 / max(depth_cm, 100)
    expected_disparity = np.clip(np.rint(31000 / np.maximum(depth * 100, 100)), 0, 255)
    assert np.abs(image[..., 0].astype(int) - expected_disparity)[floor_in | wall_in].max() <= 1
    # height in cm (saturated at 255), angle + 38
    expected_height = np.clip(np.rint(true_height * 100), 0, 255)
    assert np.median(np.abs(image[..., 1] - expected_height)[wall_in]) <= 3
    assert np.median(image[..., 2][floor_in]) == pytest.approx(38, abs=2)
    assert np.median(image[..., 2][wall_in]) == pytest.approx(128, abs=2)


def test_fronto_parallel_wall_without_floor_uses_the_130cm_guess():
    depth = np.full((60, 80), 3.0, np.float32)
    parts = hha.hha_components(depth, gravity="camera")
    assert parts["camera_height"] == pytest.approx(1.3)
    assert np.median(parts["angle"]) == pytest.approx(90.0, abs=1.0)
    assert hha.compute_hha(depth, gravity="camera")[30, 40, 0] == 103  # 31000 / 300


def test_missing_depth_is_zero_and_near_depth_saturates():
    depth = np.full((40, 50), 0.5, np.float32)
    depth[5, 7] = 0.0
    depth[6, 7] = np.nan
    image = hha.compute_hha(depth)
    assert image[5, 7].tolist() == [0, 0, 0] and image[6, 7].tolist() == [0, 0, 0]
    assert image[20, 20, 0] == 255  # 31000 / max(50, 100) = 310 -> 255


def test_explicit_gravity_vector():
    depth, up, floor, _ = _plane_scene(120, 160, intrinsics=(130.0, 130.0, 80.0, 60.0))
    parts = hha.hha_components(depth, intrinsics=(130.0, 130.0, 80.0, 60.0), gravity=up)
    assert np.allclose(parts["up"], up)
    assert parts["camera_height"] == pytest.approx(CAMERA_HEIGHT, abs=0.02)


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4)), np.zeros(5)])
def test_bad_depth_shape_is_named(bad):
    with pytest.raises(ValueError, match="shape"):
        hha.compute_hha(bad)


def test_bad_intrinsics_and_gravity_are_named():
    with pytest.raises(ValueError, match="intrinsics"):
        hha.compute_hha(np.ones((4, 4)), intrinsics=(0, 1, 2, 3))
    with pytest.raises(ValueError, match="gravity"):
        hha.compute_hha(np.ones((4, 4)), gravity="down")


# Data / datasets / weights audit, round 4: each test failed on the code before its fix.


def _plane_depth(height=48, width=64, slope=0.0):
    """Depth of a plane: 1/depth is linear in the pixel row (slope 0: a fronto-parallel wall)."""
    rows = np.arange(height, dtype=np.float32)[:, None]
    return np.broadcast_to(1.0 / (1 / 3.0 + slope * (rows - height / 2)),
                           (height, width)).astype(np.float32)


@pytest.mark.parametrize("slope, missing", [(0.0, 0.0), (0.0, np.nan), (0.004, 0.0)])
def test_hha_valid_pixels_next_to_a_hole_keep_the_planes_normal(slope, missing):
    from keras_fcn.datasets import hha

    depth = _plane_depth(slope=slope)
    reference = hha.compute_hha(depth, gravity="camera")
    holed = depth.copy()
    holed[20:28, 28:36] = missing
    got = hha.compute_hha(holed, gravity="camera")
    assert got[20:28, 28:36].max() == 0
    outside = np.ones(depth.shape, bool)
    outside[20:28, 28:36] = False
    assert np.abs(got[..., 2].astype(int) - reference[..., 2])[outside].max() == 0
    np.testing.assert_array_equal(got[outside], reference[outside])
    if slope == 0.0:  # the column through the hole: 128 (a wall) right up to it
        assert got[14:34, 32, 2].tolist() == [128] * 6 + [0] * 8 + [128] * 6


@pytest.mark.parametrize("shape", [(1, 5), (5, 1), (0, 0)])
def test_hha_refuses_depth_maps_too_small(shape):
    from keras_fcn.datasets import hha

    with pytest.raises(ValueError, match=re.escape(
            f"depth must be at least 2x2 pixels: surface normals need a neighbour along each "
            f"axis. Received: depth of shape {shape}")):
        hha.compute_hha(np.ones(shape, np.float32))
