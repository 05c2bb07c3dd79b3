#!/usr/bin/env python3
"""Writes the small seed corpora of tests/fuzz/corpus/<target>/ (each seed well under 64 KiB).

Synthesized: safetensors, llama2.c .bin, GGUF, byte-level BPE tokenizer.json, YAML configs,
override lists, lm-eval-format task records. Cut from the shared data (a few lines or a whole small
file): HF config.json, tok512.bin, tok512.reconstructed.model, llm-foundry/PIQA/HellaSwag task
files — those only with --shared-to DIR (run_fuzz.sh passes its work directory): nothing of the
shared data is written into the repository. The HDF5 seeds (rotset, wstore, results) come from rotbench's writers: see README.md.

Usage: make_seeds.py [--shared-to DIR] [SHARED_DATA]   (default: <repo>/../shared/data; RB_SHARED_DATA overrides)
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
ROOT = os.path.dirname(os.path.dirname(HERE))
ARGS = sys.argv[1:]
SHARED_TO = None  # --shared-to DIR: where seeds cut from the shared data go (never the repository)
if len(ARGS) >= 2 and ARGS[0] == "--shared-to":
    SHARED_TO, ARGS = ARGS[1], ARGS[2:]
DATA = ARGS[0] if ARGS else os.environ.get("RB_SHARED_DATA") or os.path.join(ROOT, "..", "shared", "data")
MAX = 64 * 1024


def put(target, name, data):
    if SHARED_TO is not None:  # --shared-to: only the seeds cut from the shared data
        return
    if isinstance(data, str):
        data = data.encode()
    assert len(data) <= MAX, (target, name, len(data))
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def put_shared(target, name, make):
    """A seed cut from ../shared/data: written only under --shared-to (run_fuzz.sh's work directory),
    so no part of the shared files enters the repository; skipped when the data is absent."""
    if SHARED_TO is None:
        return
    try:
        data = make()
    except OSError:
        return
    d = os.path.join(SHARED_TO, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def shared(rel):
    with open(os.path.join(DATA, rel), "rb") as f:
        return f.read()


def head_lines(rel, n):
    return b"".join(shared(rel).splitlines(keepends=True)[:n])


def floats(n, k=0):
    return struct.pack("<%df" % n, *[((i * 37 + k * 11) % 17 - 8) / 64.0 for i in range(n)])


def f16(n):
    return struct.pack("<%de" % n, *[((i * 13) % 9 - 4) / 32.0 for i in range(n)])


def bf16(n):
    return b"".join(struct.pack("<f", ((i * 7) % 5 - 2) / 16.0)[2:] for i in range(n))


# ---- safetensors -------------------------------------------------------------------------------
def safetensors(tensors, meta=True):
    hdr, data = {}, b""
    if meta:
        hdr["__metadata__"] = {"format": "pt"}
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "mixed.safetensors", safetensors([
    ("model.embed_tokens.weight", "F32", [4, 4], floats(16)),
    ("model.norm.weight", "F16", [4], f16(4)),
    ("lm_head.weight", "BF16", [4, 4], bf16(16)),
    ("ids", "I32", [3], struct.pack("<3i", 1, 2, 3)),
    ("mask", "BOOL", [2, 1], b"\x01\x00"),
    ("empty", "F32", [0, 4], b""),
    ("scalar", "F64", [], struct.pack("<d", 1.5)),
]))
put("safetensors", "nometa.safetensors", safetensors([("a", "U8", [2, 2, 2], bytes(range(8)))], meta=False))

# ---- HF config.json ----------------------------------------------------------------------------
put_shared("hf_config", "stories260K.json", lambda: shared("stories260K/hf/config.json"))
put("hf_config", "llama3.json", json.dumps({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 192,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
    "vocab_size": 512, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": [2, 3],
    "hidden_act": "silu", "attention_bias": False, "mlp_bias": False}, indent=2))


# ---- llama2.c .bin -----------------------------------------------------------------------------
def llama2c(dim, hidden, layers, heads, kv, vocab, seq, tied):
    hd = dim // heads
    kvd = kv * hd
    n = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kvd * dim + layers * dim * dim
         + layers * dim + 3 * layers * hidden * dim + dim + 2 * seq * (hd // 2))
    if not tied:
        n += vocab * dim
    return struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if tied else -vocab, seq) + floats(n)


put("llama2c", "tied.bin", llama2c(8, 16, 2, 2, 1, 16, 4, True))
put("llama2c", "untied.bin", llama2c(8, 12, 1, 2, 2, 8, 2, False))


# ---- GGUF --------------------------------------------------------------------------------------
def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


U32, I32, F32T, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9


def kv(key, typ, val, arr_type=None):
    out = gstr(key) + struct.pack("<I", typ)
    if typ == U32:
        out += struct.pack("<I", val)
    elif typ == I32:
        out += struct.pack("<i", val)
    elif typ == F32T:
        out += struct.pack("<f", val)
    elif typ == BOOL:
        out += struct.pack("<B", val)
    elif typ == STRING:
        out += gstr(val)
    elif typ == ARRAY:
        out += struct.pack("<IQ", arr_type, len(val))
        for v in val:
            out += gstr(v) if arr_type == STRING else struct.pack("<f" if arr_type == F32T else "<i", v)
    return out


def gguf(D, H, L, heads, kvh, V, tied, align=32):
    hd = D // heads
    kvs = [kv("general.architecture", STRING, "llama"), kv("general.alignment", U32, align),
           kv("llama.embedding_length", U32, D), kv("llama.feed_forward_length", U32, H),
           kv("llama.block_count", U32, L), kv("llama.attention.head_count", U32, heads),
           kv("llama.attention.head_count_kv", U32, kvh), kv("llama.context_length", U32, 64),
           kv("llama.rope.dimension_count", U32, hd), kv("llama.attention.layer_norm_rms_epsilon", F32T, 1e-5),
           kv("llama.rope.freq_base", F32T, 10000.0), kv("llama.vocab_size", U32, V),
           kv("tokenizer.ggml.model", STRING, "llama"),
           kv("tokenizer.ggml.tokens", ARRAY, ["<unk>", "<s>", "</s>"] + ["t%d" % i for i in range(V - 3)], STRING),
           kv("tokenizer.ggml.scores", ARRAY, [0.0] * V, F32T),
           kv("tokenizer.ggml.bos_token_id", U32, 1), kv("tokenizer.ggml.eos_token_id", U32, 2)]
    # (name, ne (fastest first), ggml type: 0 F32, 1 F16, 30 BF16)
    ts = [("token_embd.weight", [D, V], 0), ("output_norm.weight", [D], 0)]
    if not tied:
        ts.append(("output.weight", [D, V], 1))
    for l in range(L):
        p = "blk.%d." % l
        ts += [(p + "attn_norm.weight", [D], 0), (p + "attn_q.weight", [D, heads * hd], 1),
               (p + "attn_k.weight", [D, kvh * hd], 0), (p + "attn_v.weight", [D, kvh * hd], 30),
               (p + "attn_output.weight", [heads * hd, D], 0), (p + "ffn_norm.weight", [D], 0),
               (p + "ffn_gate.weight", [D, H], 0), (p + "ffn_up.weight", [D, H], 30),
               (p + "ffn_down.weight", [H, D], 1)]
    infos, data = b"", b""
    for name, ne, typ in ts:
        n = 1
        for e in ne:
            n *= e
        data += b"\0" * (-len(data) % align)
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", e) for e in ne)
        infos += struct.pack("<IQ", typ, len(data))
        data += {0: floats, 1: f16, 30: bf16}[typ](n)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * (-len(head) % align)
    return head + data


put("gguf", "untied.gguf", gguf(8, 16, 2, 2, 1, 16, False))
put("gguf", "tied.gguf", gguf(8, 12, 1, 2, 2, 8, True, align=64))

# ---- tokenizers --------------------------------------------------------------------------------


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()
LLAMA3_PATTERN = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                  "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def bpe_json(merge_words, ignore_merges=True, regex=True):
    vocab = {B2U[b]: b for b in range(256)}
    merges = []
    for w in merge_words:  # left-to-right merges building each word
        s = "".join(B2U[b] for b in w.encode())
        cur = s[0]
        for ch in s[1:]:
            if cur + ch not in vocab:
                merges.append(cur + " " + ch)
                vocab[cur + ch] = len(vocab)
            cur += ch
    added = [{"id": len(vocab) + i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for i, c in enumerate(["<|begin_of_text|>", "<|end_of_text|>"])]
    pre = [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": not regex}]
    if regex:
        pre.insert(0, {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated",
                       "invert": False})
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pre},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges}}, indent=1, ensure_ascii=False)


put("tok_bpe", "tokenizer.json", bpe_json(["Once", " upon", " a", " time", " cat", " saw", "123", "\n\n"]))
put("tok_bpe", "noregex.json", bpe_json([" the", "ing", " and"], ignore_merges=False, regex=False))

# ---- YAML configs and overrides ---------------------------------------------------------------
put("config_yaml", "min.yaml", "name: t\nmodel: {path: /m}\ndata:\n  eval: [{corpus: /d/wiki.test.raw}]\n")
put("config_yaml", "full.yaml",
    "name: full\nseed: 3\nmodel:\n  path: '${RB_FUZZ_VAR}/m'\n  tokenizer: /m/tokenizer.model\n"
    "data:\n  calib: {corpus: /c.txt, samples: 8, batch: 2, range: '0:0.5', doc_sep: \"<|endoftext|>\"}\n"
    "  eval:\n    - {corpus: /e, range: '0.5:1', protocol: llamacpp, seqlen: 256, name: e}\n    - corpus: /f\n"
    "  tasks:\n    - {name: piqa, file: /t/valid.jsonl, limit: 10}\n    - {name: arc_easy, file: /t/arc.jsonl}\n"
    "  task_bos: tokenizer-default\n  task_max_length: 512\n"
    "quant:\n  preset: W4A4KV4\n  w: {bits: 4, group: 128, clip: 0.9, algo: gptq}\n  a: {clip: 0.5}\n"
    "rotation: {method: hadamard, r3: true, r4: false, seed: 2}\nmetrics: [kl]\nfigures: [a, b]\n"
    "sweep:\n  grid: {quant.w.bits: [4, 3], rotation.method: [random, identity]}\n"
    "  zip: {seed: [1, 2], data.eval.0.seqlen: [64, 128]}\n")
put("config_yaml", "anchors.yaml",
    "name: &n x\nmodel: {path: \"/m\\n\"}\ndata: {eval: [&e {corpus: /e, name: e}]}\n"
    "rotation:\n  method: optrot\n  options: {steps: 10, lr: 0.5}\nexport: {format: gguf, dtype: F16}\n"
    "# comment\n")
for src in ("stories260K.yaml", "llama2xs.yaml"):
    p = os.path.join(ROOT, "configs", "models", src)
    if os.path.exists(p):
        with open(p, "rb") as f:
            put("config_yaml", "configs-" + src, f.read())
put("config_override", "basic.txt", "quant.w.bits=3\n++rotation.seed=1\nmetrics=[kl]\ndata.eval.0.seqlen=64\n")
put("config_override", "add-remove.txt",
    "+model.tokenizer=/t.model\n~rotation.seed\ndata.eval[1].protocol=gptq\nrotation.method=random\n"
    "quant.a.bits=8\nseed=9223372036854775807\nname=ab-2\nfigures=[x, y]\n")
put("config_override", "tasks.txt",
    "+data.tasks=[{name: piqa, file: /p.jsonl}]\ndata.tasks.0.limit=5\nexport.format=hf\nquant.preset=W4A16\n")

# ---- task files (byte 0 = task: 0 piqa 1 arc_easy 2 arc_challenge 3 hellaswag 4 winogrande
#      5 lambada 6 boolq 7 openbookqa 8 copa; +9: limit 1, +18: limit 3) ---------------------------
F = "tasks/llm-foundry/"
put_shared("taskfile", "piqa-labels", lambda: b"\x00" + head_lines("tasks/piqa/valid.jsonl", 3) + b"\x00"
    + head_lines("tasks/piqa/valid-labels.lst", 3))
put("taskfile", "piqa-inline", b"\x09" + b'{"goal": "g", "sol1": "a", "sol2": "b", "label": 1}\n')
put_shared("taskfile", "foundry-arc-easy", lambda: b"\x01" + head_lines(F + "arc_easy.jsonl", 3))
put_shared("taskfile", "foundry-arc-challenge", lambda: b"\x14" + head_lines(F + "arc_challenge.jsonl", 3))
put_shared("taskfile", "hellaswag-txt", lambda: b"\x03" + head_lines("tasks/hellaswag/hellaswag_val_full.txt", 12))
put_shared("taskfile", "foundry-winogrande", lambda: b"\x04" + head_lines(F + "winogrande.jsonl", 3))
put_shared("taskfile", "foundry-lambada", lambda: b"\x05" + head_lines(F + "lambada_openai.jsonl", 3))
put_shared("taskfile", "foundry-boolq", lambda: b"\x06" + head_lines(F + "boolq.jsonl", 2))
put_shared("taskfile", "foundry-openbookqa", lambda: b"\x07" + head_lines(F + "openbook_qa.jsonl", 3))
put_shared("taskfile", "foundry-copa", lambda: b"\x08" + head_lines(F + "copa.jsonl", 3))
put("taskfile", "arc-native", b"\x01" + json.dumps(
    {"id": "x", "question": {"stem": "Which is hot?", "choices": [
        {"text": "ice", "label": "A"}, {"text": "fire", "label": "B"}, {"text": "snow", "label": "C"},
        {"text": "rain", "label": "D"}]}, "answerKey": "B"}).encode() + b"\n")
put("taskfile", "obqa-native", b"\x07" + json.dumps(
    {"id": "7-980", "question_stem": "The sun is", "question": {"stem": "The sun is", "choices": [
        {"text": "a star", "label": "A"}, {"text": "a moon", "label": "B"}, {"text": "cold", "label": "C"},
        {"text": "small", "label": "D"}]}, "answerKey": "A"}).encode() + b"\n")
put("taskfile", "hellaswag-jsonl", b"\x03" + json.dumps(
    {"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
     "ctx": "A man is sitting on a roof. he", "endings": ["is using wrap.", "is ripping level tiles off.",
     "is holding a rubik's cube.", "starts pulling up roofing."], "label": "3", "split": "val"}).encode() + b"\n")
put("taskfile", "winogrande-native", b"\x04" + json.dumps(
    {"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.",
     "option1": "Sarah", "option2": "Maria", "answer": "1"}).encode() + b"\n")
put("taskfile", "lambada-native", b"\x05" + b'{"text": "In my palm is a clear stone, and inside it is a small ivory statuette."}\n')
put("taskfile", "boolq-native", b"\x06" + json.dumps(
    {"question": "is the sky blue", "passage": "Sky. The sky is blue.", "label": True}).encode() + b"\n")
put("taskfile", "copa-native", b"\x08" + json.dumps(
    {"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.",
     "choice2": "The grass was cut.", "question": "cause", "label": 0, "idx": 0}).encode() + b"\n")
if SHARED_TO is None:
    print("seeds written under", CORPUS)
put_shared("tok_spm", "tok512.model", lambda: shared("stories260K/tok512.reconstructed.model"))
put_shared("tok_llama2c", "tok512.bin", lambda: shared("stories260K/tok512.bin"))
# a synthesized llama2.c tokenizer: max_token_length, then per token score (f32), length (i32), bytes
_toks = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(256)] + [b" a", b"b", b" ab"]
put("tok_llama2c", "synth-262.bin", struct.pack("<i", 8) + b"".join(
    struct.pack("<fi", -float(i), len(t)) + t for i, t in enumerate(_toks)))
