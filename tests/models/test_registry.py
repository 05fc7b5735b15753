"""Registry behaviour and backbone metadata."""

from __future__ import annotations

import pytest

from kdefect.errors import ConfigError
from kdefect.models import BACKBONES, Registry

EXPECTED = {
    "tiny_cnn", "tiny_cnn_s2", "resnet_small", "resnet50_v2", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "densenet121", "efficientnet_b0",
    "yolo_v8_tiny", "yolo_v8_n", "yolo_v8_xs", "yolo_v8_s", "yolo_v8_m",  # the detectors' family (warm start)
}


def test_generic_registry_register_get_names_meta():
    reg = Registry("widget")

    @reg.register("Alpha", colour="red")
    def alpha():
        return 1

    assert reg.get("alpha") is alpha and reg.get("ALPHA") is alpha
    assert reg.names() == ["alpha"] and "alpha" in reg and len(reg) == 1
    assert reg.meta("alpha") == {"colour": "red"}
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(lambda: 2)


def test_unknown_backbone_suggests_closest_name():
    with pytest.raises(ConfigError, match=r"unknown backbone 'mobilenetv2'\. Did you mean 'mobilenet_v2'\?"):
        BACKBONES.get("mobilenetv2")


def test_every_backbone_registered_with_full_metadata():
    assert set(BACKBONES.names()) == EXPECTED
    keys = {"preprocess", "default_size", "min_size", "supports_alpha", "imagenet", "attention_in_blocks"}
    for name in BACKBONES.names():
        meta = BACKBONES.meta(name)
        assert keys <= set(meta), name
        assert meta["preprocess"] in ("tf", "torch", "unit", "raw")
    assert BACKBONES.meta("efficientnet_b0")["preprocess"] == "raw"
    assert BACKBONES.meta("densenet121")["preprocess"] == "torch"
    assert BACKBONES.meta("resnet_small")["attention_in_blocks"] is True


def test_the_tf_free_catalogue_is_the_registry():
    """The CLI checks names against the catalogue before TensorFlow loads: it must hold exactly what is built."""
    from kdefect.core.catalogue import BACKBONE_FACTS, CATALOGUE, KCV_BACKBONES, detect_backbone_names
    from kdefect.models.detectors import backbone_names

    assert set(CATALOGUE.names()) == set(BACKBONE_FACTS) == set(BACKBONES.names())
    assert {n: CATALOGUE.meta(n) for n in CATALOGUE} == {n: BACKBONES.meta(n) for n in BACKBONES}
    assert detect_backbone_names() == backbone_names() and set(KCV_BACKBONES) <= set(backbone_names())


def test_a_backbone_registered_from_python_passes_the_engine_check():
    """Users may register their own backbone: the engine's check reads the live registry, not the catalogue."""
    from kdefect.core.catalogue import check_backbone as catalogue_check
    from kdefect.models.backbones import check_backbone

    facts = dict(BACKBONES.meta("tiny_cnn"), supports_alpha=False)
    BACKBONES.add("users_net", lambda inputs, **kw: inputs, **facts)
    try:
        check_backbone("users_net", 64)
        with pytest.raises(ConfigError, match="has no width multiplier"):
            check_backbone("users_net", 64, alpha=0.5)
        with pytest.raises(ConfigError, match="unknown backbone 'users_net'"):
            catalogue_check("users_net")
    finally:  # the registry is module state: leave it as found
        BACKBONES._items.pop("users_net")
        BACKBONES._meta.pop("users_net")
