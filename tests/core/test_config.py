import json
from dataclasses import dataclass

import pytest

from dlkit.core.config import TrainConfig, load_config, opt, saved_dict
from dlkit.core.errors import ConfigError


@dataclass
class ToyConfig(TrainConfig):
    method: str = opt("lora", "Method.")
    rank: int = opt(8, "Rank.")


def test_precedence_defaults_then_file_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.01\nbatch-size: 4\nrank: 16\n")
    cfg = load_config(ToyConfig, path, {"rank": 2})
    assert (cfg.lr, cfg.batch_size, cfg.rank, cfg.epochs) == (0.01, 4, 2, 3)


def test_json_file_and_saved_config_round_trip(tmp_path):
    cfg = load_config(ToyConfig, None, {"lr": 0.5, "method": "dora", "resume": True})
    saved = {**saved_dict(cfg), "_dlkit": {"group": "llm"}}
    assert "resume" not in saved and "overwrite" not in saved
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    again = load_config(ToyConfig, path)
    assert saved_dict(again) == saved_dict(cfg)


def test_unknown_key_names_the_closest_valid_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("bach_size: 4\n")
    with pytest.raises(ConfigError, match=r"unknown key 'bach_size'; did you mean 'batch_size'\?"):
        load_config(ToyConfig, path)


def test_invalid_yaml_is_one_line_with_the_line_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.1\nepochs: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(ToyConfig, path)
    assert "invalid YAML at line" in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(ToyConfig, tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(ToyConfig, path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: fast\n", "'lr' must be a number"),
        ("epochs: 1.5\n", "'epochs' must be an integer"),
        ("precision: fp8\n", "'precision' must be one of no, bf16, fp16"),
        ("overwrite: 1\n", "'overwrite' must be true or false"),
    ],
)
def test_wrong_types_are_named(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(ToyConfig, path)


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("lr", 0.0, "--lr"),
        ("lr", -1.0, "--lr"),
        ("batch_size", 0, "--batch-size"),
        ("grad_accum", -2, "--grad-accum"),
        ("max_steps", 0, "--max-steps"),
        ("warmup", -0.1, "--warmup"),
    ],
)
def test_non_positive_values_name_the_flag(field, value, flag):
    with pytest.raises(ConfigError, match=f"^{flag} must be"):
        load_config(ToyConfig, None, {field: value})


def test_resume_and_overwrite_together_is_an_error():
    with pytest.raises(ConfigError, match="contradict"):
        load_config(ToyConfig, None, {"resume": True, "overwrite": True})
