"""upcycle/train_routing.py on a tiny upcycled model (the converter's synthetic GGUF): its forward pass
is the shipped rule exactly, the loss reaches the thresholds, and the cost penalty moves them."""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "upcycle"))
import convert  # noqa: E402
import train_routing  # noqa: E402
from test_upcycle import IDS, tiny  # noqa: E402,F401  (the module's fixture)


def _models(tiny, g=0.05, d=0.02):
    path, _ = tiny
    ref, _ = convert.load_model(path, ffn_kind="upcycled")
    for b in ref.blocks:
        b.ffn.gate_threshold.fill_(g)
        b.ffn.down_threshold.fill_(d)
    model, _ = convert.load_model(path, ffn_kind="upcycled")
    n = len(model.blocks)
    params = train_routing.attach(model, [g] * n, [d] * n, temperature=0.5)
    return ref, model, params


def test_the_trained_forward_is_the_shipped_rule(tiny):
    ref, model, _ = _models(tiny)
    with torch.no_grad():
        a, _, aux_a = ref(IDS)
        b, _, aux_b = model(IDS)
    assert torch.allclose(a, b, atol=1e-6)
    for ra, rb in zip(aux_a["routing"], aux_b["routing"]):
        assert torch.allclose(ra["ffn_share"], rb["ffn_share"])
    assert 0 < float(aux_b["routing"][0]["ffn_share"].mean()) < 1


def test_the_loss_reaches_every_threshold_and_the_base_stays_frozen(tiny):
    _, model, params = _models(tiny)
    window = np.concatenate([IDS[0].numpy(), IDS[0].numpy()[:1]])
    loss, ce, cost = train_routing.objective(model, window, target=1.0, weight=2.0)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad) for p in params)
    assert sum(float(p.grad.abs()) > 0 for p in params) >= len(params) // 2
    assert all(p.grad is None for n, p in model.named_parameters() if "log_t" not in n)


def test_a_cost_above_the_target_raises_the_thresholds(tiny):
    _, model, params = _models(tiny, g=0.01, d=0.005)
    window = np.concatenate([IDS[0].numpy(), IDS[0].numpy()[:1]])
    _, _, cost0 = train_routing.objective(model, window, target=1.0, weight=2.0)
    before = [float(p.detach()) for p in params]
    opt = torch.optim.Adam(params, lr=0.2)
    for _ in range(20):
        opt.zero_grad()
        loss, _, cost = train_routing.objective(model, window, target=cost0 - 0.1, weight=20.0)
        loss.backward()
        opt.step()
    assert cost < cost0 - 0.02, (cost0, cost)
    assert np.mean([float(p.detach()) for p in params]) > np.mean(before)


def test_the_trained_file_is_a_routing_file_whose_point_is_the_trained_one(tmp_path):
    from routing_file import chosen_point, load_routing, point_of, with_checksum
    n, d_ff = 2, 8
    start = with_checksum({"version": 1, "n_layer": n, "d_ff": d_ff, "gate_thresholds": [0.1, 0.1],
                           "down_thresholds": [0.2, 0.2], "gate_skip": 0.2, "down_skip": 0.6, "curve": []})
    run = {"gate_thresholds": [0.3, 0.05], "down_thresholds": [0.4, 0.1], "delta_loss": 0.01,
           "compute_vs_dense": 0.7, "ffn_share_per_layer": [0.5, 0.6]}
    state = {"step": 3, "seconds": 27.0, "validation": {"dense_loss": 1.5, "tokens": 99, "trained": run,
                                                         "start": {**run, "delta_loss": 0.02}}}
    args = type("Args", (), {"window": 16, "weight": 2.0, "lr": 0.02, "temperature": 0.5})
    path = tmp_path / "trained.json"
    path.write_text(__import__("json").dumps(train_routing.trained_routing(start, state, args, 0.7, 4)))
    doc = load_routing(str(path), n, d_ff)   # checksum and shape hold
    assert doc["gate_thresholds"] == [0.3, 0.05] and doc["trained"]["from_sha256"] == start["sha256"]
    assert chosen_point(doc)["ffn_share_per_layer"] == [0.5, 0.6]
    assert point_of(doc, None)["down_thresholds"] == [0.4, 0.1]
    assert doc["trained"]["point"]["start_delta_loss"] == 0.02 and doc["trained"]["train_tokens"] == 48
