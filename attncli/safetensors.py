"""Read tensors from safetensors files and Hugging Face-style model folders, one tensor at a time.

A safetensors file is 8 bytes of little-endian header length, a JSON header (per tensor its
``dtype``, ``shape`` and ``data_offsets`` [begin, end] in the data area; an optional
``__metadata__`` of strings), then the raw little-endian bytes. The header is validated before
anything else is read or allocated; ``read`` reads only the bytes of the tensor asked for. Pure
numpy and the standard library: nothing is ever unpickled, and a PyTorch pickle is refused.
Every problem is a ProblemError whose ``source`` names the file at fault.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attncli.errors import ProblemError
from attncli.readers import _reject_duplicate_keys, parse_json
from attncli.sources import open_binary, read_bytes
from attncli.wording import closest, describe

# Far beyond any real header (a model of 100 000 tensors has a header of about 15 MB), small enough
# that a damaged length fails before anything is allocated.
MAX_HEADER_BYTES = 100 * 1000**2
METADATA = "__metadata__"
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
SAVE_SAFETENSORS = ("attncli never unpickles: save it as safetensors with "
                    "model.save_pretrained(folder, safe_serialization=True)")

# the bytes per element of each dtype the format names; only the float ones are read as weights
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
            "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
FLOATS = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
READABLE = "F64, F32, F16 and BF16"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a header: its dtype, shape and bytes [begin, end) in the data area."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def shape_text(shape: tuple[int, ...]) -> str:
    """32×64 for a matrix, ``scalar`` for a shape of no axes."""
    return "×".join(str(size) for size in shape) if shape else "scalar"


class SafeTensorsFile:
    """One .safetensors file: its validated header, and each tensor read on demand."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        self._tensors, self._metadata, self._data_start = _read_header(self.path)

    def __repr__(self) -> str:
        return f"SafeTensorsFile({self.path!r}, {len(self._tensors)} tensors)"

    def _error(self, message: str) -> ProblemError:
        return ProblemError(message, source=self.path)

    @property
    def names(self) -> list[str]:
        """The tensors' names, in the header's order."""
        return list(self._tensors)

    @property
    def metadata(self) -> dict[str, str]:
        """The header's ``__metadata__`` (empty when it has none)."""
        return dict(self._metadata)

    def info(self, name: str) -> TensorInfo:
        if name not in self._tensors:
            raise self._error(f"holds no tensor {name!r}{closest(name, tuple(self._tensors), 0.6)}")
        return self._tensors[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.info(name).shape

    def dtype(self, name: str) -> str:
        """The dtype as the file names it: F64, F32, F16, BF16, I64, …"""
        return self.info(name).dtype

    def read(self, name: str, dtype: Any = np.float64) -> np.ndarray:
        """Tensor ``name`` as a new array of ``dtype`` (float64 by default; ``None`` keeps the
        tensor's own float dtype, BF16 decoded exactly to float32). Only its bytes are read."""
        info = self.info(name)
        if info.dtype not in FLOATS:
            raise self._error(f"tensor {name!r} is {info.dtype}; attncli reads {READABLE} tensors as weights")
        count = info.end - info.begin
        with _open(self.path) as handle:
            handle.seek(self._data_start + info.begin)
            data = handle.read(count)
        if len(data) != count:
            raise self._error(f"ends before tensor {name!r} does (byte {self._data_start + info.end}): "
                              "the file changed or is truncated")
        stored = np.frombuffer(data, dtype=FLOATS[info.dtype]).reshape(info.shape)
        if info.dtype == "BF16":
            # bfloat16 is the high half of a float32: shifting its 16 bits into the high half of a
            # uint32 and viewing that as float32 decodes it exactly, with no ml_dtypes needed
            values = (stored.astype(np.uint32) << 16).view(np.float32)
        else:
            values = stored.astype(stored.dtype.newbyteorder("="))
        return values if dtype is None else values.astype(dtype, copy=False)


def _read_header(path: str) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
    """The tensors of the header of ``path`` (by name, in its order), its metadata and where the
    data area starts; ProblemError for anything a safetensors header must not be."""
    def error(message: str) -> ProblemError:
        return ProblemError(message, source=path)

    with _open(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 8:
            raise error(f"is {size} bytes, too short for a safetensors file (8 bytes of header length, "
                        "then the header)")
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > size - 8:
            raise error(f"header length {length} is beyond the file's {size} bytes")
        if length > MAX_HEADER_BYTES:
            raise error(f"header length {length} is above the {MAX_HEADER_BYTES // 1000**2} MB "
                        "attncli reads: this is not a safetensors header")
        raw = handle.read(length)
    header = _parse_header(raw, error)
    metadata = header.pop(METADATA, None)
    if metadata is not None and (not isinstance(metadata, dict)
                                 or not all(isinstance(value, str) for value in metadata.values())):
        raise error(f"{METADATA} must be an object of strings, got {_describe_metadata(metadata)}")
    data_size = size - 8 - length
    tensors = {name: _tensor(name, entry, data_size, error) for name, entry in header.items()}
    _refuse_overlaps(tensors.values(), error)
    return tensors, metadata or {}, 8 + length


def _open(path: str) -> Any:
    """``path`` opened for reading; its ProblemError names it."""
    try:
        return open_binary(path)
    except ProblemError as failure:
        failure.source = path
        raise


def _parse_header(raw: bytes, error: Any) -> dict[str, Any]:
    def reject_constant(word: str) -> None:
        raise ValueError(f"{word} is not JSON")

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicate_keys,
                            parse_constant=reject_constant)
    except UnicodeDecodeError as failure:
        raise error(f"the header is not JSON: byte 0x{raw[failure.start]:02x} at offset "
                    f"{8 + failure.start} is not UTF-8") from None
    except json.JSONDecodeError as failure:
        raise error(f"the header is not JSON: {failure.msg} at byte {8 + failure.pos}") from None
    except ProblemError as failure:  # a key twice
        raise error(f"the header: {failure.message}") from None
    except (ValueError, RecursionError) as failure:
        raise error(f"the header is not JSON: {failure or 'nested too deeply'}") from None
    if not isinstance(header, dict):
        raise error(f"the header is {describe(header)}, not a JSON object of tensors")
    return header


def _describe_metadata(metadata: Any) -> str:
    if isinstance(metadata, dict):
        key, value = next((key, value) for key, value in metadata.items() if not isinstance(value, str))
        return f"{key!r}: {describe(value)}"
    return describe(metadata)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor(name: str, entry: Any, data_size: int, error: Any) -> TensorInfo:
    """Tensor ``name``'s header entry, checked: a known dtype, a shape of whole numbers, offsets
    inside the data area whose span is exactly the bytes the dtype and shape need."""
    if not isinstance(entry, dict):
        raise error(f"tensor {name!r} is {describe(entry)} in the header, not an object with dtype, shape "
                    "and data_offsets")
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in entry]
    if missing:
        raise error(f"tensor {name!r} has no {' or '.join(missing)} in the header")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in ITEMSIZE:
        shown = repr(dtype) if isinstance(dtype, str) else describe(dtype)
        raise error(f"tensor {name!r} has dtype {shown}, which attncli does not know; it reads {READABLE}")
    if not isinstance(shape, list) or not all(_whole(size) for size in shape):
        raise error(f"tensor {name!r} has shape {json.dumps(shape)}; a shape is a list of whole numbers")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_whole(offset) for offset in offsets)
            or offsets[0] > offsets[1]):
        raise error(f"tensor {name!r} has data_offsets {json.dumps(offsets)}; they are [begin, end], "
                    "whole numbers with begin ≤ end")
    begin, end = offsets
    if end > data_size:
        raise error(f"tensor {name!r} claims bytes {begin}–{end} but the data area holds only {data_size} "
                    "(is the file truncated?)")
    needed = math.prod(shape) * ITEMSIZE[dtype]
    if end - begin != needed:
        raise error(f"tensor {name!r} claims bytes {begin}–{end} but {dtype} × {shape_text(tuple(shape))} "
                    f"needs {needed}")
    return TensorInfo(name, dtype, tuple(shape), begin, end)


