"""Every config group option and experiment composes and validates against the schema."""

from dataclasses import asdict
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError
from tools import compose

from wavenet.config import CONF_DIR, PROJECT_DIR, Config
from wavenet.model.network import WaveNetConfig

CONF = CONF_DIR


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def load(*overrides: str) -> Config:
    return OmegaConf.to_object(compose(*overrides))


def test_defaults_compose_to_the_paper_model_on_demo_data():
    cfg = load()
    assert isinstance(cfg, Config)
    assert cfg.model == WaveNetConfig()  # conf/model/wavenet.yaml restates the schema defaults
    assert Path(cfg.data.root) == PROJECT_DIR / "data" / "demo"
    assert cfg.train.resume == "auto"


@pytest.mark.parametrize("group", ["model", "data", "train"])
def test_every_group_option_composes(group):
    found = options(group)
    assert found, f"conf/{group} is empty"
    for name in found:
        cfg = load(f"{group}={name}")
        assert isinstance(getattr(cfg, group), type(getattr(Config(), group)))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_names_its_run(experiment):
    cfg = load(f"experiment={experiment}")
    assert cfg.name == experiment


def test_demo_experiment_uses_the_small_model_on_the_bundled_data():
    cfg = load("experiment=demo")
    assert cfg.model == WaveNetConfig(**OmegaConf.load(CONF / "model" / "small.yaml"))
    assert Path(cfg.data.root).is_dir()


def test_overrides_apply_with_types():
    cfg = load("model=tiny", "train.max_steps=3", "data.crop=100", "train.lr=0.01")
    assert (cfg.train.max_steps, cfg.data.crop, cfg.train.lr) == (3, 100, 0.01)
    assert cfg.model.blocks == 1


def test_mel_settings_compose_as_a_nested_group():
    cfg = load(
        "experiment=vocoder_demo",
        "model.mel.hop_length=200",
        "model.mel.upsample=[10,20]",
        "model.mel.fmax=7600",
    )
    assert (cfg.model.mel.hop_length, cfg.model.mel.upsample) == (200, [10, 20])
    # A checkpoint stores the config as a plain dict; it rebuilds the same nested config.
    assert WaveNetConfig(**asdict(cfg.model)) == cfg.model


def test_unknown_key_and_wrong_type_are_rejected_at_composition():
    with pytest.raises(ConfigCompositionException):
        load("train.max_stpes=3")
    with pytest.raises(ConfigCompositionException):
        load("model.blocks=three")


@pytest.mark.parametrize(
    "override,match",
    [
        ("model.residual_channels=0", "residual_channels"),
        ("data.sample_rate=-1", "sample_rate"),
        ("train.batch_size=0", "batch_size"),
        ("data.val_fraction=1.5", "val_fraction"),
        ("data.layout=timit", "data.layout must be one of auto, folder, metadata, ljspeech, vctk"),
        ("model.speaker_channels=-1", "speaker_channels"),
        ("model.mel.hop_length=200", r"upsample \[16, 16\] must be positive strides whose product"),
        ("model.mel.win_length=2048", "win_length"),
        ("model.mel.fmax=-3", "model.mel.fmax"),
    ],
)
def test_out_of_range_values_are_rejected_by_the_schema(override, match):
    with pytest.raises((ValueError, ValidationError, ConfigKeyError), match=match):
        load(override)


@pytest.mark.parametrize(
    "experiment,speaker_channels,n_mels",
    [
        ("speaker_demo", 16, 0),
        ("vocoder_demo", 0, 80),
        ("vocoder_asterisk4", 0, 80),
        ("vocoder_asterisk4_cpu", 0, 80),
    ],
)
def test_conditioning_experiments_compose(experiment, speaker_channels, n_mels):
    cfg = load(f"experiment={experiment}")
    assert cfg.name == experiment
    assert cfg.model.speaker_channels == speaker_channels
    assert cfg.model.mel.n_mels == n_mels


@pytest.mark.parametrize(
    "key,value",
    [
        ("ema_decay", 1.0),
        ("accumulate", 0),
        ("precision", "fp16"),
        ("lr_schedule", "step"),
        ("device", "tpu"),
    ],
)
def test_scale_keys_are_checked(key, value):
    from wavenet.config import TrainConfig

    with pytest.raises(ValueError, match=f"train.{key}"):
        TrainConfig(**{key: value})
