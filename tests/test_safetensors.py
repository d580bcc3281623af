"""attncli.safetensors: safetensors files written here with a small writer of our own (the
bad-input corpus's), read back exactly; damaged headers refused in one line before anything is
allocated; only the bytes of the tensor asked for are read; model folders, shards and config."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from attncli.errors import ProblemError
from attncli.safetensors import Checkpoint, SafeTensorsFile

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
_spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)
safetensors_bytes = corpus.safetensors_bytes


def write(path: Path, tensors, **options) -> Path:
    path.write_bytes(safetensors_bytes(tensors, **options))
    return path


def refused(make, message: str, source: Path | None = None) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        make()
    assert caught.value.message == message
    if source is not None:
        assert caught.value.source == str(source)
    assert "\n" not in caught.value.message
    return caught.value


# --- reading back ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, name", [("<f8", "F64"), ("<f4", "F32"), ("<f2", "F16")])
def test_float_tensors_read_back_exactly(tmp_path, dtype, name):
    values = (np.arange(24).reshape(2, 3, 4) / 7 - 1.5).astype(dtype)
    file = SafeTensorsFile(write(tmp_path / "m.safetensors", {"w": values, "other": np.zeros(3, dtype)}))
    assert file.names == ["w", "other"] and file.dtype("w") == name and file.shape("w") == (2, 3, 4)
    read = file.read("w")
    assert read.dtype == np.float64 and np.array_equal(read, values.astype(np.float64))
    own = file.read("w", dtype=None)
    assert own.dtype == np.dtype(dtype).newbyteorder("=") and np.array_equal(own, values) and own.flags.writeable


def test_big_endian_arrays_are_written_and_read_little_endian(tmp_path):
    values = np.array([1.5, -2.25, 1e300], dtype=">f8")
    file = SafeTensorsFile(write(tmp_path / "m.safetensors", {"w": values}))
    assert np.array_equal(file.read("w"), values.astype("<f8"))


# bfloat16 bits -> the value they hold exactly
BF16 = {
    0x3F80: 1.0, 0xC020: -2.5, 0x4049: 3.140625, 0x7F7F: float(np.float32(3.3895313892515355e38)),
    0x0001: 2.0**-133, 0x8000: -0.0, 0x7F80: np.inf, 0xFF80: -np.inf, 0x0080: 2.0**-126,
}


def test_bf16_is_decoded_exactly(tmp_path):
    bits = np.array(list(BF16), dtype="<u2").reshape(3, 3)
    file = SafeTensorsFile(write(tmp_path / "m.safetensors", {"w": ("BF16", bits.tobytes(), [3, 3])}))
    assert file.dtype("w") == "BF16"
    own = file.read("w", dtype=None)
    assert own.dtype == np.float32 and own.shape == (3, 3)
    assert own.ravel().tolist() == list(BF16.values())
    assert np.signbit(own.ravel()[5])  # -0.0 keeps its sign
    assert file.read("w").dtype == np.float64 and file.read("w").ravel().tolist() == list(BF16.values())
    nan = SafeTensorsFile(write(tmp_path / "nan.safetensors", {"w": ("BF16", b"\xc0\x7f", [])}))
    assert np.isnan(nan.read("w"))


def test_scalars_and_zero_size_tensors(tmp_path):
    tensors = {"scalar": np.array(2.5, "<f4"), "empty": np.zeros((0, 4), "<f8"), "after": np.ones(2, "<f2")}
    file = SafeTensorsFile(write(tmp_path / "m.safetensors", tensors))
    assert file.shape("scalar") == () and file.read("scalar").shape == () and file.read("scalar") == 2.5
    assert file.shape("empty") == (0, 4) and file.read("empty").shape == (0, 4)
    assert file.read("after").tolist() == [1.0, 1.0]


def test_metadata(tmp_path):
    file = SafeTensorsFile(write(tmp_path / "m.safetensors", {"w": np.ones(2, "<f4")}, metadata={"format": "pt"}))
    assert file.metadata == {"format": "pt"} and file.names == ["w"]
    assert SafeTensorsFile(write(tmp_path / "n.safetensors", {"w": np.ones(2, "<f4")})).metadata == {}


def test_integer_tensors_may_be_listed_but_are_not_read_as_weights(tmp_path):
    path = write(tmp_path / "m.safetensors", {"ids": np.arange(3, dtype="<i8"), "w": np.ones(2, "<f4")})
    file = SafeTensorsFile(path)
    assert file.dtype("ids") == "I64" and file.shape("ids") == (3,) and file.read("w").tolist() == [1.0, 1.0]
    refused(lambda: file.read("ids"), "tensor 'ids' is I64; attncli reads F64, F32, F16 and BF16 tensors as weights",
            path)


def test_an_unknown_name_is_named_with_the_closest(tmp_path):
    path = write(tmp_path / "m.safetensors", {"model.layers.0.self_attn.q_proj.weight": np.ones(2, "<f4")})
    refused(lambda: SafeTensorsFile(path).read("model.layers.0.self_attn.q_proj.weigth"),
            "holds no tensor 'model.layers.0.self_attn.q_proj.weigth'; did you mean "
            "'model.layers.0.self_attn.q_proj.weight'?", path)


# --- damaged files --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(corpus.SAFETENSORS_CASES))
def test_the_corpus_of_damaged_files(name):
    content, message = corpus.SAFETENSORS_CASES[name]
    path = CORPUS / name
    assert path.read_bytes() == content, "rerun python tests/bad_inputs/make_corpus.py"
    refused(lambda: SafeTensorsFile(path), message, path)


def test_the_message_names_the_tensor_dtype_and_shape(tmp_path):
    name = "model.layers.0.self_attn.q_proj.weight"
    path = write(tmp_path / "m.safetensors", {name: ("F32", bytes(4096), [32, 64])})
    refused(lambda: SafeTensorsFile(path),
            f"tensor '{name}' claims bytes 0–4096 but F32 × 32×64 needs 8192", path)


@pytest.mark.parametrize("entry, message", [
    ([1, 2], "tensor 'w' is an array in the header, not an object with dtype, shape and data_offsets"),
    ({"dtype": "F32"}, "tensor 'w' has no shape or data_offsets in the header"),
    ({"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}, "tensor 'w' has shape [2.0]; a shape is a list of "
                                                                 "whole numbers"),
    ({"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}, "tensor 'w' has shape [true]; a shape is a list of "
                                                                  "whole numbers"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}, "tensor 'w' has data_offsets [8, 0]; they are [begin, "
                                                               "end], whole numbers with begin ≤ end"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0]}, "tensor 'w' has data_offsets [0]; they are [begin, end], "
                                                            "whole numbers with begin ≤ end"),
    ({"dtype": 3, "shape": [2], "data_offsets": [0, 8]}, "tensor 'w' has dtype 3, which attncli does not know; it "
                                                           "reads F64, F32, F16 and BF16"),
])
def test_damaged_entries(tmp_path, entry, message):
    text = json.dumps({"w": entry}).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(8))
    refused(lambda: SafeTensorsFile(path), message, path)


def test_duplicate_names_and_json_constants_are_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    for text, message in ((b'{"w": {}, "w": {}}', "the header: key 'w' appears twice in one object"),
                          (b'{"w": NaN}', "the header is not JSON: NaN is not JSON"),
                          (b"", "the header is not JSON: Expecting value at byte 8")):
        path.write_bytes(struct.pack("<Q", len(text)) + text)
        refused(lambda: SafeTensorsFile(path), message, path)


def test_zero_size_tensors_overlap_nothing(tmp_path):
    layout = {"a": ("F32", bytes(32), [8]), "b": ("F32", b"", [0, 3])}
    path = write(tmp_path / "m.safetensors", layout, changes={"b": {"data_offsets": [16, 16]}})
    assert SafeTensorsFile(path).read("b").shape == (0, 3)


def test_a_100_gb_header_length_is_refused_at_once(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 100 * 1024**3) + b"{}")
    tracemalloc.start()
    start = time.perf_counter()
    refused(lambda: SafeTensorsFile(path), "header length 107374182400 is beyond the file's 10 bytes", path)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.5 and peak < 1024**2


def test_a_header_beyond_the_cap_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 150 * 1000**2) + b"{")
    os.truncate(path, 200 * 1000**2)  # sparse: nothing but the first bytes is on disk
    tracemalloc.start()
    refused(lambda: SafeTensorsFile(path), "header length 150000000 is above the 100 MB attncli reads: this is not a "
                                           "safetensors header", path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1024**2


def test_reading_one_tensor_reads_only_its_bytes(tmp_path):
    # a file that claims 4 GiB of a second tensor, only the header and the first tensor on disk
    huge = 1024**3
    first = np.arange(6, dtype="<f4").reshape(2, 3)
    path = write(tmp_path / "m.safetensors", {"small": first, "huge": ("F32", b"", [huge])},
                 changes={"huge": {"data_offsets": [24, 24 + 4 * huge]}})
    os.truncate(path, path.stat().st_size + 4 * huge)
    tracemalloc.start()
    start = time.perf_counter()
    file = SafeTensorsFile(path)
    read = file.read("small")
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.array_equal(read, first) and file.shape("huge") == (huge,)
    assert elapsed < 0.5 and peak < 1024**2


def test_a_file_that_shrank_after_its_header_was_read(tmp_path):
    path = write(tmp_path / "m.safetensors", {"a": np.ones(4, "<f8")})
    file = SafeTensorsFile(path)
    os.truncate(path, path.stat().st_size - 8)
    refused(lambda: file.read("a"), f"ends before tensor 'a' does (byte {path.stat().st_size + 8}): the file "
                                    "changed or is truncated", path)


def test_missing_file_and_folder(tmp_path):
    refused(lambda: SafeTensorsFile(tmp_path / "none.safetensors"), "no such file")
    refused(lambda: SafeTensorsFile(tmp_path), "is a directory, not a file")


# --- whole models ---------------------------------------------------------------------------------

LAYER = {
    "model.layers.0.self_attn.q_proj.weight": np.arange(12, dtype="<f4").reshape(3, 4),
    "model.layers.0.self_attn.k_proj.weight": np.ones((2, 4), "<f8"),
    "model.layers.0.self_attn.v_proj.weight": np.full((2, 4), 0.5, "<f2"),
}


def test_a_single_file_checkpoint(tmp_path):
    path = write(tmp_path / "tiny.safetensors", LAYER)
    model = Checkpoint(path)
    assert model.names == list(LAYER) and model.config is None
    for name, values in LAYER.items():
        assert model.shape(name) == values.shape and np.array_equal(model.read(name), values.astype(np.float64))
    assert model.dtype("model.layers.0.self_attn.v_proj.weight") == "F16"


def test_a_folder_with_config_and_model_safetensors(tmp_path):
    write(tmp_path / "model.safetensors", LAYER)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "num_attention_heads": 4}))
    model = Checkpoint(tmp_path)
    assert model.config == {"model_type": "llama", "num_attention_heads": 4} and model.names == list(LAYER)
    (tmp_path / "config.json").write_text("{")
    refused(lambda: Checkpoint(tmp_path), "invalid JSON at line 1, column 2: Expecting property name enclosed in "
                                          "double quotes", tmp_path / "config.json")
    (tmp_path / "config.json").write_text("[]")
    refused(lambda: Checkpoint(tmp_path), "is an array, not a JSON object of settings", tmp_path / "config.json")


def shard(tmp_path: Path) -> dict[str, str]:
    names = list(LAYER)
    write(tmp_path / "model-00001-of-00002.safetensors", {name: LAYER[name] for name in names[:2]})
    write(tmp_path / "model-00002-of-00002.safetensors", {names[2]: LAYER[names[2]]})
    weight_map = {name: f"model-0000{1 + (number == 2)}-of-00002.safetensors" for number, name in enumerate(names)}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return weight_map


def test_a_sharded_folder(tmp_path):
    shard(tmp_path)
    model = Checkpoint(tmp_path)
    assert model.names == list(LAYER) and len(model.files) == 2
    for name, values in LAYER.items():
        assert np.array_equal(model.read(name, dtype=None), values)
    refused(lambda: model.read("lm_head.weight"), "holds no tensor 'lm_head.weight'", tmp_path)


def test_the_index_must_agree_with_the_shards(tmp_path):
    weight_map = shard(tmp_path)
    index = tmp_path / "model.safetensors.index.json"
    first, second = (tmp_path / f"model-0000{number}-of-00002.safetensors" for number in (1, 2))
    q, k, v = LAYER
    for changed, message, source in (
        ({**weight_map, "extra.weight": first.name}, f"model.safetensors.index.json puts 'extra.weight' in "
                                                     f"{first.name}, whose header has no such tensor", first),
        ({q: first.name, v: second.name}, f"holds '{k}' but model.safetensors.index.json does not list it", first),
        ({**weight_map, k: second.name}, f"holds '{k}' but model.safetensors.index.json puts it in {second.name}",
         first),
        ({**weight_map, q: "model-00003-of-00002.safetensors"},
         f"weight_map puts '{q}' in model-00003-of-00002.safetensors, which is not in the folder", index),
        ({**weight_map, q: "../model.safetensors"},
         "weight_map names the shard '../model.safetensors', which is not a file name in the folder", index),
    ):
        index.write_text(json.dumps({"weight_map": changed}))
        refused(lambda: Checkpoint(tmp_path), message, source)
    index.write_text(json.dumps({"metadata": {}}))
    refused(lambda: Checkpoint(tmp_path), "has no weight_map of tensor names to shard files", index)


def test_pytorch_pickles_are_refused_unread(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 not read")
    (tmp_path / "config.json").write_text("{}")
    refused(lambda: Checkpoint(tmp_path), "holds a PyTorch pickle (pytorch_model.bin); attncli never unpickles: save "
                                          "it as safetensors with model.save_pretrained(folder, "
                                          "safe_serialization=True)", tmp_path)
    refused(lambda: Checkpoint(tmp_path / "pytorch_model.bin"),
            "is a PyTorch pickle; attncli never unpickles: save it as safetensors with model.save_pretrained(folder, "
            "safe_serialization=True) (or a state_dict with safetensors.torch.save_file(state_dict, "
            "'model.safetensors'))", tmp_path / "pytorch_model.bin")


def test_folders_without_one_model(tmp_path):
    refused(lambda: Checkpoint(tmp_path), "holds no model.safetensors (nor model.safetensors.index.json, nor any "
                                          ".safetensors file)", tmp_path)
    write(tmp_path / "weights.safetensors", LAYER)
    assert Checkpoint(tmp_path).names == list(LAYER)
    write(tmp_path / "more.safetensors", LAYER)
    refused(lambda: Checkpoint(tmp_path), "holds 2 .safetensors files (more.safetensors, weights.safetensors) but no "
                                          "model.safetensors.index.json saying which tensors each holds", tmp_path)
    refused(lambda: Checkpoint(tmp_path / "absent"), "no such file or folder", tmp_path / "absent")


# --- files the safetensors library wrote (tests/data/models, by make_model_goldens.py) -------------

MODELS = Path(__file__).resolve().parent / "data" / "models"


@pytest.mark.parametrize("path", sorted(str(path.relative_to(MODELS)) for path in MODELS.rglob("*.safetensors")))
def test_every_committed_file_reads(path):
    file = SafeTensorsFile(MODELS / path)
    assert file.names
    for name in file.names:
        assert file.read(name).shape == file.shape(name)


@pytest.mark.parametrize("folder", sorted(path.parent.name for path in MODELS.glob("*/config.json")))
def test_every_committed_model_reads(folder):
    model = Checkpoint(MODELS / folder)
    assert model.config["model_type"] and model.names
    assert all(model.read(name).shape == model.shape(name) for name in model.names)


def test_the_bf16_and_sharded_copies_hold_the_float64_model():
    full, bf16, sharded = (Checkpoint(MODELS / name) for name in ("llama", "llama_bf16", "llama_sharded"))
    assert len(sharded.files) == 2 and set(sharded.names) == set(full.names) == set(bf16.names)
    for name in full.names:
        values = full.read(name)
        assert np.array_equal(sharded.read(name), values)
        # bfloat16 is float32 rounded to nearest even in its low 16 bits
        bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
        rounded = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
        assert bf16.dtype(name) == "BF16" and np.array_equal(bf16.read(name, dtype=None), rounded)
