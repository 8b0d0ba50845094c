"""Writes state_dict.pt: a small file in the exact format of `torch.save(module.state_dict())`
(zip archive, pickle protocol 2, collections.OrderedDict with `_metadata`, tensors rebuilt by
torch._utils._rebuild_tensor_v2 from persistent storages), without importing torch: a stub
`torch` module stands in for the classes the pickle references. Used by tests/checkpoint.rs.

    python3 make_state_dict.py state_dict.pt
"""
import collections
import io
import pickle
import struct
import sys
import types
import zipfile

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"], torch._utils = torch, utils, utils


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2


def storage_class(name):
    cls = type(name, (), {})
    cls.__module__ = "torch"
    setattr(torch, name, cls)
    return cls


FloatStorage, LongStorage = storage_class("FloatStorage"), storage_class("LongStorage")


class Storage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


floats = Storage(FloatStorage, "0", 6)  # values 0..5
longs = Storage(LongStorage, "1", 3)  # values -1, 7, 1 << 40
sd = collections.OrderedDict()
sd["layer.weight"] = Tensor(floats, 0, [2, 3], [3, 1])
sd["layer.weight_t"] = Tensor(floats, 0, [3, 2], [1, 3])  # a transposed view of the same storage
sd["tail"] = Tensor(floats, 4, [2], [1])  # an offset view
sd["ids"] = Tensor(longs, 0, [3], [1])
sd._metadata = collections.OrderedDict([("", {"version": 1}), ("layer", {"version": 1})])

buf = io.BytesIO()
Pickler(buf, protocol=2).dump(sd)
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_STORED) as z:
    z.writestr("state_dict/data.pkl", buf.getvalue())
    z.writestr("state_dict/byteorder", "little")
    z.writestr("state_dict/data/0", struct.pack("<6f", *range(6)))
    z.writestr("state_dict/data/1", struct.pack("<3q", -1, 7, 1 << 40))
    z.writestr("state_dict/version", "3\n")
    z.writestr("state_dict/.data/serialization_id", "0123456789")
