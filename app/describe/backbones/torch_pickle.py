"""Read legacy (pre-1.6) PyTorch checkpoint files without importing torch.

A legacy file is a run of pickles: magic number, protocol version, system info,
the state dict (tensors refer to storages by persistent id), the list of storage
keys, then each storage's raw bytes preceded by its element count (int64).
Only the handful of globals a state dict needs are accepted.
"""
from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsupportedCheckpoint(ValueError):
    """The file is not a legacy PyTorch state dict this reader understands."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.array = dtype, numel, None


class _TensorRef:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self) -> np.ndarray:
        base = self.storage.array
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=[s * item for s in self.stride]
        )
        return np.array(view, copy=True)


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsupportedCheckpoint(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel, *_view = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise UnsupportedCheckpoint(f"unexpected persistent id {pid[:1]}")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(numel))
        return self.storages[key]


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise UnsupportedCheckpoint(f"refusing to load {module}.{name} from a checkpoint header")


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return {name: array} for the tensors of a legacy PyTorch state dict file."""
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise UnsupportedCheckpoint(f"{path}: zip-format checkpoint, not the legacy format")
        f.seek(0)
        if _PlainUnpickler(f).load() != LEGACY_MAGIC:
            raise UnsupportedCheckpoint(f"{path}: not a legacy PyTorch file (bad magic number)")
        _PlainUnpickler(f).load()  # protocol version
        _PlainUnpickler(f).load()  # system info
        storages: dict[str, _Storage] = {}
        state = _StateDictUnpickler(f, storages).load()
        keys = _PlainUnpickler(f).load()
        for key in keys:
            storage = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * storage.dtype.itemsize
            raw = f.read(nbytes)
            if numel != storage.numel or len(raw) != nbytes:
                raise UnsupportedCheckpoint(f"{path}: storage {key} is truncated")
            storage.array = np.frombuffer(raw, dtype=storage.dtype)
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {
        name: value.to_numpy()
        for name, value in state.items()
        if isinstance(value, _TensorRef)
    }
