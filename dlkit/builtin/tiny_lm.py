"""builtin:tiny-llama and builtin:tiny-gemma2: the real transformers classes with tiny configs.

Each is generated once into the dlkit cache as an ordinary `save_pretrained` folder (random weights,
a byte-level BPE tokenizer trained on the bundled English+Persian corpus, and the family's real chat
template from dlkit.llm.templates), so the llm group loads it with the same `from_pretrained` call as a
Hub id or a local folder.
"""

from __future__ import annotations

from pathlib import Path

from dlkit.builtin.corpus import bilingual_corpus
from dlkit.builtin.instruct import tokenizer_text
from dlkit.core.sources import cached_folder
from dlkit.llm.templates import GEMMA_TEMPLATE, LLAMA3_TEMPLATE

VERSION = "v3"
VOCAB_SIZE = 2000
INIT_STD = 0.1  # larger than the usual 0.02, so a frozen random model reacts to soft prompts and adapters


LLAMA_SPECIAL = {
    "bos": "<|begin_of_text|>",
    "eos": "<|eot_id|>",
    "pad": "<|finetune_right_pad_id|>",
    "extra": ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>"],
}
GEMMA_SPECIAL = {
    "bos": "<bos>",
    "eos": "<end_of_turn>",
    "pad": "<pad>",
    "unk": "<unk>",
    "extra": ["<eos>", "<start_of_turn>"],
}


def train_tokenizer(special: dict, template: str, vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE tokenizer trained on the bundled corpus, wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [special["pad"], special["bos"], special["eos"], *special["extra"]]
    if "unk" in special:
        specials.insert(0, special["unk"])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    kwargs = {k: special[k] for k in ("bos", "eos", "pad", "unk") if k in special}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **{f"{k}_token": v for k, v in kwargs.items()},
        additional_special_tokens=special["extra"],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = template
    return fast


def _tokenizer_corpus() -> list[str]:
    return bilingual_corpus() + tokenizer_text()


def build_llama(path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(LLAMA_SPECIAL, LLAMA3_TEMPLATE)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        initializer_range=INIT_STD,
    )
    _save(LlamaForCausalLM, config, tokenizer, path)


def build_gemma2(path: Path) -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    tokenizer = train_tokenizer(GEMMA_SPECIAL, GEMMA_TEMPLATE)
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        sliding_window=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="eager",
        initializer_range=INIT_STD,
    )
    _save(Gemma2ForCausalLM, config, tokenizer, path)


def _save(model_cls, config, tokenizer, path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = model_cls(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def tiny_llama() -> Path:
    """Folder of the tiny Llama-3-style model (6 layers, hidden 64, GQA 4/2 heads)."""
    return cached_folder(f"models/tiny-llama-{VERSION}", build_llama)


def tiny_gemma2() -> Path:
    """Folder of the tiny Gemma-2 model (6 layers, hidden 64, eager attention)."""
    return cached_folder(f"models/tiny-gemma2-{VERSION}", build_gemma2)
