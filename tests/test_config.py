import pytest

from rvos.config import bundled_configs, load_config
from rvos.errors import ConfigError


def test_bundled_configs_load_by_name_and_path():
    assert {"vlm_convnext_l_mevis", "vlm_rn50_mevis", "vlm_tiny_synth"} <= set(bundled_configs())
    paper = load_config("vlm_convnext_l_mevis")
    assert paper.model.backbone.model == "convnext_large_d_320" and paper.model.backbone.frozen
    assert paper.train.lr == 5e-5 and paper.train.iterations == 100000 and paper.data.num_frames == 8
    assert (paper.data.short_side, paper.data.max_long_side) == (360, 640)
    assert load_config("vlm_rn50_mevis").model.backbone.model == "RN50-quickgelu"
    from rvos.config import CONFIG_DIR

    assert load_config(str(CONFIG_DIR / "vlm_tiny_synth.yaml")).data.synth.train == 2000


def test_overrides_are_typed_dotted_keys():
    cfg = load_config("vlm_tiny_synth", ["data.root=/tmp/x", "train.lr=1e-4", "model.video_decoder.temporal=false",
                                         "train.steps=[0.5, 0.8]", "model.backbone.pretrained=null"])
    assert cfg.data.root == "/tmp/x" and cfg.train.lr == 1e-4 and cfg.model.video_decoder.temporal is False
    assert cfg.train.steps == (0.5, 0.8) and cfg.model.backbone.pretrained is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", r"unknown config key train.lrr \(valid keys here: iterations"),
        ("model.frame_decoder.layer=3", "unknown config key model.frame_decoder.layer"),
        ("train.iterations=many", "train.iterations: expected int, got 'many'"),
        ("model.video_decoder.temporal=3", "expected bool"),
        ("data.sampling=random", "data.sampling: expected 'local' or 'global'"),
        ("model.name=nope", "unknown method model.name='nope'"),
        ("train.lr", "is not key=value"),
    ],
)
def test_bad_overrides_say_which_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("vlm_tiny_synth", [override])


def test_unknown_config_name_lists_the_bundled_ones(tmp_path):
    with pytest.raises(ConfigError, match="bundled: .*vlm_tiny_synth"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
