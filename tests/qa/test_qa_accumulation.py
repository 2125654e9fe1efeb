"""qa through the engine: the span loss averages over windows, and a batch of 8 equals 2 micro-batches of 4."""


def test_items_are_windows_and_batch_8_equals_4x2(big_batch_vs_accumulation):
    from dlkit.core.config import load_config
    from dlkit.qa.config import QAConfig
    from dlkit.qa.task import QATask

    task = QATask(load_config(QAConfig, None, {"max_length": 64, "doc_stride": 16}))
    assert big_batch_vs_accumulation(task, [0, 2, 5, 8, 13, 21, 34, 35]) == 8
