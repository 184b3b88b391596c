"""Trainable quantized weights: equivalence with the golden decoder, straight-through gradients, sign freezing."""
import copy

import numpy as np
import pytest
import torch

from ssvq_deploy.quant.compress import compress_model
from ssvq_deploy.quant.config import QuantConfig
from ssvq_deploy.quant.modules import QuantConv2d, QuantLinear, QuantWeight, attach_quant_weights


@pytest.fixture
def setup(tiny_convnet):
    model = tiny_convnet()
    model[0].weight.data[0, 0, 0, :] = 0.0  # zero weights: must stay positive
    cm = compress_model(model, QuantConfig(k=8, d=4, iters=8), "tiny")
    return model, cm


def _decoded_model(model, cm):
    ref = copy.deepcopy(model)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in cm.state_dict().items()})
    return ref


@pytest.mark.parametrize("with_originals", [False, True])
def test_quantized_model_equals_golden_decode(setup, with_originals):
    model, cm = setup
    originals = {n: m.weight.detach().clone() for n, m in model.named_modules() if n in cm.layers}
    q = copy.deepcopy(model)
    qweights = attach_quant_weights(q, cm.layers, theta=1, originals=originals if with_originals else None)
    assert isinstance(q[0], QuantConv2d) and isinstance(q[9], QuantLinear) and set(qweights) == set(cm.layers)
    for name, qw in qweights.items():
        w = qw().detach().numpy()
        assert np.array_equal(w.view(np.uint32), cm.layers[name].decode().view(np.uint32)), name
        if with_originals:  # latent starts at W
            assert torch.equal(qw.latent, originals[name])
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(q(x), _decoded_model(model, cm)(x), rtol=1e-6, atol=1e-7)
    assert all(p.requires_grad for p in [qw.codebook for qw in qweights.values()])


def test_latent_keeps_stored_sign_of_zero_weights(setup):
    model, cm = setup
    layer = cm.layers["0"]
    # a negative weight whose codeword is 0 still needs a negative latent, and zero weights a non-negative one
    qw = QuantWeight(layer, theta=1, original=torch.zeros(layer.shape))
    neg = torch.from_numpy(layer.negative_mask()).reshape(layer.shape)
    assert torch.equal(qw.latent < 0, neg)
    assert torch.equal(qw.signs() < 0, neg)


def test_straight_through_gradients(setup):
    _, cm = setup
    qw = QuantWeight(cm.layers["4"], theta=1)
    with torch.no_grad():
        qw.latent.mul_(torch.rand_like(qw.latent) + 0.5)  # latents != decoded weights
    r = torch.randn(qw.shape)
    w = qw()
    loss = (r * w).sum() + 0.5 * (w ** 2).sum()  # dL/dW = r + W
    loss.backward()
    dw = (r + w).detach()
    magnitude = qw.codebook.detach()[qw.assignments].reshape(qw.shape)
    sign = torch.where(qw.latent.detach() >= 0, 1.0, -1.0)
    # W = s * m, s = sign(z) with identity STE  =>  dL/dz = dL/dW * m
    torch.testing.assert_close(qw.latent.grad, dw * magnitude)
    # dL/dC[c, j] = sum over sub-vectors v assigned to c of dL/dW[v, j] * s[v, j]  (explicit loop)
    expect = torch.zeros_like(qw.codebook)
    flat_dw, flat_s = dw.reshape(-1, qw.d), sign.reshape(-1, qw.d)
    for v, c in enumerate(qw.assignments.tolist()):
        expect[c] += flat_dw[v] * flat_s[v]
    torch.testing.assert_close(qw.codebook.grad, expect)
    # and against autograd of the explicit expression with fresh leaves
    z = qw.latent.detach().clone().requires_grad_()
    cb = qw.codebook.detach().clone().requires_grad_()
    s = torch.where(z >= 0, 1.0, -1.0) + z - z.detach()
    w2 = s * cb[qw.assignments].reshape(qw.shape)
    ((r * w2).sum() + 0.5 * (w2 ** 2).sum()).backward()
    torch.testing.assert_close(qw.latent.grad, z.grad)
    torch.testing.assert_close(qw.codebook.grad, cb.grad)


def _positive_element(qw):
    flat = (qw.latent.detach().reshape(-1) > 0.01).nonzero().flatten()
    e = int(flat[0])
    return np.unravel_index(e, qw.shape)


def _set(qw, idx, value):
    with torch.no_grad():
        qw.latent[idx] = value


