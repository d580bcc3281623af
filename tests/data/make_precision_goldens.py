"""Make tests/data/precision/: what PyTorch computes in float32, float16 and bfloat16 (issue 13).

Needs torch and transformers (on the project's machines, in a throwaway environment:
`python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 transformers numpy`);
attncli's tests do not. Rerun from the project root (no downloads, CPU only, about 10 s):

    /tmp/torchvenv/bin/python tests/data/make_precision_goldens.py

240 problems, each drawn from its own seed (np.random.default_rng([SEED, id]), so one problem
does not depend on the others), with one dtype and one implementation; problem i has
implementation IMPLEMENTATIONS[i % 4] and dtype DTYPES[(i // 4) % 3], so each of the 12 pairs has
20 problems:
- sdpa_math: F.scaled_dot_product_attention(q, k, v) under sdpa_kernel(SDPBackend.MATH);
- sdpa_flash: the same under sdpa_kernel(SDPBackend.FLASH_ATTENTION), SDPA's fused CPU kernel
  (with only that backend allowed, an unsupported combination raises instead of falling back;
  none did with torch 2.13 on CPU);
- nn_mha: nn.MultiheadAttention(E, heads, batch_first=True) in eval mode, its weights set and the
  module cast with .to(dtype), called as mha(x, x, x, need_weights=False, attn_mask=...) under
  torch.no_grad() (how a model is run for inference); the index records whether its fast path
  (torch._native_multi_head_attention) ran;
- hf_eager: transformers' Llama eager_attention_forward(module, q, k, v, mask, scaling=head_dim**-0.5)
  with a stand-in module (num_key_value_groups 1, not training): matmuls in the dtype, softmax
  upcast to float32 and cast back; its mask is additive, torch.finfo(dtype).min where blocked,
  0 where allowed, shape (batch, 1, q_len, k_len), in the dtype (as masking_utils makes it).

Sizes (so that the folder, float64 exact outputs included, stays under 10 MB): k_len log-uniform in
1..1024; if k_len <= 128, q_len = k_len, or for a fifth its own log-uniform draw in 1..128; if
k_len > 128, a fifth square, the rest a short query (q_len log-uniform in 1..16, as in decoding).
LONG forces five square problems of 512..1024 and HUGE three with head_dim 128: 1024 x 1024 (hf_eager
bfloat16), 32 x 1024 and 32 x 512. head_dim in {16, 32, 64, 128}, halved (down to 16) until
max(q_len, k_len)*head_dim <= LONG_CAP; heads 1..8 and batch 1..2, reduced (heads first) until
batch*heads*max(len)*head_dim <= ELEMENT_CAP. nn_mha (self-attention, so square): length
log-uniform in 1..128 (or LONG), E = 32 (64 or 128 for the MHA_E problems, which are kept short),
halved down to 16 until len*E <= MHA_CAP; heads a power of two so that head_dim = E/heads is one
of the four. Masks: a quarter causal (square problems only; SDPA's is_causal), a fifth a random
boolean mask (L, S), each row keeping at least one key; none otherwise (HUGE: causal or none).
Values: q, k, v (or x) ~ N(0, std^2) with std log-uniform in [0.5, 2] (std^2 is then the scale of
the scores); MHA weights ~ N(0, 1/E), biases ~ N(0, 0.1^2). They are drawn in float64 by numpy
and rounded to the dtype by torch (.to(dtype), round to nearest even); what is stored is exactly
what PyTorch received.

Exact output: numpy float64 from the stored, dtype-rounded inputs (the textbook formula: scores
q.k^T/sqrt(d), blocked scores -inf, softmax, times v; for nn_mha the projections x.W^T + b before
and the output projection after). Each is checked here against the same torch implementation run
in float64 on the same values (torch SDPA math; the float64 MHA module), to 1e-12 relative.

Files: one compressed NPZ per dtype (no object arrays; bfloat16 stored as its raw uint16 bits)
and index.json; see precision/README.md, which this script also writes.
"""

from __future__ import annotations

import json
import math
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
import transformers
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers.models.llama.modeling_llama import eager_attention_forward

