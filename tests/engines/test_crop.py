import numpy as np
import pytest

from fakewatch.engines.crop import Box, crop_face, paste_mask, square_box


def test_square_box_is_centred_and_enlarged() -> None:
    square = square_box(Box(100, 50, 140, 130), margin=1.3)
    assert square.center == (120, 90)
    assert square.width == pytest.approx(80 * 1.3)
    assert square.height == pytest.approx(80 * 1.3)


def test_iou() -> None:
    a = Box(0, 0, 10, 10)
    assert a.iou(a) == 1.0
    assert a.iou(Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 30, 30)) == 0.0


def test_crop_takes_the_enlarged_square_and_resizes() -> None:
    frame = np.zeros((300, 400, 3), dtype=np.uint8)
    frame[100:200, 150:250] = 255  # a white 100x100 "face"
    crop = crop_face(frame, Box(150, 100, 250, 200), size=64, margin=2.0)
    assert crop.image.shape == (64, 64, 3)
    assert crop.box == Box(100, 50, 300, 250)
    # the face fills the central half of the crop and nothing else
    assert crop.image[20:44, 20:44].min() == 255
    assert crop.image[:12].max() == 0 and crop.image[:, :12].max() == 0


def test_crop_at_the_frame_edge_pads_with_black_and_keeps_the_face_centred() -> None:
    frame = np.full((100, 100, 3), 200, dtype=np.uint8)
    crop = crop_face(frame, Box(-20, -20, 20, 20), size=40, margin=1.0)
    assert crop.image[:18, :18].max() == 0  # outside the frame
    assert crop.image[22:, 22:].min() == 200  # inside the frame


def test_crop_refuses_bad_frames_and_boxes() -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        crop_face(np.zeros((10, 10), dtype=np.uint8), Box(0, 0, 5, 5), 32, 1.3)
    with pytest.raises(ValueError, match="positive size"):
        crop_face(np.zeros((10, 10, 3), dtype=np.uint8), Box(5, 5, 5, 9), 32, 1.3)
    with pytest.raises(ValueError, match="outside"):
        crop_face(np.zeros((10, 10, 3), dtype=np.uint8), Box(50, 50, 60, 60), 32, 1.0)


def test_paste_mask_inverts_the_crop() -> None:
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    frame[60:140, 100:180] = 255
    crop = crop_face(frame, Box(100, 60, 180, 140), size=96, margin=1.5)
    mask = (crop.image[..., 0] > 127).astype(np.float32)
    full = paste_mask(mask, crop.box, frame.shape)
    assert full.shape == (240, 320)
    recovered = full > 0.5
    truth = frame[..., 0] > 0
    iou = (recovered & truth).sum() / (recovered | truth).sum()
    assert iou > 0.95
