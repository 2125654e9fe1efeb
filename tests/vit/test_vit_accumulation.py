"""Classification through the engine (vit and adapter): items are examples; a batch of 8 equals 4 x 2."""

import pytest


@pytest.mark.parametrize("group", ["vit", "adapter"])
def test_items_are_examples_and_batch_8_equals_4x2(group, big_batch_vs_accumulation):
    from dlkit.core.config import load_config

    if group == "vit":
        from dlkit.vit.config import VitConfig as Config
        from dlkit.vit.task import VitTask as TaskClass
    else:
        from dlkit.adapter.config import AdapterConfig as Config
        from dlkit.adapter.task import AdapterTask as TaskClass
    task = TaskClass(load_config(Config, None, {}))
    assert big_batch_vs_accumulation(task, [0, 1, 4, 9, 16, 25, 36, 49]) == 8
