"""
GGUF (qwen2 architecture) -> this toolchain's model (model.py) and a Hugging Face
tokenizer.json, read with the `gguf` library (tensors as data; no pickle, no code).

    python models/toolchain/upcycle/convert.py GGUF --out DIR   # DIR/dense.safetensors, config.json, tokenizer files

Weights are dequantized to fp32. Names map onto model.py's: q, k, v (and their biases)
are stacked into attn.qkv in that order, gate then up into ffn.w_in; the untied output
head becomes lm_head. qwen2 GGUFs store q/k unpermuted and RoPE is rotate-half, as in
model.py, so no reordering is needed.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from atomic import atomic_write, atomic_write_text  # noqa: E402
from model import ModelConfig, VersatileLM  # noqa: E402

# The pre-tokenizer of Qwen2's tokenizer.json (llama.cpp's "qwen2" pre-tokenizer is the same regex).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TOKEN_TYPE_NORMAL = 1   # gguf token types: 1 normal, 3 control, 4 user-defined


class ConvertError(Exception):
    pass


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def read_config(reader, ffn_kind: str = "dense", context_length: int = 32768) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch != "qwen2":
        raise ConvertError(f"GGUF architecture is {arch!r}; this converter reads qwen2")
    a = lambda k: _field(reader, f"qwen2.{k}")  # noqa: E731
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return ModelConfig(vocab_size=vocab, n_layer=a("block_count"), n_head=a("attention.head_count"),
                       n_kv_head=a("attention.head_count_kv"), d_model=a("embedding_length"),
                       d_ff=a("feed_forward_length"), context_length=min(context_length, a("context_length")),
                       rope_theta=float(a("rope.freq_base")), norm_eps=float(a("attention.layer_norm_rms_epsilon")),
                       ffn_kind=ffn_kind, qkv_bias=True, tie_embeddings="output.weight" not in
                       {t.name for t in reader.tensors})


def read_state_dict(reader, cfg: ModelConfig) -> dict:
    from gguf.quants import dequantize
    raw = {}
    for t in reader.tensors:
        arr = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        raw[t.name] = torch.from_numpy(arr.reshape([int(n) for n in reversed(t.shape)]).copy())
    sd = {"tok_emb.weight": raw.pop("token_embd.weight"), "norm_f.weight": raw.pop("output_norm.weight")}
    if "output.weight" in raw:
        sd["lm_head.weight"] = raw.pop("output.weight")
    for i in range(cfg.n_layer):
        b, p = f"blk.{i}.", f"blocks.{i}."
        g = lambda n: raw.pop(b + n)  # noqa: E731
        sd[p + "attn_norm.weight"] = g("attn_norm.weight")
        sd[p + "attn.qkv.weight"] = torch.cat([g("attn_q.weight"), g("attn_k.weight"), g("attn_v.weight")])
        sd[p + "attn.qkv.bias"] = torch.cat([g("attn_q.bias"), g("attn_k.bias"), g("attn_v.bias")])
        sd[p + "attn.proj.weight"] = g("attn_output.weight")
        sd[p + "ffn.ffn_norm.weight"] = g("ffn_norm.weight")
        sd[p + "ffn.ffn.w_in.weight"] = torch.cat([g("ffn_gate.weight"), g("ffn_up.weight")])
        sd[p + "ffn.ffn.w_out.weight"] = g("ffn_down.weight")
    if raw:
        raise ConvertError(f"GGUF tensors this converter does not know: {sorted(raw)[:8]}")
    return sd


def _load_weights(model: VersatileLM, sd: dict, where: str) -> VersatileLM:
    """Loads a dense source's weights; only an upcycled model's new parts (routers, loop
    gates, thresholds: not in the source) may be missing."""
    missing, unexpected = model.load_state_dict(sd, strict=False)
    new = {n for n in missing if any(k in n for k in ("depth_router", "loop_gate", "_threshold"))}
    if set(missing) - new or unexpected:
        raise ConvertError(f"{where}: state dict mismatch: missing {sorted(set(missing) - new)[:5]}, "
                           f"unexpected {unexpected[:5]}")
    return model.eval()


def load_model(gguf_path: str, ffn_kind: str = "dense", context_length: int = 32768):
    """(VersatileLM in eval mode with the GGUF's weights, its config)."""
    from gguf import GGUFReader
    reader = GGUFReader(gguf_path)
    cfg = read_config(reader, ffn_kind, context_length)
    return _load_weights(VersatileLM(cfg), read_state_dict(reader, cfg), gguf_path), cfg


def write_converted(gguf_path: str, out: str) -> dict:
    """Writes out/{tokenizer.json, tokenizer_config.json, dense.safetensors, config.json}, each
    atomically; returns the special ids."""
    from gguf import GGUFReader
    from safetensors.torch import save_file
    os.makedirs(out, exist_ok=True)
    tj, tc, special = tokenizer_json(GGUFReader(gguf_path))
    atomic_write_text(os.path.join(out, "tokenizer.json"), json.dumps(tj, ensure_ascii=False))
    atomic_write_text(os.path.join(out, "tokenizer_config.json"), json.dumps(tc, indent=2))
    model, cfg = load_model(gguf_path)
    atomic_write(os.path.join(out, "dense.safetensors"),
                 lambda tmp: save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp))
    atomic_write_text(os.path.join(out, "config.json"), json.dumps(cfg.to_dict(), indent=2))
    return special


def load_converted(conv_dir: str, **overrides) -> VersatileLM:
    """The model of a write_converted folder, config fields overridden (e.g. ffn_kind,
    context_length), in eval mode."""
    from safetensors.torch import load_file
    cfg = {**json.load(open(os.path.join(conv_dir, "config.json"))), **overrides}
    return _load_weights(VersatileLM(ModelConfig.from_dict(cfg)),
                         load_file(os.path.join(conv_dir, "dense.safetensors")), conv_dir)


def tokenizer_json(reader) -> tuple[dict, dict, dict]:
    """(tokenizer.json, tokenizer_config.json, {special name: id}) from the GGUF's vocabulary."""
    if _field(reader, "tokenizer.ggml.model") != "gpt2" or _field(reader, "tokenizer.ggml.pre") != "qwen2":
        raise ConvertError("only byte-level BPE vocabularies with the qwen2 pre-tokenizer are supported")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    merges = _field(reader, "tokenizer.ggml.merges")
    vocab, added = {}, []
    for i, (tok, ty) in enumerate(zip(tokens, types)):
        if ty == TOKEN_TYPE_NORMAL:
            vocab[tok] = i
        else:
            added.append({"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True})
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            byte_level]},
        "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": list(merges)},
    }
    ids = {t["content"]: t["id"] for t in added}
    need = {"eot": "<|endoftext|>", "pad": "<|fim_pad|>", "fim_prefix": "<|fim_prefix|>",
            "fim_suffix": "<|fim_suffix|>", "fim_middle": "<|fim_middle|>", "file_sep": "<|file_sep|>",
            "repo_name": "<|repo_name|>", "im_end": "<|im_end|>"}
    missing = [t for t in need.values() if t not in ids]
    if missing:
        raise ConvertError(f"the vocabulary lacks the special tokens {missing}")
    config = {"clean_up_tokenization_spaces": False, "model_max_length": 32768, "errors": "replace",
              "eos_token": "<|endoftext|>", "pad_token": "<|fim_pad|>", "add_prefix_space": False}
    return tj, config, {k: ids[v] for k, v in need.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    special = write_converted(args.gguf, args.out)
    print(json.dumps({"config": json.load(open(os.path.join(args.out, "config.json"))), "special_ids": special}))


if __name__ == "__main__":
    main()
