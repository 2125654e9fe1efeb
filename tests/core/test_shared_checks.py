"""The checks groups share: eval's class list against the trained model's, and names against candidates."""

from pathlib import Path

import pytest

from dlkit.classify.classifier import check_same_classes
from dlkit.core.config import named_in
from dlkit.core.errors import ConfigError, DataError


def test_eval_data_with_other_classes_is_one_clear_error():
    check_same_classes("d", ["a", "b"], ["a", "b"], Path("runs/x"))
    with pytest.raises(
        DataError,
        match=r"^--data d now has classes \['a', 'c'\], but the model in runs/x was "
        r"trained on \['a', 'b'\]$",
    ):
        check_same_classes("d", ["a", "c"], ["a", "b"], Path("runs/x"))
    with pytest.raises(DataError, match=r"classes \['0', '1', '2', '3', '4'\]\.\.\., but"):
        check_same_classes("d", [str(i) for i in range(10)], ["a", "b"], Path("runs/x"))


def test_named_in_keeps_the_order_and_names_every_unknown_and_candidate():
    assert named_in(" v, q ", ["q", "k", "v"], "--target-modules", "not in the model") == ["v", "q"]
    with pytest.raises(ConfigError, match=r"^--target-modules x,y: not in the model; candidates: q, k, v$"):
        named_in("q,x,y", ["q", "k", "v"], "--target-modules", "not in the model")