HERE = Path(__file__).parent
OUT = HERE / "precision"
SEED = 13
COUNT = 240
IMPLEMENTATIONS = ("sdpa_math", "sdpa_flash", "nn_mha", "hf_eager")
DTYPES = ("float32", "float16", "bfloat16")
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}  # half an ulp at 1
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
HEAD_DIMS = (16, 32, 64, 128)
MAX_LEN = 1024
MHA_MAX_LEN = 128  # nn_mha lengths (square): log-uniform 1..128, plus the LONG ones
SHORT = 128  # k_len <= SHORT: a fifth cross (q_len log-uniform 1..SHORT), the rest square
SHORT_CROSS = 0.2
LONG_SQUARE = 0.2  # k_len > SHORT: a fifth square, the rest cross with q_len log-uniform 1..LONG_CROSS_Q
LONG_CROSS_Q = 16
ELEMENT_CAP = 512  # batch*heads*max(q_len, k_len)*head_dim: heads, then batch, are reduced to it
LONG_CAP = 2048  # max(q_len, k_len)*head_dim: head_dim is halved to it, down to 16 (HUGE excepted)
LONG = {7: 600, 42: 800, 66: 512, 91: 1024, 229: 900}  # square, q_len = k_len
HUGE = {11: (1024, 1024), 201: (32, 1024), 5: (32, 512)}  # (q_len, k_len) with head_dim 128, batch 1, one head
MHA_E = {6: 128, 2: 64, 10: 64, 14: 64, 18: 64, 22: 64, 62: 64}  # nn_mha's E: 32 or less, but these
MHA_CAP = 2048  # nn_mha: batch*len*E; E is halved (down to 16) to it, then batch; MHA_E problems are shortened
EXACT_RTOL = 1e-12


# ---------------------------------------------------------------- problems


def log_uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    return int(min(high, max(low, round(math.exp(rng.uniform(math.log(low), math.log(high + 0.5)))))))