def test_theta1_freezes_after_first_flip(setup):
    _, cm = setup
    qw = QuantWeight(cm.layers["6"], theta=1)
    e = _positive_element(qw)
    before = qw().detach().clone()
    qw.after_step()  # no change: no flips
    assert int(qw.flips.sum()) == 0 and not qw.frozen.any()
    _set(qw, e, -0.5)
    qw.after_step()
    assert qw.flips[e] == 1 and qw.frozen[e] and not qw.positive[e]
    assert int(qw.flips.sum()) == 1 and int(qw.frozen.sum()) == 1
    w = qw().detach()
    assert w[e] == -before[e]
    _set(qw, e, 3.0)  # pushed back across zero: the frozen sign ignores its latent
    qw.after_step()
    assert qw.flips[e] == 1 and qw.frozen[e] and not qw.positive[e]
    assert qw().detach()[e] == -before[e]
    assert torch.equal(qw().detach().abs(), before.abs())
    # frozen latents get zero gradient, live ones do not
    qw.latent.grad = None
    (qw() * torch.randn(qw.shape)).sum().backward()
    assert qw.latent.grad[e] == 0
    assert (qw.latent.grad != 0).sum() > qw.latent.numel() // 2
    # the packed layer keeps the frozen sign
    assert qw.to_packed().negative_mask().reshape(qw.shape)[e]


def test_theta2_needs_two_flips(setup):
    _, cm = setup
    qw = QuantWeight(cm.layers["6"], theta=2)
    e = _positive_element(qw)
    before = qw().detach().clone()
    _set(qw, e, -0.5)
    qw.after_step()
    assert qw.flips[e] == 1 and not qw.frozen[e] and qw().detach()[e] == -before[e]
    _set(qw, e, 0.5)
    qw.after_step()
    assert qw.flips[e] == 2 and qw.frozen[e] and qw.positive[e] and qw().detach()[e] == before[e]
    _set(qw, e, -2.0)
    qw.after_step()
    assert qw.flips[e] == 2 and qw().detach()[e] == before[e]


def test_theta_none_never_freezes(setup):
    _, cm = setup
    qw = QuantWeight(cm.layers["6"], theta=None)
    e = _positive_element(qw)
    for i in range(5):
        _set(qw, e, -0.5 if i % 2 == 0 else 0.5)
        qw.after_step()
    assert qw.flips[e] == 5 and not qw.frozen.any() and not qw.positive[e]


def test_to_packed_round_trip_and_codebook_clamp(setup):
    _, cm = setup
    qw = QuantWeight(cm.layers["4"], theta=1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        qw.latent.copy_(torch.randn(qw.shape, generator=g))  # many signs flip, theta=1 freezes them
        qw.codebook.copy_((torch.randn(qw.codebook.shape, generator=g)).half().float())  # fp16-exact, some < 0
    assert (qw.codebook < 0).any()
    qw.after_step()
    assert (qw.codebook >= 0).all() and qw.frozen.any()
    with torch.no_grad():
        qw.latent.neg_()  # frozen signs must survive this
    packed = qw.to_packed()
    w = qw().detach().numpy()
    assert np.array_equal(packed.decode().view(np.uint32), w.view(np.uint32))
    assert packed.method == "ssvq" and (packed.k, packed.d, packed.shape) == (qw.k, qw.d, qw.shape)
    np.testing.assert_array_equal(packed.assignments(), cm.layers["4"].assignments())
    # a codebook that is not fp16-exact is rounded to fp16 when packed
    with torch.no_grad():
        qw.codebook.add_(1e-4)
    expect = qw.signs().detach() * qw.codebook.detach().half().float()[qw.assignments].reshape(qw.shape)
    assert torch.equal(torch.from_numpy(qw.to_packed().decode()), expect)


def test_vq_quant_weight(tiny_convnet):
    cm = compress_model(tiny_convnet(), QuantConfig(method="vq", k=8, d=4, iters=5), "tiny")
    qw = QuantWeight(cm.layers["0"], theta=1)
    assert not qw.signed and not hasattr(qw, "latent")
    assert np.array_equal(qw().detach().numpy(), cm.layers["0"].decode())
    neg = qw.codebook.detach() < 0
    assert neg.any()
    qw.after_step()  # VQ codewords are signed: no clamp
    assert torch.equal(qw.codebook.detach() < 0, neg)
    packed = qw.to_packed()
    assert packed.method == "vq" and np.array_equal(packed.decode(), cm.layers["0"].decode())
