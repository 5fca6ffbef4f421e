"""The triple loss, term by term against direct computations.

(The fused head against it: tests/test_fused_head.py.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distil_utils.losses import triple_loss

B, S, V, D = 3, 7, 50, 16


def _inputs(seed=0, mask_some=True):
    g = torch.Generator().manual_seed(seed)
    s_logits = torch.randn(B, S, V, generator=g, requires_grad=True)
    t_logits = torch.randn(B, S, V, generator=g, requires_grad=True)
    s_hid = torch.randn(B, S, D, generator=g, requires_grad=True)
    t_hid = torch.randn(B, S, D, generator=g, requires_grad=True)
    am = torch.ones(B, S, dtype=torch.long)
    am[0, 5:] = 0
    am[2, 3:] = 0
    labels = torch.full((B, S), -100)
    if mask_some:
        labels[0, 1], labels[1, 4], labels[2, 2] = 3, 7, 11
    return s_logits, t_logits, s_hid, t_hid, labels, am


def _direct_ce(s, t, select, T):
    vals = []
    for b in range(B):
        for i in range(S):
            if select[b, i]:
                p = F.softmax(t[b, i] / T, -1)
                q = F.log_softmax(s[b, i] / T, -1)
                vals.append((p * (p.log() - q)).sum() * T * T)
    return torch.stack(vals).mean()


def test_each_term_matches_a_direct_computation():
    s, t, sh, th, labels, am = _inputs()
    out = triple_loss(s, t, sh, th, labels, am, temperature=2.0)
    assert torch.allclose(out["ce"], _direct_ce(s, t, am.bool(), 2.0), atol=1e-5)
    sel = labels != -100
    assert torch.allclose(out["mlm"], F.cross_entropy(s[sel], labels[sel]), atol=1e-6)
    cos = torch.stack([1 - F.cosine_similarity(sh[b, i], th[b, i], dim=0)
                       for b in range(B) for i in range(S) if am[b, i]]).mean()
    assert torch.allclose(out["cos"], cos, atol=1e-6)
    assert torch.allclose(out["loss"], 5 * out["ce"] + 2 * out["mlm"] + out["cos"], atol=1e-5)


def test_ce_on_masked_only_uses_the_masked_positions():
    s, t, sh, th, labels, am = _inputs()
    out = triple_loss(s, t, sh, th, labels, am, temperature=3.0, ce_on_masked_only=True)
    assert torch.allclose(out["ce"], _direct_ce(s, t, labels != -100, 3.0), atol=1e-5)
    full = triple_loss(s, t, sh, th, labels, am, temperature=3.0)
    assert not torch.allclose(out["ce"], full["ce"])


def test_padding_does_not_change_the_loss():
    s, t, sh, th, labels, am = _inputs()
    a = triple_loss(s, t, sh, th, labels, am)
    with torch.no_grad():
        s2, t2, sh2, th2 = s.clone(), t.clone(), sh.clone(), th.clone()
        for x in (s2, t2, sh2, th2):
            x[~am.bool()] = 1e3  # garbage at padded positions
    b = triple_loss(s2, t2, sh2, th2, labels, am)
    for k in ("ce", "mlm", "cos", "loss"):
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_gradients_reach_the_student_only():
    s, t, sh, th, labels, am = _inputs()
    triple_loss(s, t, sh, th, labels, am)["loss"].backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert sh.grad is not None and sh.grad.abs().sum() > 0
    assert t.grad is None and th.grad is None


def test_identical_models_have_zero_ce_and_cos():
    s, _, sh, _, labels, am = _inputs()
    out = triple_loss(s, s.detach().clone(), sh, sh.detach().clone(), labels, am)
    assert out["ce"].abs().item() < 1e-5 and out["cos"].abs().item() < 1e-5


def test_batch_without_masked_tokens_is_finite():
    s, t, sh, th, labels, am = _inputs(mask_some=False)
    out = triple_loss(s, t, sh, th, labels, am)
    assert all(torch.isfinite(v) for v in out.values())
    assert out["mlm"].item() == 0.0
    masked_only = triple_loss(s, t, sh, th, labels, am, ce_on_masked_only=True)
    assert torch.isfinite(masked_only["loss"]) and masked_only["ce"].item() == 0.0
    masked_only["loss"].backward()  # still differentiable


@pytest.mark.parametrize("kw, msg", [(dict(temperature=0.0), "temperature"),
                                     (dict(alpha_ce=-1.0), "alpha_ce"),
                                     (dict(alpha_cos=-0.1), "alpha_cos")])
def test_bad_hyper_parameters_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        triple_loss(*_inputs(), **kw)


def test_vocabulary_mismatch_is_refused():
    s, t, sh, th, labels, am = _inputs()
    with pytest.raises(ValueError, match="vocabulary"):
        triple_loss(s, t[..., :-1], sh, th, labels, am)
