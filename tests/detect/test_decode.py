"""The numpy decoder (used on device, host and evaluate) equals keras-cv's own decoding."""

from __future__ import annotations

import numpy as np
import pytest

from kdefect.core import detect_decode as dd


@pytest.fixture(scope="module")
def tiny_yolo():
    from kdefect.models.detectors import build_detector

    return build_detector("yolov8", "yolo_v8_tiny", 3, (64, 64))


def test_yolo_boxes_and_scores_match_keras_cv(tiny_yolo):
    from keras_cv.src.models.object_detection.yolo_v8 import yolo_v8_detector as y

    from kdefect.keras import tf
    from kdefect.models.detectors import raw_head

    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    out = tiny_yolo(x, training=False)
    anchors, strides = y.get_anchors(image_shape=(64, 64, 3))
    ref = y.dist2bbox(y.decode_regression_to_boxes(out["boxes"]), anchors) * strides[:, None]
    raw_boxes, raw_logits = raw_head(tiny_yolo, "yolov8")(x, training=False)
    for i in range(2):
        mine = dd.yolo_boxes(np.asarray(raw_boxes[i]), (64, 64))
        np.testing.assert_allclose(mine, np.asarray(ref[i]), atol=1e-3)
    np.testing.assert_allclose(dd.sigmoid(np.asarray(raw_logits)), np.asarray(out["classes"]), atol=1e-5)
    # keras-cv's NMS is class-agnostic: our agnostic mode keeps the same boxes in the same order
    nms = tiny_yolo.prediction_decoder.__class__(bounding_box_format="xyxy", from_logits=False,
                                                 iou_threshold=0.5, confidence_threshold=0.3, max_detections=20)
    kc = nms(tf.constant(ref), out["classes"])
    mine = dd.select(np.asarray(ref[0]), np.asarray(out["classes"][0]), 0.3, 0.5, 20, class_agnostic=True)
    n = int(kc["num_detections"][0])
    assert n == len(mine.boxes)
    np.testing.assert_allclose(mine.boxes, np.asarray(kc["boxes"][0][:n]), atol=1e-3)
    np.testing.assert_array_equal(mine.classes, np.asarray(kc["classes"][0][:n]))


def test_retina_anchors_and_deltas_match_keras_cv():
    from kdefect.keras import tf  # first: it sets the Keras switch that keras-cv reads at import

    from keras_cv.src.bounding_box.converters import _decode_deltas_to_boxes  # isort: skip
    from keras_cv.src.models.object_detection.retinanet.retinanet import RetinaNet  # isort: skip

    for size in ((64, 64), (160, 96)):
        gen = RetinaNet.default_anchor_generator("xyxy")
        ref = np.concatenate([np.asarray(a) for a in gen(image_shape=(*size, 3)).values()])
        mine = dd.retina_anchors(size)
        np.testing.assert_allclose(mine, ref, atol=1e-4)
        deltas = np.random.default_rng(1).normal(0, 1, (len(mine), 4)).astype(np.float32)
        kc = _decode_deltas_to_boxes(anchors=tf.constant(ref), boxes_delta=tf.constant(deltas[None]),
                                     anchor_format="xyxy", box_format="xyxy", variance=dd.RETINA_VARIANCE,
                                     image_shape=(*size, 3))
        np.testing.assert_allclose(dd.retina_boxes(deltas, mine), np.asarray(kc)[0], rtol=1e-4, atol=1e-3)


def test_retinanet_with_its_own_anchors_matches_keras_cv_and_its_sidecar_layout():
    """detect.anchor_sizes / anchor_aspect_ratios / match_iou reach the keras-cv model, its raw head and the
    sidecar, and the numpy decoder regenerates the very anchors the model was trained on."""
    from kdefect.models.detectors import Anchors, build_detector, decoding_params, raw_head

    size, anchors = (64, 96), Anchors((16.0, 32.0, 64.0, 128.0, 256.0), (0.25, 0.5, 1.0, 2.0, 4.0), (0.3, 0.45))
    model = build_detector("retinanet", "resnet_tiny_v1", 3, size, head_convs=1, anchors=anchors)
    enc = model.label_encoder
    assert (enc.negative_threshold, enc.positive_threshold) == (0.3, 0.45)
    ref = np.concatenate([np.asarray(a) for a in model.anchor_generator(image_shape=(*size, 3)).values()])
    params = decoding_params("retinanet", size, anchors)
    assert params["anchor_sizes"] == [16, 32, 64, 128, 256] and params["aspect_ratios"] == [0.25, 0.5, 1, 2, 4]
    mine = dd.retina_anchors(size, sizes=params["anchor_sizes"], ratios=params["aspect_ratios"])
    assert len(mine) == len(ref) == len(dd.retina_anchors(size)) // 9 * 15  # 3 scales x 5 ratios per location
    np.testing.assert_allclose(mine, ref, atol=1e-4)
    boxes, logits = raw_head(model, "retinanet")(np.zeros((1, *size, 3), np.float32), training=False)
    assert boxes.shape == (1, len(ref), 4) and logits.shape == (1, len(ref), 3)
    assert decoding_params("yolov8", size, anchors) == dd.decoding_params("yolov8", size)  # anchor-free
    with pytest.raises(ValueError, match="no anchor setting aspect_ratios"):
        dd.decoding_params("yolov8", size, {"aspect_ratios": [1.0]})


