"""upcycle/train_loops.py on a tiny upcycled model (the converter's synthetic GGUF): an untrained extra loop
leaves the model exactly as shipped, the loss reaches the loop gate and then the per-token choice, and the
hard and all-token modes loop the tokens they say."""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "upcycle"))
import convert  # noqa: E402
import train_loops  # noqa: E402
from test_upcycle import IDS, tiny  # noqa: E402,F401  (the module's fixture)

WINDOW = np.concatenate([IDS[0].numpy(), IDS[0].numpy()[:1]])


def _model(tiny):
    model, _ = convert.load_model(tiny[0], ffn_kind="upcycled")
    for b in model.blocks:
        b.ffn.gate_threshold.fill_(0.05)
    return model


def test_an_untrained_loop_is_the_shipped_model(tiny):
    ref, model = _model(tiny), _model(tiny)
    train_loops.attach(model)
    with torch.no_grad():
        a, _, aux_a = ref(IDS)
        b, _, aux_b = model(IDS)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(aux_a["routing"][0]["ffn_share"], aux_b["routing"][0]["ffn_share"])
    assert abs(float(aux_b["routing"][0]["loop_share"].mean()) - 0.5) < 1e-6   # soft: every token half-chosen


def test_the_loss_reaches_the_gate_then_the_choice_and_the_base_stays_frozen(tiny):
    model = _model(tiny)
    params = train_loops.attach(model)
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        loss, _, _ = train_loops.objective(model, WINDOW, cost_weight=0.01)
        loss.backward()
        opt.step()
    alphas, ws = params[2::3], params[0::3]
    assert all(abs(float(a.detach())) > 0 for a in alphas)
    assert any(float(w.detach().abs().sum()) > 0 for w in ws)
    assert all(p.grad is None for n, p in model.named_parameters() if not n.split(".")[-1].startswith("loop_"))


def test_hard_and_all_modes_loop_the_tokens_they_say(tiny):
    model = _model(tiny)
    params = train_loops.attach(model)
    with torch.no_grad():
        params[0].normal_()          # layer 0 chooses some tokens and not others
        params[2].fill_(0.5)
    train_loops.set_loop_mode(model, "hard")
    with torch.no_grad():
        _, _, aux = model(IDS)
    hard = aux["routing"][0]["loop_share"]
    assert 0 < float(hard.mean()) < 1 and set(np.unique(hard.numpy())) <= {0.0, 1.0}
    train_loops.set_loop_mode(model, "all")
    with torch.no_grad():
        _, _, aux = model(IDS)
    assert float(aux["routing"][0]["loop_share"].mean()) == 1.0
    train_loops.set_loop_mode(model, "off")
    with torch.no_grad():
        off, _, aux = model(IDS)
    assert float(aux["routing"][0]["loop_share"].sum()) == 0.0
    assert torch.allclose(off, _model(tiny)(IDS)[0], atol=1e-6)   # the shipped model, whatever α is
