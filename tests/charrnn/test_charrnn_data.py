import math

import numpy as np
import pytest
import torch

from dlkit.builtin.charrnn_text import MarkovChain, load_markov, load_text, random_chain
from dlkit.charrnn import data
from dlkit.core.errors import DataError


def test_markov_entropy_rate_matches_the_sampled_text():
    """H from the stationary distribution equals the mean -log p of a long sample under the true chain."""
    chain = random_chain()
    corpus = load_markov()
    ids = np.array([chain.alphabet.index(c) for c in corpus.text])
    nll = -np.log(chain.probs[ids[:-2], ids[1:-1], ids[2:]]).mean()
    assert corpus.entropy_rate == pytest.approx(nll, abs=0.01)
    assert 0.3 * math.log(10) < corpus.entropy_rate < 0.75 * math.log(10)  # neither deterministic nor uniform


def test_entropy_rate_of_known_chains():
    V = 3
    uniform = MarkovChain("abc", np.full((V, V, V), 1 / V))
    assert uniform.entropy_rate() == pytest.approx(math.log(3))
    # next = previous character with prob 0.9: every state has the same row entropy
    probs = np.full((V, V, V), 0.05)
    for a in range(V):
        for b in range(V):
            probs[a, b, b] = 0.9
    expected = -(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05))
    assert MarkovChain("abc", probs).entropy_rate() == pytest.approx(expected)


def test_markov_text_is_cached_and_reproducible():
    assert load_markov().text == load_markov().text
    assert load_markov(num_chars=1000, seed=1).text != load_markov(num_chars=1000, seed=2).text


def test_builtin_text_is_shakespeare():
    text = load_text().text
    assert len(text) > 5000 and "ROMEO:" in text


def test_vocab_round_trip_with_unicode():
    text = "سلام, ROMEO! é\n"
    vocab = data.Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.uint16 and len(ids) == len(text)
    assert vocab.decode(ids) == text
    assert list(ids) == [vocab.chars.index(c) for c in text]
    assert vocab.unknown("ROMEOZ€") == ["Z", "€"]


def test_split_is_90_10_and_memory_mapped(tmp_path):
    text = data.Text("t", "abcdefghij" * 100)
    splits = data.split_text(text, block_size=8, val_fraction=0.1)
    assert (len(splits.train), len(splits.val)) == (900, 100)
    assert isinstance(splits.train.base, np.memmap) or isinstance(splits.train, np.memmap)
    assert splits.vocab.decode(np.concatenate([splits.train, splits.val])) == text.text


def test_split_too_short_for_one_block():
    with pytest.raises(DataError, match="fewer than the 34 needed .* --block-size 16"):
        data.split_text(data.Text("short.txt", "x" * 33), block_size=16, val_fraction=0.1)
    splits = data.split_text(data.Text("ok.txt", "x" * 34), block_size=16, val_fraction=0.1)
    assert len(splits.train) == len(splits.val) == 17


def test_train_blocks_are_inputs_and_shifted_targets():
    ids = np.arange(100, dtype=np.uint16)
    blocks = data.TrainBlocks(ids, block_size=5)
    assert len(blocks) == 95  # every start whose block + target fits
    batch = data.collate_blocks([blocks[0], blocks[94]])
    assert batch["inputs"].tolist() == [[0, 1, 2, 3, 4], [94, 95, 96, 97, 98]]
    assert batch["targets"].tolist() == [[1, 2, 3, 4, 5], [95, 96, 97, 98, 99]]


def test_val_blocks_do_not_overlap_and_thin_evenly():
    ids = np.arange(101, dtype=np.uint16)
    every = data.ValBlocks(ids, block_size=10)
    assert [int(every[i][0]) for i in range(len(every))] == list(range(0, 100, 10))
    thinned = data.ValBlocks(ids, block_size=10, max_blocks=3)
    assert [int(thinned[i][0]) for i in range(len(thinned))] == [0, 40, 90]  # indices linspace(0, 9, 3) rounded


def test_block_plan_depends_only_on_the_generator():
    plan = data.random_block_plan(1000, 70, 32, torch.Generator().manual_seed(3))
    again = data.random_block_plan(1000, 70, 32, torch.Generator().manual_seed(3))
    assert plan == again and [len(b) for b in plan] == [32, 32, 6]
    assert all(0 <= s < 1000 for b in plan for s in b)


def test_read_text_file_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.txt is empty"):
        data.read_text_file(empty, "utf-8")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid utf-8 \(byte 0xe9 at offset 3\); .*--encoding latin-1"):
        data.read_text_file(latin, "utf-8")
    assert data.read_text_file(latin, "latin-1") == "café au lait"
