"""Make tests/data/models/: tiny random real models and what one attention layer of each computes.

Needs torch and transformers (on the project's machines, in a throwaway environment:
`python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 transformers numpy`);
attncli's tests do not. Rerun from the project root (no downloads; everything is built from configs):

    /tmp/torchvenv/bin/python tests/data/make_model_goldens.py

Models. Each family is built from its transformers config (hidden 32, 2 layers, vocab 64,
intermediate <= 32, torch.manual_seed fixed), in float64, with initializer_range 0.2 so the
attention is not flat; the norm weights, the biases and gpt-oss's sinks are then set to random
values (they start as ones/zeros) so that each of them shows in the output. Saved with
`save_pretrained(folder, safe_serialization=True)` under tests/data/models/<folder>/ (config.json,
model.safetensors, generation_config.json); the Llama model is also saved sharded
(llama_sharded/, model.safetensors.index.json + shards) and cast to bfloat16 (llama_bf16/).

Goldens (models/goldens.json). For each case the model is loaded back from its folder
(`from_pretrained(folder, dtype=torch.float64, attn_implementation="eager")`), run on fixed
input_ids of length 6, and forward hooks on the attention module (register_forward_pre_hook with
with_kwargs=True, register_forward_hook) record the hidden states entering it (after the input
layer norm) and its output (before the residual). BERT's attention layer is
`attention.self` followed by `attention.output.dense` (its output before dropout, the residual
and the LayerNorm). The BF16 case is the model in float64 on the bf16-decoded weights (the loader
upcasts them; checked against the raw bytes here), so its golden is exactly what the model
computes from those weights.

Float64 patches. transformers 5.24 keeps some steps in float32 even in a float64 model. For the
golden `output` they run in float64:
- while the golden runs, the name `torch` inside modeling_llama, modeling_mistral, modeling_qwen2,
  modeling_qwen3, modeling_gemma2, modeling_gpt_oss and modeling_rope_utils points at a stand-in
  whose float32 and float are float64 (float32_steps_in_float64): the eager softmax
  (`softmax(..., dtype=torch.float32)`), the QK-norm RMSNorm (`.to(torch.float32)`) and the
  rotary embedding's frequencies (`inv_freq.to(dtype=torch.float)`) run in float64; the code is
  otherwise unchanged;
- the rotary embeddings' `inv_freq` buffer, computed in float32 when the model was made, is
  recomputed under the stand-in with the model's own rope init function (default, linear, llama3,
  yarn), i.e. in float64. (position_ids go through `.float()`, exact for small integers.)
GPT-2 and BERT have no float32 step (GPT-2's reorder_and_upcast_attn is off).
`output_as_shipped` is the unpatched model's attention module run on the same `input` (its
pre-hook substitutes the golden input), for a looser check (~1e-7 relative). Each golden output is
also checked here against a numpy float64 write-out of the layer (numpy_reference).

nn.MultiheadAttention (models/mha_goldens.json, models/mha/<case>.safetensors): float64 modules
in eval mode with random biases, their state_dict saved with safetensors.torch.save_file, inputs
under forward's names (query, key, value), and what forward returns with need_weights=True,
average_attn_weights=True (and the per-head weights with average_attn_weights=False).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
from pathlib import Path

import float64_patch  # beside this script
import numpy as np
import torch
import transformers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GptOssConfig,
    GptOssForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    modeling_rope_utils,
)
from transformers.models.gemma2 import modeling_gemma2
from transformers.models.gpt_oss import modeling_gpt_oss
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.qwen2 import modeling_qwen2
from transformers.models.qwen3 import modeling_qwen3

HERE = Path(__file__).parent
MODELS = HERE / "models"
OUT = MODELS / "goldens.json"
DTYPE = torch.float64
SEED = 0
# how far the as-shipped output (float32 RoPE, RMSNorm, softmax) may be from the golden one
SHIPPED_RTOL, SHIPPED_ATOL = 1e-5, 1e-6
PATCHED_MODULES = (modeling_llama, modeling_mistral, modeling_qwen2, modeling_qwen3,
                   modeling_gemma2, modeling_gpt_oss, modeling_rope_utils)

INPUT_IDS = [[5, 17, 42, 3, 60, 11]]
INPUT_IDS_BATCH = [[5, 17, 42, 3, 60, 11], [9, 33, 2, 48, 0, 0]]
MASK_BATCH = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]

COMMON = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=64,
              intermediate_size=32, initializer_range=0.2, max_position_embeddings=64)
LLAMA_LIKE = dict(COMMON, num_key_value_heads=2, head_dim=8, tie_word_embeddings=False)


# ---------------------------------------------------------------- float64 patch


def float32_steps_in_float64(active: bool = True):
    """Within: the float32 steps of PATCHED_MODULES run in float64 (float64_patch.py)."""
    return float64_patch.float32_steps_in_float64(PATCHED_MODULES, active)


def recompute_inv_freq(model) -> int:
    """Under the patch: each rotary embedding's inv_freq from its own init function, in float64."""
    count = 0
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding"):
            if module.rope_type == "default":
                init = module.compute_default_rope_parameters
            else:
                init = modeling_rope_utils.ROPE_INIT_FUNCTIONS[module.rope_type]
            inv_freq, scaling = init(module.config)
            assert inv_freq.dtype == torch.float64, inv_freq.dtype
            assert scaling == module.attention_scaling
            module.inv_freq = inv_freq
            module.original_inv_freq = inv_freq.clone()
            count += 1
    return count