def test_classwise_nms_keeps_overlapping_boxes_of_other_classes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40]], np.float32)
    scores = np.zeros((4, 2), np.float32)
    scores[0, 0], scores[1, 0], scores[2, 1], scores[3, 0] = 0.9, 0.8, 0.7, 0.6
    det = dd.select(boxes, scores, 0.5, 0.5)
    assert det.classes.tolist() == [0, 1, 0] and np.allclose(det.scores, [0.9, 0.7, 0.6])
    agn = dd.select(boxes, scores, 0.5, 0.5, class_agnostic=True)
    assert len(agn.boxes) == 2
    assert len(dd.select(boxes, scores, 0.95, 0.5).boxes) == 0


def test_decode_structure_and_threshold():
    params = {"architecture": "yolov8", "input_size": [64, 64], "score_threshold": 0.5, "iou_threshold": 0.5}
    a = len(dd.yolo_anchor_points((64, 64))[0])
    rng = np.random.default_rng(0)
    raw = {"boxes": rng.normal(0, 1, (a, 64)).astype(np.float32), "scores": rng.normal(-2, 2, (a, 3))}
    det = dd.decode(raw, params)
    assert det.boxes.shape[1] == 4 and det.boxes.dtype == np.float32
    assert (det.boxes >= 0).all() and (det.boxes <= 64).all() and (det.boxes[:, 2:] >= det.boxes[:, :2]).all()
    assert (det.scores > 0.5).all() and set(det.classes.tolist()) <= {0, 1, 2}
    assert np.all(np.diff(det.scores) <= 0)  # best first
    with pytest.raises(Exception, match="architecture"):
        dd.decode(raw, {**params, "architecture": "ssd"})


@pytest.mark.parametrize("arch", ["yolov8", "retinanet"])
@pytest.mark.parametrize("agnostic", [False, True])
def test_decoding_only_candidate_anchors_equals_decoding_every_anchor(arch, agnostic):
    """``decode`` decodes just the anchors above the score threshold: same boxes, order and anchors as all of them."""
    size = (64, 96)
    params = {**dd.decoding_params(arch, size), "score_threshold": 0.6, "iou_threshold": 0.5,
              "class_agnostic": agnostic}
    rng = np.random.default_rng(3)
    n = len(dd.yolo_anchor_points(size)[0]) if arch == "yolov8" else len(dd.retina_anchors(size))
    raw = {"boxes": rng.normal(0, 1, (n, 64 if arch == "yolov8" else 4)).astype(np.float32),
           "scores": rng.normal(-1, 1.5, (n, 3)).astype(np.float32)}
    got = dd.decode(raw, params)
    every = dd.DECODERS.get(arch).boxes(raw["boxes"], size, params, None)
    every = np.clip(every, 0, [size[1], size[0], size[1], size[0]]).astype(np.float32)
    ref = dd.select(every, dd.sigmoid(raw["scores"]), 0.6, 0.5, 100, agnostic)
    assert len(ref.boxes) >= 2
    np.testing.assert_array_equal(got.boxes, ref.boxes)
    np.testing.assert_array_equal(got.classes, ref.classes)
    np.testing.assert_array_equal(got.scores, ref.scores)
    np.testing.assert_array_equal(got.anchors, ref.anchors)
    assert not dd.yolo_anchor_points(size)[0].flags.writeable  # the cached anchors cannot be changed by a caller


def test_sidecar_detection_params_carry_the_configured_anchors():
    """What `kdefect tflite` writes into the sidecar for a RetinaNet run trained on its own anchors."""
    from kdefect.config import load_config
    from kdefect.tasks.detect_infer import decode_params

    cfg = load_config(None, ["task=detect", "detect.architecture=retinanet", "data.image_size=[64,64]",
                             "detect.anchor_aspect_ratios=[0.2,1,5]", "detect.match_iou=[0.3,0.4]"])
    p = decode_params(cfg)
    assert p["aspect_ratios"] == [0.2, 1.0, 5.0] and p["anchor_sizes"] == [32, 64, 128, 256, 512]
    assert "match_iou" not in p  # a training setting: the decoder does not need it
    assert "aspect_ratios" not in decode_params(load_config(None, ["task=detect", "data.image_size=[64,64]"]))


def test_best_anchor_iou_finds_thin_boxes_only_with_long_anchors():
    boxes = np.array([[32, 74, 128, 86], [12, 12, 140, 140]], np.float32)  # 8:1 and square, at 160 px
    default = dd.best_anchor_iou(boxes, (160, 160))
    longer = dd.best_anchor_iou(boxes, (160, 160), ratios=(0.25, 0.5, 1.0, 2.0, 4.0), chunk=1)
    assert default[0] < 0.4 and longer[0] > 0.5 and default[1] == pytest.approx(longer[1]) and default[1] > 0.8
    ref = dd.iou_matrix(dd.retina_anchors((160, 160)), boxes).max(axis=0)  # chunking changes nothing
    np.testing.assert_allclose(default, ref)
    assert dd.best_anchor_iou(boxes[:0], (160, 160)).shape == (0,)
