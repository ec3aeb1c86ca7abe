"""Converter and upcycling on a tiny qwen2 GGUF written here (same architecture, tiny sizes):
GGUF -> model.py round trip, tokenizer.json from the GGUF vocabulary, "all units, one loop"
equals the dense model exactly, thresholds skip units, and the routing file's checks."""
import json
import os
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "upcycle"))
import convert  # noqa: E402
from model import ModelConfig, VersatileLM  # noqa: E402
from routing_file import RoutingFileError, load_routing, with_checksum  # noqa: E402

gguf = pytest.importorskip("gguf")

CFG = dict(vocab_size=0, n_layer=2, n_head=4, n_kv_head=2, d_model=64, d_ff=96, context_length=128,
           rope_theta=1e6, norm_eps=1e-6, qkv_bias=True, tie_embeddings=False)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
            "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]


def _byte_vocab():
    """GPT-2's byte-to-unicode table: the 256 single-byte tokens of a byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tiny_gguf(path: str, seed: int = 0):
    """A qwen2 GGUF with random fp32 weights; returns the PyTorch model whose weights it holds."""
    tokens = _byte_vocab()
    merges = ["Ġ Ġ", "d e", "r e", "re t", "de f", "ret u", "retu r", "retur n"]
    for m in merges:
        tokens.append(m.replace(" ", ""))
    tokens += SPECIALS
    types = [1] * (len(tokens) - len(SPECIALS)) + [3] * len(SPECIALS)
    cfg = ModelConfig(**{**CFG, "vocab_size": len(tokens), "ffn_kind": "dense"})
    torch.manual_seed(seed)
    model = VersatileLM(cfg).eval()
    with torch.no_grad():   # non-trivial norms and biases, so a mix-up would show
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or n.endswith("norm_f.weight") or n.endswith(".bias"):
                p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in n else 0.1 * torch.randn_like(p))
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(path, "qwen2")
    w.add_block_count(cfg.n_layer)
    w.add_context_length(cfg.context_length)
    w.add_embedding_length(cfg.d_model)
    w.add_feed_forward_length(cfg.d_ff)
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(cfg.n_kv_head)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    d, kv, h = cfg.d_model, cfg.kv_dim, cfg.d_ff
    w.add_tensor("token_embd.weight", sd["tok_emb.weight"])
    w.add_tensor("output_norm.weight", sd["norm_f.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        qkv, qkv_b, w_in = sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"], sd[p + "ffn.ffn.w_in.weight"]
        for name, arr in [("attn_norm.weight", sd[p + "attn_norm.weight"]),
                          ("attn_q.weight", qkv[:d]), ("attn_k.weight", qkv[d:d + kv]), ("attn_v.weight", qkv[d + kv:]),
                          ("attn_q.bias", qkv_b[:d]), ("attn_k.bias", qkv_b[d:d + kv]), ("attn_v.bias", qkv_b[d + kv:]),
                          ("attn_output.weight", sd[p + "attn.proj.weight"]),
                          ("ffn_norm.weight", sd[p + "ffn.ffn_norm.weight"]),
                          ("ffn_gate.weight", w_in[:h]), ("ffn_up.weight", w_in[h:]),
                          ("ffn_down.weight", sd[p + "ffn.ffn.w_out.weight"])]:
            w.add_tensor(f"blk.{i}.{name}", np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    return path, write_tiny_gguf(path)


IDS = torch.tensor([[5, 77, 260, 12, 9, 250, 44, 101]])


def test_gguf_round_trip_reproduces_the_model(tiny):
    path, ref = tiny
    model, cfg = convert.load_model(path)
    assert (cfg.n_kv_head, cfg.qkv_bias, cfg.tie_embeddings, cfg.rope_theta) == (2, True, False, 1e6)
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(model(IDS)[0], ref(IDS)[0])


def test_upcycled_with_all_units_and_one_loop_is_the_dense_model(tiny):
    path, ref = tiny
    up, _ = convert.load_model(path, ffn_kind="upcycled")
    with torch.no_grad():
        logits, _, aux = up(IDS)
        assert (logits - ref(IDS)[0]).abs().max() < 1e-5
    for r in aux["routing"]:
        assert torch.all(r["loops"] == 1) and torch.all(r["ffn_share"] == 1)


def test_thresholds_skip_units_and_change_the_output(tiny):
    path, ref = tiny
    up, _ = convert.load_model(path, ffn_kind="upcycled")
    for b in up.blocks:
        b.ffn.gate_threshold.fill_(0.05)
    with torch.no_grad():
        logits, _, aux = up(IDS)
        dense = ref(IDS)[0]
    shares = torch.stack([r["ffn_share"] for r in aux["routing"]])
    assert 0 < float(shares.mean()) < 1
    assert (logits - dense).abs().max() > 1e-6


def test_kv_cache_decode_matches_a_full_forward(tiny):
    path, _ = tiny
    up, cfg = convert.load_model(path, ffn_kind="upcycled")
    cache = [None] * cfg.n_layer
    with torch.no_grad():
        full = up(IDS)[0]
        first = up(IDS[:, :5], cache=cache)[0]
        rest = torch.cat([up(IDS[:, t:t + 1], cache=cache)[0] for t in range(5, IDS.shape[1])], dim=1)
    assert (torch.cat([first, rest], dim=1) - full).abs().max() < 1e-4


def test_tokenizer_json_from_the_gguf_vocabulary(tiny):
    from tokenizers import Tokenizer
    path, _ = tiny
    tj, config, special = convert.tokenizer_json(gguf.GGUFReader(path))
    tok = Tokenizer.from_str(json.dumps(tj))
    text = "def f():\n    return 1  # é ünïcode ✓\n"
    enc = tok.encode(text, add_special_tokens=False)
    assert tok.decode(enc.ids, skip_special_tokens=False) == text
    assert tok.token_to_id("return") in enc.ids   # the merges apply
    assert special["fim_prefix"] == tok.token_to_id("<|fim_prefix|>")
    ids = tok.encode("<|fim_prefix|>x<|fim_suffix|>", add_special_tokens=False).ids
    assert ids[0] == special["fim_prefix"] and ids[-1] == special["fim_suffix"]
    assert config["clean_up_tokenization_spaces"] is False


def test_converter_refuses_other_architectures(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "llama.gguf"), "llama")
    w.add_block_count(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(convert.ConvertError, match="qwen2"):
        convert.load_model(str(tmp_path / "llama.gguf"))


def _routing(tmp_path, **over):
    doc = {"version": 1, "n_layer": 2, "d_ff": 96, "gate_thresholds": [0.01, 0.02], "budget": 0.05}
    doc.update(over)
    p = tmp_path / "routing.json"
    p.write_text(json.dumps(with_checksum(doc)))
    return p


def test_routing_file_is_validated(tmp_path):
    assert load_routing(str(_routing(tmp_path)), 2, 96)["gate_thresholds"] == [0.01, 0.02]
    with pytest.raises(RoutingFileError, match="n_layer"):
        load_routing(str(_routing(tmp_path)), 24, 96)
    with pytest.raises(RoutingFileError, match="version"):
        load_routing(str(_routing(tmp_path, version=9)), 2, 96)
    with pytest.raises(RoutingFileError, match="non-negative"):
        load_routing(str(_routing(tmp_path, gate_thresholds=[0.1, -1])), 2, 96)
    with pytest.raises(RoutingFileError, match="non-negative"):
        load_routing(str(_routing(tmp_path, down_thresholds=[0.1, float("nan")])), 2, 96)
    with pytest.raises(RoutingFileError, match="one threshold per layer"):
        load_routing(str(_routing(tmp_path, down_thresholds=[0.1])), 2, 96)
    p = _routing(tmp_path)
    doc = json.loads(p.read_text())
    doc["gate_thresholds"][0] = 0.5       # edited by hand: the checksum no longer matches
    p.write_text(json.dumps(doc))
    with pytest.raises(RoutingFileError, match="checksum"):
        load_routing(str(p), 2, 96)
    p.write_text("{not json")
    with pytest.raises(RoutingFileError, match="JSON"):
        load_routing(str(p), 2, 96)


def test_committed_routing_file_fits_the_default_model():
    path = os.path.join(os.path.dirname(HERE), "upcycle", "routing.json")
    if not os.path.exists(path):
        pytest.skip("no committed routing.json yet")
    doc = load_routing(path, 24, 4864)
    assert doc["source_gguf_sha256"] == __import__("source").GGUF_SHA256


def _fake_wheels(tmp_path, monkeypatch, parts=(b"GGUF-part-one;", b"part-two")):
    """Two tiny wheels holding a 'GGUF' in two data files, pinned like the real six."""
    import hashlib
    import zipfile
    import source
    wheel_dir = tmp_path / "cache" / "wheels"
    wheel_dir.mkdir(parents=True)
    wheels = []
    for i, data in enumerate(parts, 1):
        name, member = f"fake_part{i}-0.9.0-py3-none-any.whl", f"fake_part{i}/data/part0{i}.bin"
        with zipfile.ZipFile(wheel_dir / name, "w") as z:
            z.writestr(member, data)
        wheels.append((name, hashlib.sha256((wheel_dir / name).read_bytes()).hexdigest(), member))
    whole = b"".join(parts)
    monkeypatch.setattr(source, "WHEELS", wheels)
    monkeypatch.setattr(source, "GGUF_SHA256", hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(source, "GGUF_BYTES", len(whole))
    return source, str(tmp_path / "cache"), whole


def test_source_assembles_and_verifies_the_pinned_wheels(tmp_path, monkeypatch):
    source, cache, whole = _fake_wheels(tmp_path, monkeypatch)
    path = source.fetch_gguf(cache, log=lambda m: None)
    assert open(path, "rb").read() == whole
    assert source.fetch_gguf(cache, log=lambda m: None) == path   # cached: nothing fetched again


def test_source_refuses_a_tampered_wheel_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    source, cache, _ = _fake_wheels(tmp_path, monkeypatch)
    bad = os.path.join(cache, "wheels", source.WHEELS[1][0])
    with open(bad, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(source.SourceError, match="sha256 .* is not the pinned"):
        source.fetch_gguf(cache, log=lambda m: None)
    assert not os.path.exists(bad)                                  # removed, so a re-run downloads it again
    sources = os.path.join(cache, "sources")
    assert not os.path.isdir(sources) or os.listdir(sources) == []  # no GGUF, whole or partial


def test_source_refuses_an_assembled_file_with_the_wrong_checksum(tmp_path, monkeypatch):
    source, cache, _ = _fake_wheels(tmp_path, monkeypatch)
    monkeypatch.setattr(source, "GGUF_SHA256", "0" * 64)
    with pytest.raises(source.SourceError, match="assembled GGUF"):
        source.fetch_gguf(cache, log=lambda m: None)
    assert os.listdir(os.path.join(cache, "sources")) == []         # the temporary file is gone


def test_converted_folder_round_trip(tiny, tmp_path):
    """write_converted (what the set-up caches) and load_converted (what calibration and export
    read) give back the GGUF's model, dense or upcycled."""
    path, ref = tiny
    special = convert.write_converted(path, str(tmp_path / "conv"))
    assert sorted(os.listdir(tmp_path / "conv")) == ["config.json", "dense.safetensors", "tokenizer.json",
                                                     "tokenizer_config.json"]
    assert special["fim_middle"] == ref.cfg.vocab_size - len(SPECIALS) + SPECIALS.index("<|fim_middle|>")
    up = convert.load_converted(str(tmp_path / "conv"), ffn_kind="upcycled")
    with torch.no_grad():
        assert (up(IDS)[0] - ref(IDS)[0]).abs().max() < 1e-5
    with pytest.raises(ValueError, match="unknown model config keys"):
        convert.load_converted(str(tmp_path / "conv"), no_such_field=1)
