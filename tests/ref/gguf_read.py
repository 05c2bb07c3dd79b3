#!/usr/bin/python3
"""Independent GGUF reader (from the GGUF v3 spec, llama.cpp docs/gguf.md), for checking rotbench's
GGUF export. Shares no code with the C sources; needs only /usr/bin/python3 with numpy.

    gguf_read.py FILE   prints one JSON object:
      {"version": 3, "alignment": 32, "data_offset": N,
       "kv": {key: {"type": "u32", "value": ...}                       scalars and strings
              key: {"type": "array", "elem": "string", "count": n,
                    "head": [first 8 items], "tail": [last 2 items]}},  arrays
       "tensors": [{"name", "type", "ne": [...], "offset", "check", "first", "row1"}]}

  check  position-weighted checksum of the stored elements as unsigned integers of their width:
         sum over i of u[i] * (i + 1) mod 2^64 (the C test computes the same from its own parse),
  first  element 0 as a float, row1: element ne[0] (row 1, column 0) as a float, or null.
Strings are decoded as UTF-8 with errors replaced (only used for display and comparison of
ASCII-range keys). Exits 1 with a message on any format error.
"""
import json
import struct
import sys

import numpy as np

VTYPES = {0: ("u8", "<B"), 1: ("i8", "<b"), 2: ("u16", "<H"), 3: ("i16", "<h"), 4: ("u32", "<I"),
          5: ("i32", "<i"), 6: ("f32", "<f"), 7: ("bool", "<?"), 10: ("u64", "<Q"), 11: ("i64", "<q"),
          12: ("f64", "<d")}
STRING, ARRAY = 8, 9
GGML = {0: ("F32", np.float32, np.uint32), 1: ("F16", np.float16, np.uint16), 30: ("BF16", None, np.uint16)}


class Reader:
    def __init__(self, data):
        self.d = data
        self.at = 0

    def take(self, n):
        if n < 0 or self.at + n > len(self.d):
            raise ValueError("offset %d: %d bytes needed, %d left" % (self.at, n, len(self.d) - self.at))
        b = self.d[self.at:self.at + n]
        self.at += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.unpack("<Q")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, t):
        if t in VTYPES:
            return VTYPES[t][0], self.unpack(VTYPES[t][1])
        if t == STRING:
            return "string", self.string()
        if t == ARRAY:
            et, n = self.unpack("<I"), self.unpack("<Q")
            items = [self.value(et)[1] for _ in range(n)]
            name = "string" if et == STRING else VTYPES[et][0]
            return "array", {"elem": name, "count": n, "items": items}
        raise ValueError("offset %d: unknown value type %d" % (self.at - 4, t))


def bf16_to_f32(u16):
    return (np.asarray(u16, dtype=np.uint32) << 16).view(np.float32)


def read(path):
    data = open(path, "rb").read()
    r = Reader(data)
    if r.take(4) != b"GGUF":
        raise ValueError("no GGUF magic")
    version = r.unpack("<I")
    if version not in (2, 3):
        raise ValueError("version %d" % version)
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    kv = {}
    for _ in range(n_kv):
        key = r.string()
        t, v = r.value(r.unpack("<I"))
        if key in kv:
            raise ValueError("duplicate key " + key)
        if t == "array":
            items = v.pop("items")
            v.update(type="array", head=items[:8], tail=items[-2:])
            kv[key] = v
        else:
            kv[key] = {"type": t, "value": v}
    align = kv.get("general.alignment", {"value": 32})["value"]
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.unpack("<I")
        ne = [r.unpack("<Q") for _ in range(nd)]
        infos.append((name, ne, r.unpack("<I"), r.unpack("<Q")))
    data_off = (r.at + align - 1) // align * align
    tensors = []
    for name, ne, t, off in infos:
        if t not in GGML:
            raise ValueError("tensor %s: ggml type %d" % (name, t))
        tname, ftype, utype = GGML[t]
        count = int(np.prod(ne))
        width = np.dtype(utype).itemsize
        start = data_off + off
        if off % align or start + count * width > len(data):
            raise ValueError("tensor %s: offset %d out of bounds or unaligned" % (name, off))
        u = np.frombuffer(data, dtype=utype, count=count, offset=start)
        check = int((u.astype(np.uint64) * np.arange(1, count + 1, dtype=np.uint64)).sum(dtype=np.uint64))
        f = bf16_to_f32(u) if ftype is None else u.view(ftype).astype(np.float32)
        tensors.append({"name": name, "type": tname, "ne": ne, "offset": off, "check": "%016x" % check,
                        "first": float(f[0]), "row1": float(f[ne[0]]) if count > ne[0] else None})
    return {"version": version, "alignment": align, "data_offset": data_off, "kv": kv, "tensors": tensors}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gguf_read.py FILE")
    try:
        out = read(sys.argv[1])
    except (ValueError, struct.error, OSError) as e:
        sys.exit("gguf_read.py: %s: %s" % (sys.argv[1], e))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
