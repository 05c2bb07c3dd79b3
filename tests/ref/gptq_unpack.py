#!/usr/bin/env python3
"""Independent reader of GPTQ checkpoints (AutoGPTQ / transformers "gptq" layout), written from the
documented layout only (docs/export-gptq.md), to check rotbench's writer and reader.

    /usr/bin/python3 tests/ref/gptq_unpack.py DIR [--dump OUT.f32] [--compare-hf HF_DIR]

DIR holds config.json (with quantization_config) or quantize_config.json, and model.safetensors or
model.safetensors.index.json + shards. For every layer and linear (q, k, v, o, gate, up, down) the
packed tensors are unpacked and dequantized in float32:

    w[o][c] = scales[g][o] * (q[o][c] - zero[o][g]),  g = g_idx[c],  zero = stored + 1 (v1 "gptq")

with q[o][c] at bit c*bits of column o of qweight (int32 words, little end first) and zero[o][g] at
bit o*bits of row g of qzeros. (q - zero) is an exact integer, so the product is rounded once, as the
quantizer does.

--dump writes the dequantized weights as raw little-endian float32 [out][in], linears in the order
layer 0 q,k,v,o,gate,up,down, layer 1 ..., concatenated. --compare-hf compares them bit for bit with
the F32 `*.weight` tensors of a plain HF directory and exits 1 on any difference. The last stdout
line is a JSON summary. Needs numpy only.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

LINEARS = [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
           ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj")]
DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "I32": np.dtype("<i4"),
          "I64": np.dtype("<i8"), "U8": np.dtype("u1")}


def fail(msg):
    print("gptq_unpack: " + msg, file=sys.stderr)
    sys.exit(2)


class SafeTensors:
    """Tensors of a directory (single file or index + shards), read with plain file I/O."""

    def __init__(self, d):
        self.where = {}  # name -> (path, header entry, data start)
        single = os.path.join(d, "model.safetensors")
        if os.path.exists(single):
            files = [single]
        else:
            idx = os.path.join(d, "model.safetensors.index.json")
            if not os.path.exists(idx):
                fail(d + ": no model.safetensors or index")
            with open(idx) as f:
                files = sorted({os.path.join(d, v) for v in json.load(f)["weight_map"].values()})
        for p in files:
            with open(p, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            for k, v in header.items():
                if k != "__metadata__":
                    self.where[k] = (p, v, 8 + n)

    def has(self, name):
        return name in self.where

    def get(self, name):
        if name not in self.where:
            fail("tensor %s: missing" % name)
        p, e, start = self.where[name]
        if e["dtype"] not in DTYPES:
            fail("tensor %s: dtype %s not handled" % (name, e["dtype"]))
        b, end = e["data_offsets"]
        with open(p, "rb") as f:
            f.seek(start + b)
            raw = f.read(end - b)
        a = np.frombuffer(raw, dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
        if e["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        return a, e["dtype"]


def unpack_stream(words, n, bits):
    """words: uint32 [n_words][cols], a bitstream down each column; returns the n fields [n][cols]."""
    words = words.astype(np.uint64)
    out = np.zeros((n, words.shape[1]), dtype=np.uint64)
    mask = (1 << bits) - 1
    for k in range(n):
        bit = k * bits
        wi, sh = bit // 32, bit % 32
        v = words[wi] >> np.uint64(sh)
        if sh + bits > 32:  # 3 bits: the field continues in the next word
            v |= words[wi + 1] << np.uint64(32 - sh)
        out[k] = v & np.uint64(mask)
    return out.astype(np.int64)


def quant_config(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    q = cfg.get("quantization_config")
    if q is None:
        with open(os.path.join(d, "quantize_config.json")) as f:
            q = json.load(f)
    return cfg, q


def dequantize(st, prefix, bits, group_size, offset, out_f, in_f):
    qweight, dt = st.get(prefix + ".qweight")
    if dt != "I32" or qweight.shape != (in_f * bits // 32, out_f):
        fail("%s.qweight: %s %s" % (prefix, dt, qweight.shape))
    qzeros, dt = st.get(prefix + ".qzeros")
    scales, sdt = st.get(prefix + ".scales")
    n_groups = 1 if group_size == -1 else -(-in_f // group_size)
    if qzeros.shape != (n_groups, out_f * bits // 32) or scales.shape != (n_groups, out_f):
        fail("%s: qzeros %s / scales %s for %d groups" % (prefix, qzeros.shape, scales.shape, n_groups))
    if st.has(prefix + ".g_idx"):
        g_idx = st.get(prefix + ".g_idx")[0].astype(np.int64)
    else:
        g_idx = np.arange(in_f) // (in_f if group_size == -1 else group_size)
    if g_idx.min() < 0 or g_idx.max() >= n_groups:
        fail("%s.g_idx out of range" % prefix)
    q = unpack_stream(qweight.view(np.uint32), in_f, bits)                 # [in][out]
    zero = unpack_stream(qzeros.view(np.uint32).T, out_f, bits).T + offset  # [groups][out]
    scale = scales.astype(np.float32)                                       # F16 → F32 is exact
    diff = (q - zero[g_idx, :]).astype(np.float32)                          # exact small integers
    w = scale[g_idx, :] * diff                                              # one rounding
    return np.ascontiguousarray(w.T.astype(np.float32)), sdt                # [out][in]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--dump")
    ap.add_argument("--compare-hf")
    a = ap.parse_args()
    cfg, q = quant_config(a.dir)
    if q.get("quant_method", "gptq") != "gptq":
        fail("quant_method %s" % q.get("quant_method"))
    bits, group_size = int(q["bits"]), int(q["group_size"])
    fmt = q.get("checkpoint_format", "gptq")
    offset = {"gptq": 1, "gptq_v2": 0}.get(fmt)
    if offset is None or bits not in (2, 3, 4, 8):
        fail("checkpoint_format %s, bits %d" % (fmt, bits))
    dim, hidden = cfg["hidden_size"], cfg["intermediate_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", heads)
    hd = cfg.get("head_dim") or dim // heads
    shapes = {"q_proj": (heads * hd, dim), "k_proj": (kv * hd, dim), "v_proj": (kv * hd, dim),
              "o_proj": (dim, heads * hd), "gate_proj": (hidden, dim), "up_proj": (hidden, dim),
              "down_proj": (dim, hidden)}
    st = SafeTensors(a.dir)
    ref = SafeTensors(a.compare_hf) if a.compare_hf else None
    dump = open(a.dump, "wb") if a.dump else None
    n, mismatched, scale_dtypes = 0, 0, set()
    for layer in range(cfg["num_hidden_layers"]):
        for block, lin in LINEARS:
            prefix = "model.layers.%d.%s.%s" % (layer, block, lin)
            w, sdt = dequantize(st, prefix, bits, group_size, offset, *shapes[lin])
            scale_dtypes.add(sdt)
            if not np.all(np.isfinite(w)):
                fail(prefix + ": non-finite weight")
            if dump:
                dump.write(w.astype("<f4").tobytes())
            if ref:
                r, dt = ref.get(prefix + ".weight")
                if dt != "F32" or r.shape != w.shape or r.astype("<f4").tobytes() != w.astype("<f4").tobytes():
                    bad = int(np.sum(r.view(np.uint32) != w.view(np.uint32))) if r.shape == w.shape else -1
                    print("%s: %d of %d weights differ from %s" % (prefix, bad, w.size, a.compare_hf),
                          file=sys.stderr)
                    mismatched += 1
            n += 1
    if dump:
        dump.close()
    print(json.dumps({"bits": bits, "group_size": group_size, "desc_act": bool(q.get("desc_act", False)),
                      "checkpoint_format": fmt, "scales_dtype": sorted(scale_dtypes), "linears": n,
                      "mismatched": mismatched if ref else None}))
    sys.exit(1 if mismatched else 0)


if __name__ == "__main__":
    main()
