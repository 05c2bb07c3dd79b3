"""safetensors.numpy.load_file / save_file for F32/F16/F64/I32/I64 tensors (test shim, see __init__)."""
import json
import struct

import numpy as np

_DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}
_NAME = {np.dtype(v).str: k for k, v in _DT.items()}


def load_file(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    hdr = json.loads(blob[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(blob[base + a:base + b], dtype=np.dtype(_DT[t["dtype"]]).newbyteorder("<")).reshape(t["shape"]).copy()
    return out


def save_file(tensors, path):
    hdr, off, chunks = {}, 0, []
    for name, v in tensors.items():
        v = np.ascontiguousarray(v)
        raw = v.astype(v.dtype.newbyteorder("<")).tobytes()
        hdr[name] = {"dtype": _NAME[v.dtype.newbyteorder("<").str], "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))
