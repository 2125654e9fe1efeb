"""--neftune-alpha: uniform noise on the input embeddings, alpha/sqrt(L*d) with L each conversation's own length,
in training only (not in evaluation, not in generation)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dlkit.nn.neftune import NEFTune, token_lengths


def test_token_lengths_count_each_sequence_without_padding():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert token_lengths(mask).tolist() == [[3, 3, 3, 0], [2, 2, 0, 0]]
    packed = torch.tensor([[0, 1, 2, 0, 1, 0, 0]])  # conversations of 3, 2 and 1 tokens, then one pad
    real = torch.tensor([[1, 1, 1, 1, 1, 1, 0]])
    assert token_lengths(real, packed).tolist() == [[3, 3, 3, 2, 2, 1, 0]]


def test_noise_bound_and_norm_follow_the_formula():
    torch.manual_seed(0)
    alpha, d = 5.0, 256
    embedding = torch.nn.Embedding(100, d)
    neftune = NEFTune(alpha)
    neftune.attach(embedding)
    ids = torch.randint(0, 100, (2, 64))
    mask = torch.ones(2, 64, dtype=torch.long)
    mask[1, 16:] = 0  # a row of 16 real tokens padded to 64
    with torch.no_grad():
        clean = embedding.eval()(ids)
        with neftune.lengths_of(mask):
            noise = embedding.train()(ids) - clean
    for row, length in enumerate([64, 16]):
        bound = alpha / math.sqrt(length * d)
        real = noise[row, :length]
        assert real.abs().max() <= bound * (1 + 1e-5) and real.abs().max() > 0.99 * bound
        assert real.norm().item() == pytest.approx(alpha / math.sqrt(3), rel=0.05)  # E|noise|^2 = L*d*bound^2/3
        assert (noise[row, length:] == 0).all()  # padding untouched
    with torch.no_grad(), neftune.lengths_of(mask):
        assert torch.equal(embedding.eval()(ids), clean)  # eval mode: no noise


@pytest.fixture(scope="module")
def tasks(capitals_file):
    """The same LoRA model with and without NEFTune (dropout off, so only the noise can differ)."""
    from dlkit.core.config import load_config
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.task import LlmTask

    built = {}
    for alpha in (0.0, 5.0):
        cfg = load_config(
            LlmConfig,
            None,
            {"data": str(capitals_file), "neftune_alpha": alpha, "dropout": 0.0, "val_size": 8, "test_size": 8},
        )
        task = LlmTask(cfg)
        torch.manual_seed(0)
        built[alpha] = (task, task.build_model())
    return built


def step_loss(task, model, train: bool, seed: int = 1) -> float:
    batch = task.collate([task.splits.train.examples[i] for i in range(4)])
    model.train(train)
    torch.manual_seed(seed)
    with torch.no_grad():
        return float(task.training_step(model, batch)[0])


def test_noise_is_on_in_training_and_off_in_evaluation(tasks):
    (plain, plain_model), (noisy, noisy_model) = tasks[0.0], tasks[5.0]
    assert step_loss(noisy, noisy_model, train=False) == step_loss(plain, plain_model, train=False)
    assert step_loss(plain, plain_model, train=True) == step_loss(plain, plain_model, train=False)
    trained = step_loss(noisy, noisy_model, train=True)
    assert trained != step_loss(plain, plain_model, train=True)
    assert trained == step_loss(noisy, noisy_model, train=True)  # the noise comes from the seeded torch RNG
    assert trained != step_loss(noisy, noisy_model, train=True, seed=2)


def test_generation_sees_no_noise(tasks):
    from dlkit.llm.generate import generate, prompts_and_references

    (plain, plain_model), (noisy, noisy_model) = tasks[0.0], tasks[5.0]
    prompts, _ = prompts_and_references(noisy.tokenizer, noisy.splits.test[:3])
    noisy_model.eval()
    plain_model.eval()
    assert generate(noisy_model, noisy.tokenizer, prompts, 8) == generate(plain_model, plain.tokenizer, prompts, 8)


def test_a_negative_alpha_is_refused(cli, tmp_path):
    result = cli("llm", "train", "--neftune-alpha", "-1", "--output-dir", tmp_path / "run")
    assert result.exit_code == 2 and "--neftune-alpha must be >= 0" in result.stderr


def test_packed_rows_get_noise_per_conversation(capitals_file):
    from dlkit.core.config import load_config
    from dlkit.llm.config import LlmConfig
    from dlkit.llm.task import LlmTask

    cfg = load_config(
        LlmConfig,
        None,
        {
            "data": str(capitals_file),
            "neftune_alpha": 5.0,
            "packing": True,
            "max_length": 64,
            "val_size": 8,
            "test_size": 8,
        },
    )
    task = LlmTask(cfg)
    model = task.build_model()
    train_set, _ = task.datasets()
    batch = task.collate([train_set[0], train_set[1]])
    seen = []
    model.get_input_embeddings().register_forward_hook(lambda m, a, out: seen.append(task.neftune.lengths.clone()))
    model.train()
    with torch.no_grad():
        task.training_step(model, dict(batch))
    lengths, positions, real = seen[0], batch["position_ids"], batch["token_mask"]
    assert lengths.shape == real.shape and (lengths[real == 0] == 0).all()
    for row in range(2):  # each conversation's tokens carry that conversation's length
        starts = [i for i in range(real.shape[1]) if real[row, i] and positions[row, i] == 0] + [int(real[row].sum())]
        assert len(starts) > 2  # a packed row: several conversations
        for begin, end in itertools.pairwise(starts):
            assert (lengths[row, begin:end] == end - begin).all()
