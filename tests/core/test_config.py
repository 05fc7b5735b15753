"""Layered, strict config: defaults <- YAML <- --set, typos caught with a suggestion."""

from __future__ import annotations

import pytest
import yaml

from kdefect.config import Config, config_from_dict, load_config, parse_override
from kdefect.errors import ConfigError


def test_defaults_are_the_embedded_synthetic_quickstart():
    cfg = load_config()
    assert cfg.task == "classify"
    assert cfg.data.source == "synthetic"
    assert cfg.model.weights == "none"


def test_yaml_then_overrides_win(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"model": {"backbone": "mobilenet_v2", "alpha": 0.35}, "train": {"epochs": 3}}))
    cfg = load_config(p, ["train.epochs=7", "data.image_size=[96, 96]", "data.good_label=null"])
    assert cfg.model.backbone == "mobilenet_v2"
    assert cfg.model.alpha == 0.35
    assert cfg.train.epochs == 7
    assert cfg.data.image_size == [96, 96]
    assert cfg.data.good_label is None
    assert cfg.data.augment.flip is True  # untouched nested defaults survive


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.backbnoe'.*Did you mean 'backbone'"):
        load_config(None, ["model.backbnoe=resnet50_v2"])
    with pytest.raises(ConfigError, match=r"'trian'.*Did you mean 'train'"):
        load_config(None, ["trian.epochs=3"])


def test_bad_types_and_choices_are_named():
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"model.attention: 'cbma' is not one of.*Did you mean 'cbam'"):
        load_config(None, ["model.attention=cbma"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("model.backbone")


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(top)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.attention=se", "data.subsample={scratch: 0.1}", "loss.name=focal"])
    cfg.save(tmp_path / "config.yaml")
    back = config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert back == cfg
    assert isinstance(back, Config)


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert configs, "configs/ should ship example configs"
    for p in configs:
        load_config(p)


@pytest.mark.parametrize(("override", "key", "allowed"), [
    ("data.batch_size=0", "data.batch_size", ">= 1"),
    ("data.image_size=[0,0]", "data.image_size", ">= 8"),
    ("data.channels=2", "data.channels", "1, 3"),
    ("data.split=[1,0,0]", "data.split", "val + test > 0"),
    ("data.split=[0.5,0.2,0.2]", "data.split", "summing to 1"),
    ("train.epochs=-1", "train.epochs", ">= 1"),
    ("train.epochs=0", "train.epochs", ">= 1"),
    ("train.learning_rate=.nan", "train.learning_rate", "> 0"),
    ("train.learning_rate=-0.1", "train.learning_rate", "> 0"),
    ("model.dropout=1.5", "model.dropout", "< 1"),
    ("detect.iou_threshold=2", "detect.iou_threshold", "<= 1"),
    ("detect.jitter=[1.2,0.8]", "detect.jitter", "min <= max"),
    ("detect.match_iou=[0.6,0.5]", "detect.match_iou", "background_below <= positive_from"),
    ("detect.anchor_aspect_ratios=[]", "detect.anchor_aspect_ratios", "1 to 9 distinct positive"),
    ("detect.anchor_aspect_ratios=[1,1]", "detect.anchor_aspect_ratios", "1 to 9 distinct positive"),
    ("detect.anchor_sizes=[32,64,128,256]", "detect.anchor_sizes", "one per pyramid level P3-P7"),
    ("data.synthetic.contrast=.inf", "data.synthetic.contrast", "> 0"),
    ("name=../../x", "name", "plain folder name"),
    ("name=a/b", "name", "plain folder name"),
    ("name=.hidden", "name", "plain folder name"),
])
def test_out_of_range_values_name_the_key_and_the_allowed_range(override, key, allowed):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    msg = str(exc.value)
    assert msg.startswith(f"{key}:") and allowed in msg and "\n" not in msg


def test_any_float_must_be_finite():
    with pytest.raises(ConfigError, match="trust.targets.min_class_recall"):
        load_config(None, ["trust.targets.min_class_recall=.nan"])


def test_valid_edge_values_pass():
    cfg = load_config(None, ["data.channels=1", "data.split=[0.8,0.2,0]", "train.time_budget_s=null",
                             "detect.jitter=[]", "name=neu_tiny-cnn.2", "train.fine_tune_layers=-1"])
    assert cfg.data.channels == 1 and cfg.data.split == [0.8, 0.2, 0.0] and cfg.name == "neu_tiny-cnn.2"


def test_binary_config_file_is_a_config_error(tmp_path):
    p = tmp_path / "model.bin"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(p)


def test_validate_config_catches_values_set_in_code():
    from kdefect.config import validate_config

    cfg = load_config()
    cfg.data.batch_size = 0
    with pytest.raises(ConfigError, match="data.batch_size"):
        validate_config(cfg)