def _refuse_overlaps(tensors: Any, error: Any) -> None:
    """No two tensors share a byte (tensors of no bytes share none)."""
    spans = sorted((info for info in tensors if info.end > info.begin), key=lambda info: (info.begin, info.end))
    for first, second in zip(spans, spans[1:], strict=False):
        if second.begin < first.end:
            raise error(f"tensors {first.name!r} and {second.name!r} overlap (bytes {first.begin}–{first.end} "
                        f"and {second.begin}–{second.end})")


# --- whole models ---------------------------------------------------------------------------------

class Checkpoint:
    """A Hugging Face-style model: a .safetensors file, or a folder with model.safetensors or the
    shards model.safetensors.index.json lists, and its config.json (``config``, None without one; a
    file's is the config.json beside it)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        self.config: dict[str, Any] | None = None
        root = Path(path)
        if root.is_dir():
            self.config = _read_config(root)
            files = _model_files(root)
        elif not root.exists():
            raise ProblemError("no such file or folder", source=self.path)
        elif root.suffix.lower() in PICKLE_SUFFIXES:
            raise ProblemError(f"is a PyTorch pickle; {SAVE_SAFETENSORS} (or a state_dict with "
                               "safetensors.torch.save_file(state_dict, 'model.safetensors'))", source=self.path)
        else:
            files = [SafeTensorsFile(root)]
            # a file of a downloaded model's folder: its settings are in the config.json beside it
            if (root.parent / CONFIG_NAME).is_file():
                self.config = _read_config(root.parent)
        self.files = files
        self._where: dict[str, SafeTensorsFile] = {}
        for file in files:
            for name in file.names:
                if name in self._where:
                    raise ProblemError(f"tensor {name!r} is in two shards: {Path(self._where[name].path).name} "
                                       f"and {Path(file.path).name}", source=file.path)
                self._where[name] = file

    def __repr__(self) -> str:
        return f"Checkpoint({self.path!r}, {len(self._where)} tensors in {len(self.files)} files)"

    @property
    def names(self) -> list[str]:
        """Every tensor's name: each file's in its header's order, the files in the index's order."""
        return list(self._where)

    def file_of(self, name: str) -> SafeTensorsFile:
        if name not in self._where:
            raise ProblemError(f"holds no tensor {name!r}{closest(name, tuple(self._where), 0.6)}",
                               source=self.path)
        return self._where[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.file_of(name).shape(name)

    def dtype(self, name: str) -> str:
        return self.file_of(name).dtype(name)

    def read(self, name: str, dtype: Any = np.float64) -> np.ndarray:
        return self.file_of(name).read(name, dtype)


def _read_config(folder: Path) -> dict[str, Any] | None:
    path = folder / CONFIG_NAME
    if not path.is_file():
        return None
    config = _json_file(path)
    if not isinstance(config, dict):
        raise ProblemError(f"is {describe(config)}, not a JSON object of settings", source=str(path))
    return config


def _json_file(path: Path) -> Any:
    """A JSON file of the folder (config.json, the index), read as attncli reads any JSON."""
    try:
        return parse_json(read_bytes(str(path)))
    except ProblemError as failure:
        failure.source = failure.source or str(path)
        raise


def _model_files(folder: Path) -> list[SafeTensorsFile]:
    """The safetensors files of a model folder: the index's shards, model.safetensors, or the one
    .safetensors file there is; a folder of PyTorch pickles only is refused."""
    if (folder / INDEX_NAME).is_file():
        return _shards(folder)
    if (folder / SINGLE_NAME).is_file():
        return [SafeTensorsFile(folder / SINGLE_NAME)]
    found = sorted(entry.name for entry in folder.iterdir() if entry.suffix == ".safetensors" and entry.is_file())
    if len(found) == 1:
        return [SafeTensorsFile(folder / found[0])]
    if found:
        raise ProblemError(f"holds {len(found)} .safetensors files ({', '.join(found[:4])}{', …' * (len(found) > 4)}) "
                           f"but no {INDEX_NAME} saying which tensors each holds", source=str(folder))
    pickles = sorted(entry.name for entry in folder.iterdir() if entry.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        shown = "pytorch_model.bin" if "pytorch_model.bin" in pickles else pickles[0]
        raise ProblemError(f"holds a PyTorch pickle ({shown}); {SAVE_SAFETENSORS}", source=str(folder))
    raise ProblemError(f"holds no {SINGLE_NAME} (nor {INDEX_NAME}, nor any .safetensors file)", source=str(folder))


def _shards(folder: Path) -> list[SafeTensorsFile]:
    """The shards model.safetensors.index.json lists, each checked to hold exactly the tensors its
    ``weight_map`` puts in it."""
    index_path = folder / INDEX_NAME
    index = _json_file(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
        raise ProblemError("has no weight_map of tensor names to shard files", source=str(index_path))
    wanted: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        wanted.setdefault(shard, []).append(name)
    files = []
    for shard, names in wanted.items():
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise ProblemError(f"weight_map names the shard {shard!r}, which is not a file name in the folder",
                               source=str(index_path))
        if not (folder / shard).is_file():
            raise ProblemError(f"weight_map puts {names[0]!r} in {shard}, which is not in the folder",
                               source=str(index_path))
        file = SafeTensorsFile(folder / shard)
        listed = set(names)
        absent = [name for name in names if name not in file.names]
        if absent:
            raise ProblemError(f"{INDEX_NAME} puts {absent[0]!r} in {shard}, whose header has no such tensor",
                               source=file.path)
        unlisted = [name for name in file.names if name not in listed]
        if unlisted:
            where = weight_map.get(unlisted[0])
            said = f"puts it in {where}" if where else "does not list it"
            raise ProblemError(f"holds {unlisted[0]!r} but {INDEX_NAME} {said}", source=file.path)
        files.append(file)
    return files