# ---------------------------------------------------------------- the models


def spec(folder, family, config_cls, model_cls, config, layers=(1,), batch=False, notes_extra=None):
    return dict(folder=folder, family=family, config_cls=config_cls, model_cls=model_cls,
                config=config, layers=layers, batch=batch, notes_extra=notes_extra or {})


SPECS = [
    spec("gpt2", "gpt2", GPT2Config, GPT2LMHeadModel,
         dict(n_embd=32, n_layer=2, n_head=4, n_inner=32, vocab_size=64, n_positions=16,
              initializer_range=0.2, bos_token_id=0, eos_token_id=0)),
    spec("bert", "bert", BertConfig, BertForMaskedLM,
         dict(COMMON, max_position_embeddings=16, type_vocab_size=2), batch=True),
    spec("llama", "llama", LlamaConfig, LlamaForCausalLM,
         dict(LLAMA_LIKE, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         batch=True),
    spec("llama_rope_llama3", "llama", LlamaConfig, LlamaForCausalLM,
         # head_dim 8: wavelengths 6.3, 63, 628, 6283 -> kept, smoothed, scaled, scaled
         dict(LLAMA_LIKE, max_position_embeddings=256,
              rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0,
                                           "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 128})),
    spec("llama_rope_linear", "llama", LlamaConfig, LlamaForCausalLM,
         dict(LLAMA_LIKE, rope_parameters={"rope_type": "linear", "rope_theta": 10000.0,
                                           "factor": 4.0})),
    spec("llama_rope_yarn", "llama", LlamaConfig, LlamaForCausalLM,
         dict(LLAMA_LIKE, rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0,
                                           "factor": 4.0, "original_max_position_embeddings": 16,
                                           "beta_fast": 32.0, "beta_slow": 1.0})),
    spec("mistral", "mistral", MistralConfig, MistralForCausalLM,
         dict(LLAMA_LIKE, sliding_window=3,
              rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    spec("qwen2", "qwen2", Qwen2Config, Qwen2ForCausalLM,
         dict(LLAMA_LIKE, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    spec("qwen3", "qwen3", Qwen3Config, Qwen3ForCausalLM,
         dict(LLAMA_LIKE, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    spec("gemma2", "gemma2", Gemma2Config, Gemma2ForCausalLM,
         dict(LLAMA_LIKE, tie_word_embeddings=True, query_pre_attn_scalar=16,
              attn_logit_softcapping=2.0, final_logit_softcapping=30.0, sliding_window=3,
              layer_types=["sliding_attention", "full_attention"],
              rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         layers=(0, 1)),
    spec("gpt_oss", "gpt_oss", GptOssConfig, GptOssForCausalLM,
         dict(LLAMA_LIKE, intermediate_size=16, num_local_experts=2, num_experts_per_tok=1,
              max_position_embeddings=512,
              sliding_window=3, layer_types=["sliding_attention", "full_attention"],
              rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                               "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                               "original_max_position_embeddings": 16}),
         layers=(0, 1)),
]


def randomise_extras(model) -> None:
    """Norm weights, biases and sinks start as ones/zeros: give them random values."""
    generator = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            short = name.rsplit(".", 1)[-1]
            lowered = name.lower()
            if short == "sinks":
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype))
            elif short == "bias" or short.endswith("_bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
            elif "norm" in lowered or ".ln_" in lowered:
                param.add_(0.1 * torch.randn(param.shape, generator=generator, dtype=param.dtype))


def build(s) -> None:
    folder = MODELS / s["folder"]
    if folder.exists():
        shutil.rmtree(folder)
    torch.manual_seed(SEED)
    config = s["config_cls"](**s["config"])
    config._attn_implementation = "eager"
    if s["family"] == "gpt_oss":
        config._experts_implementation = "eager"  # grouped_mm has no float64
    model = s["model_cls"](config).to(DTYPE).eval()
    randomise_extras(model)
    model.save_pretrained(folder, safe_serialization=True)
    if s["folder"] == "llama":
        for variant in ("llama_sharded", "llama_bf16"):
            if (MODELS / variant).exists():
                shutil.rmtree(MODELS / variant)
        model.save_pretrained(MODELS / "llama_sharded", safe_serialization=True,
                              max_shard_size="70KB")
        model.to(torch.bfloat16).save_pretrained(MODELS / "llama_bf16", safe_serialization=True)


# ---------------------------------------------------------------- capture


def attention_modules(model, family, layer):
    """(module whose input is the attention input, module whose output is the attention output)."""
    if family == "gpt2":
        attn = model.transformer.h[layer].attn
        return attn, attn
    if family == "bert":
        attention = model.bert.encoder.layer[layer].attention
        return attention.self, attention.output.dense
    attn = model.model.layers[layer].self_attn
    return attn, attn


def load(folder) -> torch.nn.Module:
    extra = {"experts_implementation": "eager"} if folder == "gpt_oss" else {}
    auto = transformers.AutoModelForMaskedLM if folder == "bert" else transformers.AutoModelForCausalLM
    return auto.from_pretrained(MODELS / folder, dtype=DTYPE, attn_implementation="eager",
                                **extra).eval()


def run(model, family, layers, input_ids, attention_mask, substitute=None):
    """Run the model; per layer, the attention input, output and the mask the module received."""
    seen: dict[int, dict] = {layer: {} for layer in layers}
    handles = []
    for layer in layers:
        first, last = attention_modules(model, family, layer)

        def pre(module, args, kwargs, layer=layer):
            if "hidden_states" in kwargs:
                hidden = kwargs["hidden_states"]
            else:
                hidden = args[0]
            if substitute is not None:
                hidden = substitute[layer].clone()
                if "hidden_states" in kwargs:
                    kwargs = dict(kwargs, hidden_states=hidden)
                else:
                    args = (hidden, *args[1:])
            seen[layer]["input"] = hidden.detach().clone()
            mask = kwargs.get("attention_mask")
            if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
                mask = args[1]
            seen[layer]["mask"] = None if mask is None else mask.detach().clone()
            return args, kwargs

        def post(module, args, output, layer=layer):
            out = output[0] if isinstance(output, tuple) else output
            seen[layer]["output"] = out.detach().clone()

        handles.append(first.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(last.register_forward_hook(post))
    try:
        ids = torch.tensor(input_ids)
        kwargs = dict(input_ids=ids,
                      position_ids=torch.arange(ids.shape[1]).expand(ids.shape[0], -1))
        if attention_mask is not None:
            kwargs["attention_mask"] = torch.tensor(attention_mask)
        if family in ("bert", "gpt2"):
            # BERT's and GPT-2's absolute position ids are the same arange
            pass
        with torch.no_grad():
            model(**kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return seen


# ---------------------------------------------------------------- notes


def layer_type(config, layer):
    types = getattr(config, "layer_types", None)
    return types[layer] if types else None


def notes_for(model, family, layer) -> dict:
    config = model.config
    first, _ = attention_modules(model, family, layer)
    if family == "gpt2":
        heads = config.n_head
        head_dim = config.n_embd // heads
        return dict(heads=heads, kv_heads=heads, head_dim=head_dim, scale=first.scaling,
                    scale_formula="head_dim ** -0.5", causal=True, rope=None,
                    biases="c_attn and c_proj (Conv1D, weights stored (in, out); q|k|v packed "
                           "along the output axis); attn.bias is no bias (causal-mask buffer, "
                           "not saved by transformers 5.24)",
                    config_keys=["n_embd", "n_head", "scale_attn_weights",
                                 "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"])
    if family == "bert":
        heads = config.num_attention_heads
        return dict(heads=heads, kv_heads=heads, head_dim=config.hidden_size // heads,
                    scale=1 / math.sqrt(config.hidden_size // heads),
                    scale_formula="head_dim ** -0.5", causal=False, rope=None,
                    biases="query, key, value and attention.output.dense",
                    output="attention.output.dense (before dropout, residual and LayerNorm)",
                    config_keys=["hidden_size", "num_attention_heads",
                                 "position_embedding_type"])
    notes = dict(heads=config.num_attention_heads, kv_heads=config.num_key_value_heads,
                 head_dim=first.head_dim, scale=first.scaling, causal=True,
                 rope=dict(config.rope_parameters))
    keys = ["hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
            "rope_parameters"]
    kind = layer_type(config, layer)
    window = getattr(first, "sliding_window", None)
    if family == "mistral":
        window = config.sliding_window
        keys.append("sliding_window (every layer)")
    if kind is not None:
        notes["layer_type"] = kind
        keys += ["sliding_window", "layer_types"]
    notes["window"] = window
    if window:
        notes["window_rule"] = "key j visible from query i when i - window < j <= i"
    notes["biases"] = {
        "llama": "none (attention_bias false)", "mistral": "none",
        "qwen2": "q_proj, k_proj, v_proj (not o_proj)", "qwen3": "none (attention_bias false)",
        "gemma2": "none (attention_bias false)", "gpt_oss": "q_proj, k_proj, v_proj, o_proj",
    }[family]
    if family == "qwen3":
        notes["qk_norm"] = dict(over="head", weights="q_norm.weight, k_norm.weight (head_dim)",
                                eps=config.rms_norm_eps, rule="x / sqrt(mean(x^2) + eps) * weight",
                                order="after the projection, before RoPE")
        keys.append("rms_norm_eps")
    if family == "gemma2":
        notes["scale_formula"] = "query_pre_attn_scalar ** -0.5"
        notes["query_pre_attn_scalar"] = config.query_pre_attn_scalar
        notes["softcap"] = config.attn_logit_softcapping
        notes["softcap_rule"] = "softcap * tanh(scores * scale / softcap), then the mask added"
        keys += ["query_pre_attn_scalar", "attn_logit_softcapping"]
    else:
        notes["scale_formula"] = "head_dim ** -0.5"
    if family == "gpt_oss":
        notes["sinks"] = model.model.layers[layer].self_attn.sinks.detach().tolist()
        notes["sinks_rule"] = ("per-head logit (self_attn.sinks, unscaled) as an extra column "
                               "after the mask; softmax; the column dropped")
        notes["rope_style"] = "halves (first half / second half of head_dim), as rotate_half"
        notes["rope_attention_factor"] = model.model.rotary_emb.attention_scaling
        keys.append("attention_bias")
    elif family in ("llama", "mistral", "qwen2", "qwen3", "gemma2"):
        notes["rope_style"] = "halves (rotate_half)"
        rotary = model.model.rotary_emb
        if rotary.attention_scaling != 1.0:
            notes["rope_attention_factor"] = rotary.attention_scaling
    if family == "qwen2":
        keys.append("use_sliding_window (false)")
    notes["config_keys"] = keys
    return notes


def visible(mask: torch.Tensor | None, batch: int, q_len: int):
    """The 4-D additive/boolean mask the attention module received, as booleans (batch, q, k)."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        result = mask
    else:
        result = mask > torch.finfo(mask.dtype).min / 2
    result = result.expand(batch, -1, q_len, -1)[:, 0]
    return result.tolist()


# ---------------------------------------------------------------- independent check


def numpy_reference(model, family, layer, x, visible_mask) -> np.ndarray:
    """The layer written out in numpy float64 from the loaded weights (a check of the patched run).

    inv_freq for scaled RoPE is the model's own (recomputed in float64); the default one is
    computed here. x: (batch, seq, hidden); visible_mask: (batch, q, k) booleans or None.
    """
    state = {name: tensor.detach().numpy() for name, tensor in model.state_dict().items()}
    config = model.config
    batch, seq, hidden = x.shape
    if family == "gpt2":
        prefix = f"transformer.h.{layer}.attn."
        heads = kv_heads = config.n_head
        head_dim = hidden // heads
        qkv = x @ state[prefix + "c_attn.weight"] + state[prefix + "c_attn.bias"]
        q, k, v = np.split(qkv, 3, axis=-1)
        out_w, out_b = state[prefix + "c_proj.weight"], state[prefix + "c_proj.bias"]
    elif family == "bert":
        prefix = f"bert.encoder.layer.{layer}.attention."
        heads = kv_heads = config.num_attention_heads
        head_dim = hidden // heads

        def linear(name):
            return x @ state[prefix + name + ".weight"].T + state[prefix + name + ".bias"]

        q, k, v = linear("self.query"), linear("self.key"), linear("self.value")
        out_w, out_b = state[prefix + "output.dense.weight"].T, state[prefix + "output.dense.bias"]
    else:
        prefix = f"model.layers.{layer}.self_attn."
        heads, kv_heads, head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                     config.head_dim)

        def linear(name):
            result = x @ state[prefix + name + ".weight"].T
            return result + state.get(prefix + name + ".bias", 0.0)

        q, k, v = linear("q_proj"), linear("k_proj"), linear("v_proj")
        out_w = state[prefix + "o_proj.weight"].T
        out_b = state.get(prefix + "o_proj.bias", 0.0)
    q = q.reshape(batch, seq, heads, head_dim).transpose(0, 2, 1, 3)
    k = k.reshape(batch, seq, kv_heads, head_dim).transpose(0, 2, 1, 3)
    v = v.reshape(batch, seq, kv_heads, head_dim).transpose(0, 2, 1, 3)
    if family == "qwen3":
        def rms(t, weight):
            return t / np.sqrt(np.mean(t * t, axis=-1, keepdims=True) + config.rms_norm_eps) * weight

        q, k = rms(q, state[prefix + "q_norm.weight"]), rms(k, state[prefix + "k_norm.weight"])
    if family not in ("gpt2", "bert"):
        rotary = model.model.rotary_emb
        if rotary.rope_type == "default":
            theta = config.rope_parameters["rope_theta"]
            inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2) / head_dim)
        else:
            inv_freq = rotary.inv_freq.numpy()
        angles = np.arange(seq)[:, None] * inv_freq[None, :]
        angles = np.concatenate([angles, angles], axis=-1)
        cos, sin = np.cos(angles) * rotary.attention_scaling, np.sin(angles) * rotary.attention_scaling

        def rotate(t):
            half = head_dim // 2
            return t * cos + np.concatenate([-t[..., half:], t[..., :half]], axis=-1) * sin

        q, k = rotate(q), rotate(k)
    k = np.repeat(k, heads // kv_heads, axis=1)
    v = np.repeat(v, heads // kv_heads, axis=1)
    if family == "gemma2":
        scale = config.query_pre_attn_scalar ** -0.5
    else:
        scale = head_dim ** -0.5
    scores = q @ k.transpose(0, 1, 3, 2) * scale
    if family == "gemma2":
        cap = config.attn_logit_softcapping
        scores = np.tanh(scores / cap) * cap
    if visible_mask is not None:
        scores = np.where(visible_mask[:, None], scores, -np.inf)
    if family == "gpt_oss":
        sinks = np.broadcast_to(state[prefix + "sinks"][None, :, None, None], (batch, heads, seq, 1))
        scores = np.concatenate([scores, sinks], axis=-1)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    if family == "gpt_oss":
        weights = weights[..., :-1]
    context = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, seq, heads * head_dim)
    return context @ out_w + out_b


# ---------------------------------------------------------------- nn.MultiheadAttention

MHA_DIR = MODELS / "mha"
MHA_OUT = MODELS / "mha_goldens.json"


def mha_case(name, embed_dim=8, num_heads=2, batch_first=False, kdim=None, vdim=None,
             add_bias_kv=False, add_zero_attn=False, l_len=4, s_len=5, batch=2,
             attn_mask=None, key_padding_mask=None, self_attention=False):
    return dict(name=name, module=dict(embed_dim=embed_dim, num_heads=num_heads,
                                       batch_first=batch_first, kdim=kdim, vdim=vdim,
                                       add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn,
                                       bias=True),
                l_len=l_len, s_len=s_len, batch=batch, attn_mask=attn_mask,
                key_padding_mask=key_padding_mask, self_attention=self_attention)


# masks chosen so that no row is fully blocked (PyTorch gives NaN there)
BOOL_MASK = [[False, True, True, True, True], [False, False, True, True, True],
             [False, False, False, True, True], [True, False, False, False, True]]
FLOAT_MASK = [[0.0, -1.5, 0.25, -np.inf, 0.0], [0.5, 0.0, -np.inf, -2.0, 1.0],
              [-0.75, 0.0, 0.0, 0.0, -np.inf], [-np.inf, 0.3, -0.3, 0.0, 0.0]]
PADDING = [[False, False, False, False, False], [False, False, False, True, True]]

MHA_CASES = [
    mha_case("seq_first", batch_first=False),
    mha_case("batch_first", batch_first=True),
    mha_case("self_attention_seq_first", batch_first=False, l_len=5, self_attention=True),
    mha_case("kdim_vdim_seq_first", batch_first=False, kdim=6, vdim=5),
    mha_case("kdim_vdim_batch_first", batch_first=True, kdim=6, vdim=3),
    mha_case("bool_attn_mask", batch_first=True, attn_mask=BOOL_MASK),
    mha_case("float_attn_mask", batch_first=True, attn_mask=FLOAT_MASK),
    mha_case("key_padding_mask", batch_first=False, key_padding_mask=PADDING),
    mha_case("add_bias_kv", batch_first=True, add_bias_kv=True),
    mha_case("add_zero_attn", batch_first=True, add_zero_attn=True),
    mha_case("everything", batch_first=False, kdim=6, vdim=5, add_bias_kv=True,
             add_zero_attn=True, attn_mask=BOOL_MASK, key_padding_mask=PADDING),
]


def json_cells(array: np.ndarray):
    """Nested lists; -inf written null (JSON has no infinity)."""
    if array.ndim == 0:
        value = array.item()
        if isinstance(value, float) and math.isinf(value):
            assert value < 0
            return None
        return value
    return [json_cells(row) for row in array]


def make_mha() -> None:
    from safetensors.torch import save_file

    if MHA_DIR.exists():
        shutil.rmtree(MHA_DIR)
    MHA_DIR.mkdir()
    cases = []
    for number, c in enumerate(MHA_CASES):
        torch.manual_seed(SEED + 100 + number)
        module = torch.nn.MultiheadAttention(**c["module"], dtype=DTYPE).eval()
        with torch.no_grad():
            for name, param in module.named_parameters():
                if name.endswith("bias") and name not in ("bias_k", "bias_v"):
                    param.copy_(0.1 * torch.randn(param.shape, dtype=DTYPE))
        e = c["module"]["embed_dim"]
        kdim, vdim = c["module"]["kdim"] or e, c["module"]["vdim"] or e

        def shaped(length, width, c=c):  # this case's layout, bound now
            if c["module"]["batch_first"]:
                return torch.randn(c["batch"], length, width, dtype=DTYPE)
            return torch.randn(length, c["batch"], width, dtype=DTYPE)

        query = shaped(c["l_len"], e)
        if c["self_attention"]:
            key = value = query
        else:
            key, value = shaped(c["s_len"], kdim), shaped(c["s_len"], vdim)
        kwargs = {}
        if c["attn_mask"] is not None:
            mask = np.array(c["attn_mask"])
            kwargs["attn_mask"] = torch.tensor(mask, dtype=torch.bool if mask.dtype == bool else DTYPE)
        if c["key_padding_mask"] is not None:
            kwargs["key_padding_mask"] = torch.tensor(c["key_padding_mask"])
        with torch.no_grad():
            output, averaged = module(query, key, value, need_weights=True,
                                      average_attn_weights=True, **kwargs)
            output_again, per_head = module(query, key, value, need_weights=True,
                                            average_attn_weights=False, **kwargs)
        assert torch.equal(output, output_again)
        assert torch.isfinite(output).all() and torch.isfinite(averaged).all()
        torch.testing.assert_close(per_head.mean(dim=1), averaged, rtol=1e-14, atol=1e-15)
        state = {name: tensor.detach().contiguous() for name, tensor in module.state_dict().items()}
        file = MHA_DIR / f"{c['name']}.safetensors"
        save_file(state, file, metadata={"format": "pt"})
        record = dict(name=c["name"], module=c["module"], state_dict=f"mha/{file.name}",
                      tensors={name: list(tensor.shape) for name, tensor in state.items()},
                      query=query.tolist())
        if not c["self_attention"]:
            record["key"], record["value"] = key.tolist(), value.tolist()
        else:
            record["key_value"] = "query (self-attention: query, key and value are one tensor)"
        if "attn_mask" in kwargs:
            record["attn_mask"] = json_cells(kwargs["attn_mask"].numpy())
            record["attn_mask_meaning"] = ("bool: True = blocked" if kwargs["attn_mask"].dtype == torch.bool
                                           else "float: added to the scores (null = -inf)")
        if "key_padding_mask" in kwargs:
            record["key_padding_mask"] = c["key_padding_mask"]
            record["key_padding_mask_meaning"] = "(batch, s_len) bool: True = key ignored"
        record["attn_output"] = output.tolist()
        record["attn_output_weights"] = averaged.tolist()
        record["attn_output_weights_per_head"] = per_head.tolist()
        cases.append(record)
    document = dict(
        generator="tests/data/make_model_goldens.py",
        torch=torch.__version__,
        dtype="float64",
        layout=("batch_first false: query (l_len, batch, embed_dim), key/value (s_len, batch, "
                "kdim/vdim), attn_output likewise (l_len, batch, embed_dim); batch_first true: "
                "batch first. attn_output_weights (batch, l_len, s_len') averaged over heads "
                "(need_weights=True, average_attn_weights=True); _per_head (batch, heads, l_len, "
                "s_len'); s_len' = s_len + 1 with add_bias_kv, + 1 more with add_zero_attn. "
                "add_zero_attn leaves no trace in the state_dict: it is in `module` only."),
        call="module(query, key, value, need_weights=True, average_attn_weights=True, "
             "attn_mask=..., key_padding_mask=...), module in eval mode (dropout 0)",
        cases=cases,
    )
    MHA_OUT.write_text(compact_json(document) + "\n")
    print(f"wrote {MHA_OUT}")


# ---------------------------------------------------------------- main


def to_list(array: torch.Tensor, batched: bool):
    result = array.detach().numpy()
    if not batched:
        result = result[0]
    assert np.isfinite(result).all()
    return result.tolist()


def check_bf16_decoding() -> None:
    """The bf16 loader's upcast equals decoding the raw bytes (bf16 = top half of a float32)."""
    path = MODELS / "llama_bf16" / "model.safetensors"
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    model = load("llama_bf16")
    state = dict(model.named_parameters())
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "BF16", (name, info["dtype"])
        start, end = info["data_offsets"]
        halves = np.frombuffer(raw[8 + length + start:8 + length + end], dtype="<u2")
        decoded = (halves.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        decoded = decoded.reshape(info["shape"])
        assert np.array_equal(decoded, state[name].detach().numpy()), name


def tensor_names(folder: str) -> dict:
    """Tensor names -> "dtype (shape) file" in the folder's safetensors files."""
    names = {}
    for path in sorted((MODELS / folder).glob("*.safetensors")):
        raw = path.read_bytes()
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + length])
        for name, info in header.items():
            if name != "__metadata__":
                shape = "(" + ", ".join(str(size) for size in info["shape"]) + ")"
                names[name] = f"{info['dtype']} {shape} {path.name}"
    return dict(sorted(names.items()))


def compact_json(document) -> str:
    """Indented JSON with each list of numbers or booleans on one line."""
    text = json.dumps(document, indent=1, allow_nan=False)
    return re.sub(r"\[[^\[\]{}\"]*\]", lambda m: "[" + ", ".join(
        part.strip() for part in m.group(0)[1:-1].split(",")) + "]" if m.group(0).strip("[] \n") else "[]",
        text)


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    MODELS.mkdir(exist_ok=True)
    for s in SPECS:
        build(s)
    check_bf16_decoding()

    cases = []
    runs = [(s, s["folder"]) for s in SPECS]
    llama = next(s for s in SPECS if s["folder"] == "llama")
    runs += [(llama, "llama_sharded"), (llama, "llama_bf16")]
    for s, folder in runs:
        family = s["family"]
        batched = s["batch"] and folder == s["folder"]
        ids = INPUT_IDS_BATCH if batched else INPUT_IDS
        mask = MASK_BATCH if batched else None
        golden_model = load(folder)
        with float32_steps_in_float64():
            recompute_inv_freq(golden_model)
            golden = run(golden_model, family, s["layers"], ids, mask)
        shipped_model = load(folder)
        shipped = run(shipped_model, family, s["layers"], ids, mask,
                      substitute={layer: golden[layer]["input"] for layer in s["layers"]})
        for layer in s["layers"]:
            out, out_shipped = golden[layer]["output"], shipped[layer]["output"]
            assert torch.equal(shipped[layer]["input"], golden[layer]["input"])
            torch.testing.assert_close(out_shipped, out, rtol=SHIPPED_RTOL, atol=SHIPPED_ATOL)
            difference = (out_shipped - out).abs().max().item()
            if family in ("gpt2", "bert"):
                assert difference == 0.0, (folder, difference)
            batch, q_len = len(ids), len(ids[0])
            notes = notes_for(golden_model, family, layer)
            notes["visible"] = visible(golden[layer]["mask"], batch, q_len)
            reference = numpy_reference(
                golden_model, family, layer, golden[layer]["input"].numpy(),
                None if notes["visible"] is None else np.array(notes["visible"]))
            reference_error = np.abs(reference - out.numpy()).max() / np.abs(out.numpy()).max()
            assert reference_error < 1e-13, (folder, layer, reference_error)
            if not batched and notes["visible"] is not None:
                notes["visible"] = notes["visible"][0]
            if folder == "llama_bf16":
                notes["weights"] = ("BF16 in the file; the golden is the model in float64 on the "
                                    "decoded weights (bf16 -> float64 exactly)")
            if folder == "llama_sharded":
                notes["weights"] = "the llama model's weights, sharded (model.safetensors.index.json)"
            case = dict(
                name=f"{folder}_layer{layer}",
                family=family,
                model=folder,
                layer=layer,
                input_ids=ids if batched else ids[0],
                input=to_list(golden[layer]["input"], batched),
                position_ids=list(range(q_len)) if not batched else [list(range(q_len))] * batch,
            )
            if mask is not None:
                case["attention_mask"] = mask
            case["output"] = to_list(out, batched)
            case["output_as_shipped"] = to_list(out_shipped, batched)
            case["as_shipped_max_abs_difference"] = difference
            case["notes"] = notes
            cases.append(case)
            print(f"{case['name']}: as shipped differs by {difference:.2e}; "
                  f"numpy reference by {reference_error:.2e} (relative to max |output|)")

    folders = sorted({folder for _, folder in runs})
    document = dict(
        generator="tests/data/make_model_goldens.py",
        torch=torch.__version__,
        transformers=transformers.__version__,
        dtype="float64",
        layout=("input and output are (seq_len, hidden) for one sequence, (batch, seq_len, "
                "hidden) when input_ids has a batch; position_ids and attention_mask (1 = token, "
                "0 = padding) likewise; notes.visible is the mask the attention module received, "
                "True = key visible, (q_len, k_len) or (batch, q_len, k_len)"),
        patches=("output: float32 steps of transformers 5.24 run in float64 (eager softmax, "
                 "QK-norm RMSNorm, RoPE inv_freq/cos/sin; see the script's docstring); "
                 "output_as_shipped: the unpatched module on the same input"),
        models={folder: tensor_names(folder) for folder in folders},
        cases=cases,
    )
    OUT.write_text(compact_json(document) + "\n")
    print(f"wrote {OUT}")
    make_mha()


if __name__ == "__main__":
    main()
