"""Layers written from their equations, each tested against the torch reference implementation."""

from dlkit.nn.adapters import BottleneckAdapter
from dlkit.nn.attention import (
    AdditiveAttention,
    MultiHeadAttention,
    load_from_torch_mha,
    masked_softmax,
    scaled_dot_product_attention,
)
from dlkit.nn.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    relative_shift_matrix,
    sinusoidal_table,
)
from dlkit.nn.rnn import LSTM, LSTMCell
from dlkit.nn.transformer import DecoderBlock, DecoderOnlyLM, EncoderBlock, FeedForward

__all__ = [
    "AdditiveAttention",
    "BottleneckAdapter",
    "DecoderBlock",
    "DecoderOnlyLM",
    "EncoderBlock",
    "FeedForward",
    "LSTM",
    "LSTMCell",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "load_from_torch_mha",
    "masked_softmax",
    "relative_shift_matrix",
    "scaled_dot_product_attention",
    "sinusoidal_table",
]
