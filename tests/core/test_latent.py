"""Pure latent math: direction edits, layer groups, style mixing, truncation, projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.latent import (
    apply_direction,
    as_wplus,
    changed_rows,
    group_row_strengths,
    layer_groups,
    mix_rows,
    project_out,
    resolve_span,
    truncate_rows,
)
from studio.core.nets.stylegan2 import truncate


def _ws(n=2, num_ws=14, w_dim=16, seed=0):
    return torch.randn(n, num_ws, w_dim, generator=torch.Generator().manual_seed(seed))


def _unit(d, seed=1):
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


@pytest.mark.parametrize("span", [None, (0, 4), (4, 8), (8, 14), (3, 4), (0, 14)])
@pytest.mark.parametrize("alpha", [2.0, -1.37, 0.0])
def test_apply_direction_exact_on_span_only(span, alpha):
    ws, n = _ws(), _unit(16)
    out = apply_direction(ws, n, alpha, span)
    a, b = (0, 14) if span is None else span
    rows = torch.zeros(14, dtype=torch.bool)
    rows[a:b] = True
    assert torch.equal(out[:, ~rows], ws[:, ~rows])                 # untouched rows: bit for bit
    assert torch.equal(out[:, rows], ws[:, rows] + alpha * n)      # w' = w + alpha n, exactly
    np.testing.assert_allclose(out[:, rows].double().numpy(),
                               (ws[:, rows].double() + alpha * n.double()).numpy(), atol=1e-6)
    assert not torch.equal(ws, out) or alpha == 0
    assert out.data_ptr() != ws.data_ptr()


def test_apply_direction_on_single_wplus_and_errors():
    ws, n = _ws()[0], _unit(16)
    out = apply_direction(ws, n, 1.5, (8, 14))
    assert torch.equal(out[8:] - ws[8:], (ws[8:] + 1.5 * n) - ws[8:]) and torch.equal(out[:8], ws[:8])
    with pytest.raises(ValueError, match="w_dim=16"):
        apply_direction(ws, torch.ones(15), 1.0)
    with pytest.raises(ValueError, match="does not fit"):
        apply_direction(ws, n, 1.0, (8, 15))
    with pytest.raises(ValueError):
        resolve_span((5, 5), 14)


def test_group_strengths_follow_num_ws():
    for num_ws in (6, 10, 12, 14, 18):
        t = group_row_strengths(num_ws, {"coarse": 0.25, "medium": 0.5, "fine": 1.0})
        g = layer_groups(num_ws)
        assert t.shape == (num_ws,)
        for name, s in (("coarse", 0.25), ("medium", 0.5), ("fine", 1.0)):
            a, b = g[name]
            assert np.all(t[a:b] == s)
    assert np.all(group_row_strengths(14, {"medium": 1}) == np.r_[np.zeros(4), np.ones(4), np.zeros(6)])
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        group_row_strengths(14, {"fine": 1.5})
    with pytest.raises(ValueError, match="unknown layer group"):
        group_row_strengths(14, {"hair": 1})


@pytest.mark.parametrize("group", ["coarse", "medium", "fine"])
def test_mix_rows_strength_0_is_source_1_is_reference(group):
    src, ref = _ws(seed=0), _ws(seed=1)
    a, b = layer_groups(14)[group]
    zero = mix_rows(src, ref, group_row_strengths(14, {group: 0.0}))
    assert torch.equal(zero, src)
    one = mix_rows(src, ref, group_row_strengths(14, {group: 1.0}))
    assert torch.equal(one[:, a:b], ref[:, a:b])
    outside = torch.ones(14, dtype=torch.bool)
    outside[a:b] = False
    assert torch.equal(one[:, outside], src[:, outside])
    half = mix_rows(src, ref, group_row_strengths(14, {group: 0.5}))
    torch.testing.assert_close(half[:, a:b], (src[:, a:b] + ref[:, a:b]) / 2, atol=1e-6, rtol=0)
    assert torch.equal(half[:, outside], src[:, outside])


def test_mix_rows_per_row_and_errors():
    src, ref = _ws(seed=0), _ws(seed=1)
    t = np.linspace(0, 1, 14)
    out = mix_rows(src, ref, t)
    expect = src.double() + torch.from_numpy(t).reshape(-1, 1) * (ref.double() - src.double())
    np.testing.assert_allclose(out.numpy(), expect.numpy(), atol=1e-6)
    assert torch.equal(out[:, 0], src[:, 0]) and torch.equal(out[:, -1], ref[:, -1])
    with pytest.raises(ValueError):
        mix_rows(src, ref, np.ones(13))
    with pytest.raises(ValueError):
        mix_rows(src, ref, np.full(14, -0.1))
    with pytest.raises(ValueError):
        mix_rows(src, ref[:, :10], np.ones(14))


def test_truncate_rows_matches_generator_truncate():
    ws, w_avg = _ws(), torch.randn(16)
    assert truncate_rows(ws, w_avg, 1.0) is ws
    torch.testing.assert_close(truncate_rows(ws, w_avg, 0.7), truncate(ws, w_avg, 0.7), atol=0, rtol=0)
    torch.testing.assert_close(truncate_rows(ws, w_avg, 0.5, 8), truncate(ws, w_avg, 0.5, 8), atol=0, rtol=0)
    assert torch.equal(truncate_rows(ws[0], w_avg, 0.5, 8)[8:], ws[0, 8:])


def test_as_wplus_shapes():
    w = torch.randn(16)
    assert torch.equal(as_wplus(w, 14, 16), w.expand(14, 16))
    ws = _ws()[0]
    assert torch.equal(as_wplus(ws, 14, 16), ws)
    assert torch.equal(as_wplus(ws[None].numpy(), 14, 16), ws)
    with pytest.raises(ValueError, match=r"\[14, 16\]"):
        as_wplus(torch.randn(12, 16), 14, 16)
    with pytest.raises(ValueError):
        as_wplus(torch.randn(17), 14, 16)


def test_changed_rows():
    a = _ws()
    b = a.clone()
    b[1, 9, 3] += 1
    b[0, 2, 0] += 1
    assert changed_rows(a, b).nonzero().flatten().tolist() == [2, 9]
    assert not changed_rows(a, a.clone()).any()


def test_project_out():
    rng = np.random.RandomState(0)
    v, o1, o2 = rng.randn(3, 16)
    r = project_out(v, o1[None])
    assert abs(np.linalg.norm(r) - 1) < 1e-12 and abs(r @ o1) < 1e-10
    r2 = project_out(v, np.stack([o1, o2]))
    assert abs(r2 @ o1) < 1e-10 and abs(r2 @ o2) < 1e-10
    assert r @ v > 0  # still points the same way
    with pytest.raises(ValueError, match="span"):
        project_out(2 * o1, o1[None])
