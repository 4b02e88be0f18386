"""Config validation and dict round trips (model/config.py)."""

import pytest

from model.config import GPTConfig, TrainConfig, config_from_dict


def test_from_dict_round_trip():
    cfg = GPTConfig(vocab_size=67, block_size=16, n_layer=2, n_head=2, n_embd=32)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    tc = TrainConfig(batch_size=4, max_steps=10)
    assert TrainConfig.from_dict(tc.to_dict()) == tc


@pytest.mark.parametrize("cls", [GPTConfig, TrainConfig])
def test_unknown_key_raises(cls):
    with pytest.raises(ValueError, match=r"unknown .* keys \['n_layers'\]"):
        config_from_dict(cls, {"n_layers": 3})


@pytest.mark.parametrize(
    "values, match",
    [
        ({"n_embd": 30, "n_head": 4}, "divisible"),
        ({"n_layer": 0}, "n_layer must be a positive int"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_gpt_config_validation(values, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**values)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"device": "tpu"}, "device must be one of"),
        ({"min_lr": 1.0, "lr": 0.1}, "min_lr"),
        ({"grad_accum": 0}, "grad_accum must be a positive int"),
        ({"warmup_steps": 100, "lr_decay_steps": 10}, "lr_decay_steps"),
    ],
)
def test_train_config_validation(values, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**values)


def test_decay_steps_defaults_to_max_steps():
    assert TrainConfig(max_steps=77).decay_steps == 77
    assert TrainConfig(max_steps=77, lr_decay_steps=100).decay_steps == 100
