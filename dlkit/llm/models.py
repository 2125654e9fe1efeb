"""Loading base models and tokenizers (builtin, local folder or Hub id through one `from_pretrained` path),
and what the methods need to know about an architecture: its decoder layers and linear modules."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlkit.builtin import BUILTINS
from dlkit.core.config import named_in
from dlkit.core.engine import is_trained_folder, load_trained_tensors
from dlkit.core.errors import ConfigError, RunError
from dlkit.core.modelcard import CardInfo
from dlkit.core.plan import COMPUTE_DTYPES, register_attention
from dlkit.core.run import Run
from dlkit.core.sources import Source, resolve
from dlkit.core.weights import check_folder, loading
from dlkit.llm.config import check_quantize_extra
from dlkit.nn.blockwise import blockwise_applies, causal_attention

# Per-architecture defaults (PEFT's own table covers more; these are the ones dlkit documents).
DEFAULT_TARGETS = {
    "llama": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"],
}
IA3_TARGETS = {
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma2": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gemma": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mistral": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen2": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
}
INFO_FILE = "dlkit_llm.json"


@dataclass(frozen=True)
class BaseModel:
    source: Source
    path: str  # what from_pretrained gets: a folder or a Hub id

    @property
    def identity(self) -> str:
        """How runs record their base, to refuse adapters trained on another one."""
        return self.source.spec if self.source.kind != "local" else self.source.value


def resolve_model(spec: str, flag: str = "--model") -> BaseModel:
    source = resolve(spec, "model", flag)
    if source.kind == "builtin":
        return BaseModel(source, str(BUILTINS[source.value].load()))
    return BaseModel(source, source.value)


def load_tokenizer(base: BaseModel) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:  # base (non-instruct) checkpoints: use the family's template
        from transformers import AutoConfig

        from dlkit.llm.templates import BY_FAMILY

        model_type = AutoConfig.from_pretrained(base.path).model_type
        template = BY_FAMILY.get(model_type)
        if template is None:
            raise ConfigError(
                f"--model {base.source.spec}: the tokenizer has no chat template and dlkit knows none "
                f"for model type {model_type!r}"
            )
        tokenizer.chat_template = template
    return tokenizer


def load_model(
    base: BaseModel, dtype: torch.dtype | None = None, quantize: str = "none", precision: str = "no"
) -> nn.Module:
    """The base as a causal LM; with `quantize` (4bit, 8bit) its linear layers held by bitsandbytes: NF4 with
    double quantisation, computing in --precision's dtype, or LLM.int8()."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()

    config = AutoConfig.from_pretrained(base.path)
    kwargs: dict[str, Any] = {}
    if needs_eager_attention(config):
        kwargs["attn_implementation"] = "eager"
    if dtype is not None:
        kwargs["dtype"] = dtype
    if quantize != "none":
        kwargs.update(quantized(quantize, COMPUTE_DTYPES[precision]))
    with loading(base.path):
        model = AutoModelForCausalLM.from_pretrained(base.path, **kwargs)
    if model.config._attn_implementation == "sdpa" and register_attention(BLOCK_ATTENTION, block_sdpa_forward):
        # models written against transformers' attention interface can switch; the rest keep sdpa
        if getattr(model, "_can_set_attn_implementation", lambda: False)():
            model.set_attn_implementation(BLOCK_ATTENTION)
    return model


def weight_files(base: BaseModel) -> dict[str, Path]:
    """Tensor name -> the safetensors file of the base's checkpoint holding it ({} when it has none): what the
    base's weights were before training, read back lazily instead of kept in memory."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    def find(name: str) -> Path | None:
        local = Path(base.path) / name
        if local.is_file():
            return local
        if Path(base.path).is_dir():
            return None
        found = cached_file(
            base.path,
            name,
            local_files_only=True,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        return Path(found) if found else None

    index = find("model.safetensors.index.json")
    if index is not None:
        shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: index.parent / shard for name, shard in shards.items()}
    single = find("model.safetensors")
    if single is None:
        return {}
    with safe_open(str(single), framework="pt") as f:
        return {name: single for name in f.keys()}


def needs_eager_attention(config: Any) -> bool:
    """Gemma-2 (and 3) with sdpa and padding gives NaN in practice: they load with eager attention."""
    return config.model_type.startswith("gemma2") or config.model_type == "gemma3_text"


def quantized(quantize: str, compute_dtype: torch.dtype) -> dict[str, Any]:
    """from_pretrained arguments loading the linear layers with bitsandbytes onto this process's device."""
    from transformers import BitsAndBytesConfig

    check_quantize_extra(quantize)
    if quantize == "4bit":
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    return {"quantization_config": config, "device_map": {"": device}, "dtype": compute_dtype}


BLOCK_ATTENTION = "dlkit_sdpa"  # transformers' sdpa, with dlkit.nn.blockwise for causal self-attention on a CPU