def draw(pid: int) -> dict:
    """Problem `pid`: its sizes, mask and values (float64, not yet rounded)."""
    rng = np.random.default_rng([SEED, pid])
    implementation = IMPLEMENTATIONS[pid % len(IMPLEMENTATIONS)]
    dtype = DTYPES[(pid // len(IMPLEMENTATIONS)) % len(DTYPES)]
    if pid in HUGE:
        q_len, k_len = HUGE[pid]
    elif pid in LONG or implementation == "nn_mha":
        q_len = k_len = LONG.get(pid) or log_uniform_int(rng, 1, MHA_MAX_LEN)
    else:
        k_len = log_uniform_int(rng, 1, MAX_LEN)
        if k_len <= SHORT:
            q_len = log_uniform_int(rng, 1, SHORT) if rng.uniform() < SHORT_CROSS else k_len
        else:
            q_len = k_len if rng.uniform() < LONG_SQUARE else log_uniform_int(rng, 1, LONG_CROSS_Q)
    head_dim = 128 if pid in HUGE else int(rng.choice(HEAD_DIMS))
    heads = int(rng.integers(1, 9))
    batch = int(rng.integers(1, 3))
    if implementation == "nn_mha":  # E = heads*head_dim, at most 32 (its weights dominate its size) or MHA_E[pid]
        embed = MHA_E.get(pid, 32)
        if pid in MHA_E:
            q_len = k_len = min(q_len, MHA_CAP // embed)
        while q_len * embed > MHA_CAP and embed > HEAD_DIMS[0]:
            embed //= 2
        heads = 2 ** int(math.log2(min(heads, embed // HEAD_DIMS[0])))  # so that head_dim is in HEAD_DIMS
        head_dim = embed // heads
        while batch * q_len * embed > MHA_CAP and batch > 1:
            batch -= 1
    else:
        longest = max(q_len, k_len)
        while longest * head_dim > LONG_CAP and head_dim > HEAD_DIMS[0] and pid not in HUGE:
            head_dim //= 2
        while batch * heads * longest * head_dim > ELEMENT_CAP and heads > 1:
            heads -= 1
        while batch * heads * longest * head_dim > ELEMENT_CAP and batch > 1:
            batch -= 1
    kind = rng.uniform()
    mask_kind = "causal" if kind < 0.25 and q_len == k_len else "bool" if kind > 0.8 else "none"
    if pid in HUGE:
        mask_kind = "causal" if q_len == k_len else "none"  # a 1024 x 1024 random mask costs 150 kB
    allowed = None
    if mask_kind == "bool":
        allowed = rng.uniform(size=(q_len, k_len)) < rng.uniform(0.3, 0.9)
        allowed[np.arange(q_len), rng.integers(0, k_len, size=q_len)] = True
    elif mask_kind == "causal":
        allowed = np.tril(np.ones((q_len, k_len), dtype=bool))
    std = float(math.exp(rng.uniform(math.log(0.5), math.log(2.0))))
    problem = dict(id=pid, name=f"p{pid:03d}", implementation=implementation, dtype=dtype, batch=batch,
                   heads=heads, q_len=q_len, k_len=k_len, head_dim=head_dim, mask=mask_kind, input_std=std,
                   seed=[SEED, pid])
    values = {}
    if implementation == "nn_mha":
        embed = heads * head_dim
        problem["embed_dim"] = embed
        values["x"] = rng.normal(0.0, std, size=(batch, q_len, embed))
        values["in_proj_weight"] = rng.normal(0.0, 1 / math.sqrt(embed), size=(3 * embed, embed))
        values["in_proj_bias"] = rng.normal(0.0, 0.1, size=3 * embed)
        values["out_proj_weight"] = rng.normal(0.0, 1 / math.sqrt(embed), size=(embed, embed))
        values["out_proj_bias"] = rng.normal(0.0, 0.1, size=embed)
    else:
        values["q"] = rng.normal(0.0, std, size=(batch, heads, q_len, head_dim))
        values["k"] = rng.normal(0.0, std, size=(batch, heads, k_len, head_dim))
        values["v"] = rng.normal(0.0, std, size=(batch, heads, k_len, head_dim))
    return dict(problem=problem, values=values, allowed=allowed)


# ---------------------------------------------------------------- PyTorch


class NativeMhaSpy:
    """Counts calls of torch._native_multi_head_attention (nn.MultiheadAttention's fast path)."""

    def __init__(self):
        self.calls = 0
        self.original = torch._native_multi_head_attention

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.original(*args, **kwargs)

    def __enter__(self):
        torch._native_multi_head_attention = self
        return self

    def __exit__(self, *exc):
        torch._native_multi_head_attention = self.original


def run_sdpa(tensors: dict, problem: dict, allowed, backend) -> torch.Tensor:
    kwargs = {}
    if problem["mask"] == "causal":
        kwargs["is_causal"] = True
    elif problem["mask"] == "bool":
        kwargs["attn_mask"] = torch.from_numpy(allowed)  # True = takes part
    with sdpa_kernel([backend]):
        return F.scaled_dot_product_attention(tensors["q"], tensors["k"], tensors["v"], **kwargs)


def run_hf_eager(tensors: dict, problem: dict, allowed) -> torch.Tensor:
    q = tensors["q"]
    module = types.SimpleNamespace(num_key_value_groups=1, training=False)
    mask = None
    if allowed is not None:
        blocked = torch.tensor(torch.finfo(q.dtype).min, dtype=q.dtype)
        mask = torch.where(torch.from_numpy(allowed), torch.tensor(0.0, dtype=q.dtype), blocked)
        mask = mask.expand(problem["batch"], 1, problem["q_len"], problem["k_len"])
    output, _ = eager_attention_forward(module, q, tensors["k"], tensors["v"], mask,
                                        scaling=problem["head_dim"] ** -0.5)
    return output.transpose(1, 2)  # HF returns (batch, len, heads, dim); stored as (batch, heads, len, dim)


def run_mha(tensors: dict, problem: dict, allowed) -> tuple[torch.Tensor, bool]:
    embed, heads = problem["embed_dim"], problem["heads"]
    dtype = tensors["x"].dtype
    mha = torch.nn.MultiheadAttention(embed, heads, batch_first=True, bias=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(tensors["in_proj_weight"].to(torch.float64))
        mha.in_proj_bias.copy_(tensors["in_proj_bias"].to(torch.float64))
        mha.out_proj.weight.copy_(tensors["out_proj_weight"].to(torch.float64))
        mha.out_proj.bias.copy_(tensors["out_proj_bias"].to(torch.float64))
    mha = mha.to(dtype).eval()
    for name, parameter in (("in_proj_weight", mha.in_proj_weight), ("in_proj_bias", mha.in_proj_bias),
                            ("out_proj_weight", mha.out_proj.weight), ("out_proj_bias", mha.out_proj.bias)):
        assert torch.equal(parameter, tensors[name]), name  # the module holds exactly the stored values
    kwargs = {}
    if allowed is not None:
        kwargs["attn_mask"] = torch.from_numpy(~allowed)  # nn.MultiheadAttention: True = blocked
        kwargs["is_causal"] = problem["mask"] == "causal"
    x = tensors["x"]
    with torch.no_grad(), NativeMhaSpy() as spy:
        output, _ = mha(x, x, x, need_weights=False, **kwargs)
    return output, spy.calls > 0


def run_torch(problem: dict, tensors: dict, allowed) -> tuple[torch.Tensor, dict]:
    implementation = problem["implementation"]
    if implementation == "sdpa_math":
        return run_sdpa(tensors, problem, allowed, SDPBackend.MATH), {"sdpa_backend": "MATH"}
    if implementation == "sdpa_flash":
        return run_sdpa(tensors, problem, allowed, SDPBackend.FLASH_ATTENTION), {"sdpa_backend": "FLASH_ATTENTION"}
    if implementation == "hf_eager":
        return run_hf_eager(tensors, problem, allowed), {}
    output, fast = run_mha(tensors, problem, allowed)
    return output, {"mha_fast_path": fast}


def torch_float64_reference(problem: dict, tensors: dict, allowed) -> torch.Tensor:
    """The same implementation in float64 on the same (rounded) values, for the cross-check."""
    wide = {name: t.to(torch.float64) for name, t in tensors.items()}
    if problem["implementation"] == "nn_mha":
        return run_mha(wide, problem, allowed)[0]
    return run_sdpa(wide, problem, allowed, SDPBackend.MATH)


# ---------------------------------------------------------------- numpy float64


def np_softmax_attention(q, k, v, allowed) -> np.ndarray:
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights @ v


def np_exact(problem: dict, wide: dict, allowed) -> np.ndarray:
    if problem["implementation"] != "nn_mha":
        return np_softmax_attention(wide["q"], wide["k"], wide["v"], allowed)
    batch, length, embed = wide["x"].shape
    heads, dim = problem["heads"], problem["head_dim"]
    projected = wide["x"] @ wide["in_proj_weight"].T + wide["in_proj_bias"]
    q, k, v = (projected[..., i * embed:(i + 1) * embed].reshape(batch, length, heads, dim).transpose(0, 2, 1, 3)
               for i in range(3))
    context = np_softmax_attention(q, k, v, allowed).transpose(0, 2, 1, 3).reshape(batch, length, embed)
    return context @ wide["out_proj_weight"].T + wide["out_proj_bias"]


# ---------------------------------------------------------------- storage


def to_storage(tensor: torch.Tensor) -> np.ndarray:
    """Exactly the tensor's values: float32/float16 as they are, bfloat16 as its raw uint16 bits."""
    tensor = tensor.detach().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16).copy()
    return tensor.numpy().copy()


def from_storage(array: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values as float64 (bfloat16 bits shifted into the high half of a float32)."""
    if dtype == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return array.astype(np.float64)


def stats(output: np.ndarray, exact: np.ndarray) -> dict:
    error = output - exact
    peak = float(np.abs(exact).max())
    max_abs = float(np.abs(error).max())
    return dict(max_abs_error=max_abs, max_abs_exact=peak, rel_max_error=max_abs / peak,
                rel_fro_error=float(np.linalg.norm(error) / np.linalg.norm(exact)))


def make(pid: int, arrays: dict) -> dict:
    drawn = draw(pid)
    problem, allowed = drawn["problem"], drawn["allowed"]
    dtype = TORCH_DTYPES[problem["dtype"]]
    tensors = {name: torch.from_numpy(value).to(dtype) for name, value in drawn["values"].items()}
    output, extra = run_torch(problem, tensors, allowed)
    assert output.dtype == dtype, (pid, output.dtype)
    problem.update(extra)
    stored = {name: to_storage(t) for name, t in tensors.items()}
    stored["output"] = to_storage(output)
    wide = {name: from_storage(stored[name], problem["dtype"]) for name in tensors}
    for name, t in tensors.items():
        assert np.array_equal(wide[name], t.to(torch.float64).numpy()), (pid, name)
    exact = np_exact(problem, wide, allowed)
    check = torch_float64_reference(problem, tensors, allowed).numpy()
    agreement = float(np.abs(check - exact).max() / np.abs(exact).max())
    assert agreement <= EXACT_RTOL, (pid, agreement)
    stored["exact"] = exact
    if allowed is not None:
        stored["allowed"] = allowed
    torch_out = from_storage(stored["output"], problem["dtype"])
    assert np.all(np.isfinite(torch_out)), pid
    problem.update(stats(torch_out, exact))
    problem["exact_vs_torch_float64"] = agreement
    if problem["dtype"] != "float32":
        # does the result equal the same implementation run in float32 on the same values, rounded once?
        upcast = {name: t.to(torch.float32) for name, t in tensors.items()}
        once = run_torch(problem, upcast, allowed)[0].to(dtype)
        problem["equals_float32_rounded_once"] = bool(torch.equal(once, output))
    else:
        problem["equals_float32_rounded_once"] = None
    problem["arrays"] = {}
    for name, value in stored.items():
        key = f"{problem['name']}_{name}"
        assert value.dtype != object
        arrays[key] = value
        problem["arrays"][name] = key
    problem["shapes"] = {name: list(value.shape) for name, value in stored.items()}
    return problem


# ---------------------------------------------------------------- README


def summary_table(problems: list[dict]) -> str:
    lines = ["| dtype | implementation | problems | median rel. max error | max rel. max error | max / u "
             "| median rel. Frobenius error | max rel. Frobenius error |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for dtype in DTYPES:
        for implementation in IMPLEMENTATIONS:
            chosen = [p for p in problems if p["dtype"] == dtype and p["implementation"] == implementation]
            rel_max = np.array([p["rel_max_error"] for p in chosen])
            rel_fro = np.array([p["rel_fro_error"] for p in chosen])
            lines.append(f"| {dtype} | {implementation} | {len(chosen)} | {np.median(rel_max):.2e} | "
                         f"{rel_max.max():.2e} | {rel_max.max() / UNIT_ROUNDOFF[dtype]:.2f} | "
                         f"{np.median(rel_fro):.2e} | {rel_fro.max():.2e} |")
    return "\n".join(lines)


def observations(problems: list[dict]) -> list[str]:
    notes = []
    for implementation in IMPLEMENTATIONS:
        for dtype in DTYPES[1:]:
            chosen = [p for p in problems if p["dtype"] == dtype and p["implementation"] == implementation]
            same = sum(p["equals_float32_rounded_once"] for p in chosen)
            notes.append(f"{implementation} {dtype}: {same}/{len(chosen)} bit-identical to the same call in "
                         "float32 on the same values, rounded once at the end")
    mha = [p for p in problems if p["implementation"] == "nn_mha"]
    for dtype in DTYPES:
        chosen = [p for p in mha if p["dtype"] == dtype]
        fast = sum(p["mha_fast_path"] for p in chosen)
        notes.append(f"nn_mha {dtype}: fast path (torch._native_multi_head_attention) in {fast}/{len(chosen)}")
    return notes


def worst(problems: list[dict], dtype: str, implementation: str) -> float:
    """The largest relative max error of these problems, in units of the dtype's unit roundoff."""
    return max(p["rel_max_error"] / UNIT_ROUNDOFF[dtype] for p in problems
               if p["dtype"] == dtype and p["implementation"] == implementation)


def write_readme(problems: list[dict], files: dict) -> None:
    sizes = "\n".join(f"| `{name}` | {size / 1e6:.2f} MB |" for name, size in files.items())
    notes = "\n".join(f"- {line}" for line in observations(problems))
    max_math = " / ".join(f"{worst(problems, d, 'sdpa_math'):.2f} u ({d})" for d in DTYPES[1:])
    max_other = max(worst(problems, d, i) for d in DTYPES[1:] for i in IMPLEMENTATIONS[1:])
    bins = [(1, 16), (17, 128), (129, 511), (512, 1024)]
    spread = ", ".join(f"{sum(low <= p['k_len'] <= high for p in problems)} with k_len {low}..{high}"
                       for low, high in bins)
    square = sum(p["q_len"] == p["k_len"] for p in problems)
    long_square = sorted(p["q_len"] for p in problems if p["q_len"] == p["k_len"] and p["q_len"] >= 512)
    dims = ", ".join(f"{sum(p['head_dim'] == d for p in problems)} x {d}" for d in HEAD_DIMS)
    multi = sum(p["heads"] > 1 for p in problems)
    batched = sum(p["batch"] > 1 for p in problems)
    masks = ", ".join(f"{sum(p['mask'] == kind for p in problems)} {kind}" for kind in ("none", "causal", "bool"))
    text = f"""# PyTorch in float32, float16 and bfloat16 (issue 13)

Made by `tests/data/make_precision_goldens.py` with torch {torch.__version__}, transformers
{transformers.__version__}, numpy {np.__version__}, on CPU (about 10 s on 2 cores). Rerun from the project root:

    /tmp/torchvenv/bin/python tests/data/make_precision_goldens.py

The script's docstring says exactly how each problem is drawn and run. In short: {len(problems)} random
problems (seeds `[{SEED}, id]`), 20 per dtype x implementation, implementations `sdpa_math`
(`F.scaled_dot_product_attention` under `SDPBackend.MATH`), `sdpa_flash` (`SDPBackend.FLASH_ATTENTION`,
SDPA's fused CPU kernel, no fallback allowed), `nn_mha` (`nn.MultiheadAttention`, `batch_first=True`,
eval, `no_grad`, self-attention from x) and `hf_eager` (transformers' Llama `eager_attention_forward`,
softmax upcast to float32).

Sizes (chosen so that the folder stays under 10 MB, the exact float64 output included): {spread};
{square} square (q_len = k_len), the others cross - mostly a short query (q_len <= {LONG_CROSS_Q}) on a long
key (k_len > {SHORT}), as in decoding; square problems of length >= 512: {long_square}; the
1024 x 1024 one has head_dim 128, and two cross ones (q_len 32, k_len 512 and 1024) too. head_dim:
{dims} (long problems are kept to head_dim 16 to save room); {multi} problems have 2..8 heads, {batched}
batch 2. nn_mha: E <= 32 (64 or 128 for seven), length 1..128 and two at 512 and 800. Masks: {masks}
(causal only on square problems). Inputs ~ N(0, std^2), std log-uniform in 0.5..2 (`input_std`), so the
scores' standard deviation (std^2) is 0.25..4; nn_mha weights ~ N(0, 1/E), biases ~ N(0, 0.1^2).

## Files

| file | size |
| --- | ---: |
{sizes}

`index.json` lists every problem: `id`, `name`, `implementation`, `dtype`, `batch`, `heads`, `q_len`,
`k_len`, `head_dim` (`embed_dim` for nn_mha), `mask`, `input_std`, `seed`, the `file` (NPZ) and
`arrays` (role -> array name in it), `shapes`, and measured errors of PyTorch's output against the
exact one: `max_abs_error`, `max_abs_exact`, `rel_max_error` (their ratio), `rel_fro_error`
(Frobenius norm of the error over that of the exact output); `exact_vs_torch_float64`; for float16 and
bfloat16 `equals_float32_rounded_once`; `sdpa_backend` or `mha_fast_path`.

Arrays (NPZ per dtype, `np.load(..., allow_pickle=False)`; nothing is pickled):
- sdpa_math, sdpa_flash, hf_eager: `q` (batch, heads, q_len, head_dim), `k`, `v` (batch, heads,
  k_len, head_dim); nn_mha: `x` (batch, len, E), `in_proj_weight` (3E, E), `in_proj_bias` (3E),
  `out_proj_weight` (E, E), `out_proj_bias` (E) - PyTorch's layout, applied as x W^T + b;
- `output`: what PyTorch returned, (batch, heads, q_len, head_dim) for the SDPA/HF problems (HF's
  (batch, len, heads, dim) transposed back), (batch, len, E) for nn_mha;
- inputs and output in the problem's dtype, exactly as PyTorch had them: float32 and float16 as
  themselves, bfloat16 as its raw bits in uint16 (decode: `(bits.astype(uint32) << 16).view(float32)`);
- `exact`: float64, computed with numpy from the stored (already rounded) inputs with the textbook
  formula, checked in the script against the same torch implementation in float64 (<= 1e-12 relative);
- `allowed` (bool, q_len x k_len, True = may attend) when `mask` is `causal` or `bool`. What PyTorch
  received: SDPA `is_causal=True` for causal, `attn_mask=allowed` for bool; nn_mha
  `attn_mask=~allowed` (its True = blocked), with `is_causal=True` for causal; hf_eager an additive
  mask, `torch.finfo(dtype).min` where blocked, 0 where allowed, (batch, 1, q_len, k_len), in the dtype.

## Errors of PyTorch against the exact output

Relative max error = max |torch - exact| / max |exact|; relative Frobenius error = ||torch - exact||_F /
||exact||_F; u = the dtype's unit roundoff (2^-24, 2^-11, 2^-8), so `max / u` is the worst relative max
error in units of u.

{summary_table(problems)}

## What PyTorch did

{notes}
- So SDPA's math backend on CPU computes float16 and bfloat16 in float32 and rounds only its output:
  its error is that one rounding (at most u relative to each element, here <= {max_math} of max |exact|).
  The fused kernel, nn_mha and hf_eager round intermediate results too (hf_eager: q.k^T, the scaled
  scores and the softmax weights are rounded to the dtype, as the issue's emulation assumes) and come
  out up to {max_other:.1f} u. A rounded score s carries an absolute error up to |s| u, which the
  softmax turns into a relative error of its weights: the larger the scores (`input_std`), the larger
  the error.
- nn.MultiheadAttention takes its fast path whenever heads is even (it refuses odd heads), with or
  without a mask; otherwise F.multi_head_attention_forward, which calls SDPA with its default backend
  choice.
- `SDPBackend.FLASH_ATTENTION` ran on CPU for float32, float16 and bfloat16 with no mask, `is_causal` and
  a boolean `attn_mask`, so no combination was skipped; `EFFICIENT_ATTENTION` and `CUDNN_ATTENTION` have no
  CPU kernel.
"""
    (OUT / "README.md").write_text(text)


# ---------------------------------------------------------------- main


def main() -> None:
    started = time.time()
    torch.manual_seed(SEED)  # nothing here draws from torch's generator; fixed anyway
    torch.set_num_threads(2)
    OUT.mkdir(exist_ok=True)
    per_dtype: dict[str, dict] = {dtype: {} for dtype in DTYPES}
    problems = []
    for pid in range(COUNT):
        implementation = IMPLEMENTATIONS[pid % len(IMPLEMENTATIONS)]
        dtype = DTYPES[(pid // len(IMPLEMENTATIONS)) % len(DTYPES)]
        problem = make(pid, per_dtype[dtype])
        assert (problem["implementation"], problem["dtype"]) == (implementation, dtype)
        problem["file"] = f"{dtype}.npz"
        problems.append(problem)
    files = {}
    for dtype, arrays in per_dtype.items():
        path = OUT / f"{dtype}.npz"
        np.savez_compressed(path, **arrays)
        files[path.name] = path.stat().st_size
    index = dict(
        description="PyTorch's attention in float32/float16/bfloat16 and the exact float64 output (issue 13)",
        made_by="tests/data/make_precision_goldens.py", torch=torch.__version__,
        transformers=transformers.__version__, numpy=np.__version__,
        exact="numpy float64 from the stored rounded inputs; checked against torch float64 to 1e-12",
        storage={"float32": "float32", "float16": "float16", "bfloat16": "uint16 raw bits (high half of float32)"},
        problems=problems)
    lines = ",\n".join(json.dumps(p) for p in problems)  # one problem per line: small, and diffs well
    head = json.dumps({k: v for k, v in index.items() if k != "problems"}, indent=1)[:-2]
    (OUT / "index.json").write_text(f'{head},\n "problems": [\n{lines}\n]}}\n')
    assert json.loads((OUT / "index.json").read_text()) == json.loads(json.dumps(index))
    files["index.json"] = (OUT / "index.json").stat().st_size
    seconds = time.time() - started
    write_readme(problems, files)
    files["README.md"] = (OUT / "README.md").stat().st_size
    print(summary_table(problems))
    print("\n".join(observations(problems)))
    total = sum(files.values())
    print(f"wrote {OUT}: {len(problems)} problems, {total / 1e6:.2f} MB, {seconds:.0f} s")


if __name__ == "__main__":
    main()
