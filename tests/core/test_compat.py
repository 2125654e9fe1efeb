"""Known-bad library combinations (flagged by `dlkit info`, refused by the feature), the Hub probe that
never makes `dlkit info` wait, and the transformers 5.24 cache-name shim around PEFT's generation."""

from __future__ import annotations

import json
import time

import pytest

from dlkit.core import compat
from dlkit.core.errors import ConfigError


@pytest.fixture
def versions(monkeypatch):
    """Pretend these distributions are installed at these versions (others as they are)."""
    real = compat.installed_version

    def pretend(**fake: str) -> None:
        names = {k.replace("_", "-"): v for k, v in fake.items()}
        monkeypatch.setattr(compat, "installed_version", lambda dist: names.get(dist, real(dist)))

    return pretend


def test_a_known_bad_combination_is_one_line_and_the_feature_refuses(versions):
    versions(transformers="5.41.0", peft="0.21.2")
    lines = compat.known_bad()
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "prefix tuning" in lines[0] and "transformers 5.41.0" in lines[0] and "fix: pip install" in lines[0]
    with pytest.raises(ConfigError, match="transformers 5.41.0") as error:
        compat.refuse_known_bad("prefix-train")
    assert error.value.exit_code == 2
    compat.refuse_known_bad("soft-prompt-generate")  # not broken by this combination


def test_soft_prompt_generation_refuses_an_unverified_peft(versions):
    versions(transformers="5.24.0", peft="0.22.0")
    with pytest.raises(ConfigError, match=r"soft-prompt generation .* transformers 5.24.0, peft 0.22.0"):
        compat.refuse_known_bad("soft-prompt-generate")
    versions(transformers="5.23.0", peft="0.22.0")
    compat.refuse_known_bad("soft-prompt-generate")


def test_a_version_outside_the_declared_range_is_flagged(versions):
    declared = ['transformers<5.25,>=4.46; extra == "llm"', "typer<0.29,>=0.20", 'peft<0.22,>=0.13; extra == "vit"']
    versions(transformers="5.23.0", typer="0.28.0", peft="0.21.2")
    assert compat.outside_range(declared) == []
    versions(transformers="5.30.0", typer="0.28.0", peft="0.21.2")
    (line,) = compat.outside_range(declared)
    assert line.startswith("transformers 5.30.0 is outside dlkit's tested range") and "<5.25" in line


def test_info_flags_problems_and_skips_the_hub_offline(cli, monkeypatch, versions):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("dlkit info probed the Hub under HF_HUB_OFFLINE=1")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_network)
    versions(transformers="5.41.0")
    result = cli("info", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["hub"] == "offline (HF_HUB_OFFLINE)" and report["hub_reachable"] is False
    assert report["versions"]["typer"] and any("prefix tuning" in p for p in report["problems"])
    assert sum("prefix tuning" in line for line in result.stderr.splitlines()) == 1


def test_the_hub_probe_gives_up_on_a_hanging_lookup(monkeypatch):
    import socket

    from dlkit.core.overview import hub_status

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def hanging_lookup(*args, **kwargs):
        time.sleep(5)
        raise OSError("name resolution timed out")

    monkeypatch.setattr(socket, "create_connection", hanging_lookup)
    assert hub_status(timeout=0.05) == "not reachable (offline)"


class FakePeftModel:
    """What PeftModelForCausalLM does with the cache: its prepare step reads `past_key_values` only."""

    def __init__(self, base_prepare):
        self.base_model_prepare_inputs_for_generation = base_prepare
        self.seen: list[object] = []

    def prepare_inputs_for_generation(self, input_ids):
        kwargs = self.base_model_prepare_inputs_for_generation(input_ids)
        self.seen.append(kwargs.get("past_key_values"))
        return kwargs


@pytest.mark.parametrize(("transformers", "renamed"), [("5.23.0", False), ("5.24.0", True)])
def test_the_cache_shim_maps_the_new_name_for_peft_and_back(versions, transformers, renamed):
    from dlkit.llm.generate import soft_prompt_cache_names

    versions(transformers=transformers, peft="0.21.2")
    cache = object()
    name = "cache" if renamed else "past_key_values"
    model = FakePeftModel(lambda ids: {"input_ids": ids, name: cache})
    with soft_prompt_cache_names(model):
        assert model.prepare_inputs_for_generation([1]) == {"input_ids": [1], name: cache}
    assert model.seen == [cache]  # PEFT saw the cache under the name it reads
    assert model.prepare_inputs_for_generation([1]) == {"input_ids": [1], name: cache}  # restored
    assert model.seen == [cache, None if renamed else cache]