def block_sdpa_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, except that where it would call the causal kernel without a mask on the CPU
    (training on right-padded or packed-free batches, a prompt's prefill), the queries go in blocks that skip the
    keys they may not see (dlkit.nn.blockwise: the same numbers)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    plain = (
        attention_mask is None
        and not dropout
        and all(kwargs.get(name) is None for name in ("position_bias", "cache", "softcap", "s_aux"))
    )
    if causal and plain and blockwise_applies(query, key):
        return causal_attention(query, key, value, scaling).transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a causal LM (through PEFT wrappers)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else inner
    for name in ("layers", "h", "blocks"):
        layers = getattr(decoder, name, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ConfigError(f"cannot find the decoder layers of {type(inner).__name__}")


def linear_module_names(model: nn.Module) -> list[str]:
    """Leaf names of the Linear (and GPT-2 Conv1D) modules inside the decoder layers: --target-modules candidates."""
    names: list[str] = []
    for layer in decoder_layers(model)[:1]:
        for name, module in layer.named_modules():
            if name and (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"):
                leaf = name.rsplit(".", 1)[-1]
                if leaf not in names:
                    names.append(leaf)
    return names


def target_modules(model: nn.Module, requested: str | None) -> list[str]:
    """--target-modules, or the architecture's default; every name must exist in the model."""
    candidates = linear_module_names(model)
    if requested:
        return named_in(requested, candidates, "--target-modules", "not in the model")
    default = DEFAULT_TARGETS.get(model.config.model_type)
    if default and all(n in candidates for n in default):
        return default
    return [n for n in candidates if "q" in n or "v" in n][:2] or candidates[:2]


def card_info(info: dict[str, Any], merged: bool = False) -> CardInfo:
    """The model card's facts about an llm final folder (or an export of it), from its dlkit_llm.json."""
    adapter = bool(info["peft"]) and not merged
    builtin = str(info["base"]).startswith("builtin:")
    if adapter:
        usage = (
            "from peft import AutoPeftModelForCausalLM  # loads the base named in adapter_config.json\n"
            "from transformers import AutoTokenizer\n\n"
            "model = AutoPeftModelForCausalLM.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "tokenizer = AutoTokenizer.from_pretrained(FOLDER_OR_REPO_ID)"
        )
        if builtin:
            usage += (
                "\n# the base is a dlkit builtin: adapter_config.json names the folder it was built in on the "
                "training machine;\n# elsewhere rebuild it and pass it: "
                "PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), FOLDER_OR_REPO_ID)\n"
                f"# with BASE = {info.get('base_rebuild', 'the rebuilt builtin folder')}"
            )
        if info.get("quantize", "none") != "none":
            usage += (
                f"\n# trained on a {info['quantize']} base: pass the same quantization_config "
                "(bitsandbytes) to load the base as it trained"
            )
    elif info["family"] == "partial" and not merged:
        return CardInfo(
            what="partial fine-tune (the unfrozen layers) of a causal language model",
            pipeline_tag="text-generation",
            usage_language="bash",
            base=info["base"],
            tags=[info["method"], "text-generation"],
            usage="# the trained layers (trained.safetensors) on the base named in trained.json; full "
            "weights for transformers:\ndlkit llm export --run RUN --merge --out merged/   # RUN: "
            "the run folder around this one",
        )
    else:
        usage = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            "model = AutoModelForCausalLM.from_pretrained(FOLDER_OR_REPO_ID)\n"
            "tokenizer = AutoTokenizer.from_pretrained(FOLDER_OR_REPO_ID)"
        )
    kind = "adapter" if adapter else "merged model" if merged else "fine-tuned model"
    return CardInfo(
        what=f"{info['method']} {kind} of a causal language model",
        pipeline_tag="text-generation",
        library_name="peft" if adapter else "transformers",
        usage=usage,
        tags=[info["method"], "text-generation", *(["peft"] if info["peft"] else [])],
        base_relation="adapter" if adapter else "merge" if merged else "finetune",
        base=info["base"],
    )


def base_info(base: BaseModel) -> dict[str, Any]:
    """The base model as dlkit_llm.json records it, with the line that rebuilds a builtin base elsewhere."""
    info: dict[str, Any] = {"base": base.identity, "base_resolved": base.path}
    if base.source.kind == "builtin":
        info["base_rebuild"] = (
            f"python -c \"from dlkit.builtin import BUILTINS; print(BUILTINS['{base.source.value}'].load())\""
        )
    return info


def read_info(model_dir: Path) -> dict[str, Any]:
    path = model_dir / INFO_FILE
    if not path.is_file():
        raise RunError(f"{model_dir} has no {INFO_FILE}; was the run trained by `dlkit llm train`?")
    return json.loads(path.read_text(encoding="utf-8"))


def load_trained(
    run_dir: Path,
    base_spec: str | None = None,
    dequantize: bool = False,
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model, tokenizer, info) of a finished llm run; refuses a --model that is not the run's base. A run
    trained on a quantized base gets it quantized again, or with `dequantize` its dequantized weights (what
    the quantized layers computed with), into which the adapter can be merged."""
    run = Run.open(run_dir, group="llm")
    info = read_info(run.model_dir)
    if base_spec is not None:
        check_same_base(info, resolve_model(base_spec), run.dir)
    base = resolve_model(info["base"])
    tokenizer = load_tokenizer(base)
    check_folder(run.model_dir)
    if info["peft"]:
        from peft import PeftModel

        quantize = info.get("quantize", "none")
        base_model = load_model(base, quantize=quantize, precision=info.get("precision", "no"))
        if dequantize and quantize != "none":
            base_model = base_model.dequantize()
        with loading(run.model_dir):
            model = PeftModel.from_pretrained(base_model, str(run.model_dir))
    elif is_trained_folder(run.model_dir):  # partial: the trained layers (fp32) onto the base, in fp32
        model = load_model(base, dtype=torch.float32)
        load_trained_tensors(model, run.model_dir)
    else:
        model = load_model(BaseModel(base.source, str(run.model_dir)))
    model.eval()
    return model, tokenizer, info


def trained_max_length(run_dir: Path) -> int | None:
    """The --max-length a run trained with: its prompts at generation are bounded by it."""
    return Run.open(run_dir, group="llm").read_config().get("max_length")


def check_same_base(info: dict[str, Any], base: BaseModel, run_dir: Path) -> None:
    if info["base"] != base.identity and info.get("base_resolved") != base.identity:
        raise ConfigError(
            f"{run_dir} was trained on {info['base']}, not on {base.identity}; pass --model "
            f"{info['base']} or a run of the same base model"
        )
