"""builtin:markov and builtin:text: character corpora for `dlkit charrnn`.

builtin:markov is text drawn from a random order-2 character Markov chain whose entropy rate H is
computed exactly, so a test knows the best validation loss any model can reach: H nats per
character. A model that reaches H has learned the chain; no model can go below it (up to the noise
of a finite validation set). builtin:text is a few thousand characters of Shakespeare for the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlkit.core.run import atomic_write_text
from dlkit.core.sources import cache_dir

MARKOV_ALPHABET = " aeilnorst"  # V = 10; H = 1.44 nats, well below log(10) = 2.30
MARKOV_VERSION = "markov-v1"  # bump when the chain or the sampler changes (the text is cached under it)
TEXT_FILE = Path(__file__).with_name("shakespeare.txt")


@dataclass(frozen=True)
class CharCorpus:
    """A text, plus its exact entropy rate in nats per character when it is known."""

    name: str
    text: str
    entropy_rate: float | None = None


@dataclass(frozen=True)
class MarkovChain:
    """An order-2 chain: probs[a, b, c] = P(next = c | previous two = a, b)."""

    alphabet: str
    probs: np.ndarray  # (V, V, V), rows sum to 1

    def pair_transition_matrix(self) -> np.ndarray:
        """(V^2, V^2) matrix over pair states: (a, b) -> (b, c) with probability probs[a, b, c]."""
        V = len(self.alphabet)
        matrix = np.zeros((V * V, V * V))
        for a in range(V):
            for b in range(V):
                matrix[a * V + b, b * V : (b + 1) * V] = self.probs[a, b]
        return matrix

    def stationary(self) -> np.ndarray:
        """The stationary distribution over pair states: the left eigenvector of eigenvalue 1."""
        values, vectors = np.linalg.eig(self.pair_transition_matrix().T)
        pi = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
        return pi / pi.sum()

    def entropy_rate(self) -> float:
        """H = sum over pair states s of pi(s) * H(next char | s), in nats per character."""
        state_entropy = -(self.probs * np.log(self.probs)).sum(-1).reshape(-1)  # (V^2,)
        return float(self.stationary() @ state_entropy)

    def sample(self, num_chars: int, rng: np.random.Generator) -> str:
        V = len(self.alphabet)
        cumulative = self.probs.cumsum(-1)  # (V, V, V)
        uniforms = rng.random(num_chars)
        out: np.ndarray = np.empty(num_chars, dtype=np.int64)
        a, b = int(rng.integers(V)), int(rng.integers(V))
        for t in range(num_chars):
            c = min(int(np.searchsorted(cumulative[a, b], uniforms[t], side="right")), V - 1)
            out[t] = c
            a, b = b, c
        return "".join(np.array(list(self.alphabet))[out])


def random_chain(
    alphabet: str = MARKOV_ALPHABET, concentration: float = 0.25, floor: float = 0.02, seed: int = 7
) -> MarkovChain:
    """Dirichlet(concentration) rows make peaked, non-deterministic transitions; mixing in `floor` of the
    uniform distribution makes every transition possible, so the chain is ergodic and H is well defined."""
    V = len(alphabet)
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([concentration] * V, size=(V, V))
    probs = (1.0 - floor) * probs + floor / V
    return MarkovChain(alphabet, probs / probs.sum(-1, keepdims=True))


def load_markov(num_chars: int = 200_000, seed: int = 0) -> CharCorpus:
    """builtin:markov: `num_chars` characters of the fixed chain (seed 7), sampled with `seed`.

    Sampling is a Python loop (about a second), so the text is cached, written atomically.
    """
    chain = random_chain()
    path = cache_dir() / "builtin" / f"{MARKOV_VERSION}-{num_chars}-{seed}.txt"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        text = chain.sample(num_chars, np.random.default_rng(seed))
        atomic_write_text(path, text)
    return CharCorpus("markov", text, chain.entropy_rate())


def load_text() -> CharCorpus:
    """builtin:text: public-domain Shakespeare excerpts bundled with dlkit."""
    return CharCorpus("text", TEXT_FILE.read_text(encoding="utf-8"))
