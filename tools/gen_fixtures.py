#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures for burn-xent.

Usage (from the repository root):

    pip install torch          # CPU is enough; no numpy needed
    python tools/gen_fixtures.py

This writes ``tests/fixtures/pytorch.json`` in the ``xent-fixtures/1`` format described in
the repository's ``docs/fixture-format.md``. An optional argument names another output path.

The committed ``tests/fixtures/pytorch.json`` was produced with torch 2.15.0 (CPU, Python
3.11); the ``generator`` field of the file records the version that made it.

How each case is made:

* Inputs (input, float targets, weight, pos_weight, upstream) are generated from a
  ``torch.Generator`` seeded from the case name (CRC32), so every case is deterministic and
  adding or removing a case does not change the others.
* They are then ROUNDED TO THE CASE'S DTYPE (f32 or f64) and stored as those rounded values
  (an f32 value is written as the float64 number that equals it exactly; Python's ``json``
  writes floats with a round-trip exact ``repr``).
* The expected loss and the input gradient are computed by PyTorch in float64 from the
  rounded inputs. ``grad_input`` is the gradient of ``sum(loss * upstream)`` with respect to
  ``input``; ``upstream`` null means 1 (a reduced loss) or all ones (``reduction: none``).
* ``expect_error`` cases carry no ``expected``. For each of them the script checks that
  PyTorch itself refuses the call (and, where given, with which message), except where
  noted (negative label smoothing).
* Tensors have ranks 0 to 6, the format's limit; the rank-5 and rank-6 cases are tiny
  (48 elements) so that the GPU backends compile few, cheap kernels for them.
* A few f64 cases hold values that are finite in f64 but overflow f32 (logits of 1e200); the
  parity test runs them in f64 and counts them as "not representable in f32" on backends
  without f64. The summary printed at the end counts them.

The script validates the file it wrote (fields, unique names, data lengths) and prints a
summary.
"""

import json
import math
import os
import struct
import sys
import warnings
import zlib

warnings.filterwarnings("ignore")  # torch warns when numpy is absent; numpy is not needed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

F64 = torch.float64
NAN = float("nan")
INF = float("inf")

# Tolerances: `abs(got - want) <= atol + rtol * abs(want)`.
TOL = {
    "f32": {"rtol": 1e-4, "atol": 1e-5},
    "f64": {"rtol": 1e-10, "atol": 1e-12},
}
# Cases with logits of magnitude 1e4. One ulp at 1e4 is 2^-10 ~ 9.8e-4 in f32 and
# 2^-39 ~ 1.8e-12 in f64. A loss that is close to 0 is obtained there by cancelling terms of
# magnitude 1e4 (logsumexp - target logit; x*(1-t) + softplus(-x) for BCE with logits), so
# an implementation that is correct up to rounding may be off by a few ulps of 1e4 in
# absolute terms. atol therefore allows ~4 ulps of 1e4; rtol stays as for the other cases.
TOL_LARGE = {
    "f32": {"rtol": 1e-4, "atol": 4e-3},
    "f64": {"rtol": 1e-10, "atol": 1e-10},
}
# BCE with a probability of exactly 0 or 1 and a wrong target: PyTorch's backward is
# `(p - t) / max(p * (1 - p), EPSILON)` where EPSILON is the *float* constant 1e-12, so even
# in float64 the gradient is (p - t) * 1.0000000039958e12 and not (p - t) * 1e12. An f64
# implementation that clamps at the f64 value 1e-12 is 4e-9 off relatively; rtol 1e-8 lets
# either clamp pass (it is an arbitrary constant) while still checking the ~1e12 magnitude
# and sign. The f32 tolerance (rtol 1e-4) already covers it.
TOL_BCE_CLAMP_F64 = {"rtol": 1e-8, "atol": 1e-12}
# BCE with logits in the tails (|x| from 8 to 30), where the loss or its gradient is as small
# as 1e-13. f64: PyTorch's own formula, `(1 - t) x - log_sigmoid(x)`, cancels there, so even
# the float64 reference is only good to a few ulp of |x| (about 4e-15 absolute at |x| = 30):
# atol 1e-14. f32: GPU backends compute log1p(y) as log(1 + y), good to about one f32 ulp of
# 1 (1.2e-7) absolute: atol 2e-7. Both still catch a lost tail (a 35% error in the gradient
# at x = 10 is 1.6e-5).
TOL_TAIL = {
    "f32": {"rtol": 1e-4, "atol": 2e-7},
    "f64": {"rtol": 1e-10, "atol": 1e-14},
}

LOSSES = (
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "nll_loss",
)

CASES = []
NAMES = set()

# --------------------------------------------------------------------------------------
# Random data helpers (all float64, rounded to the case's dtype later).
# --------------------------------------------------------------------------------------

def gen_for(name):
    g = torch.Generator()
    g.manual_seed(zlib.crc32(name.encode()) + 12345)
    return g

def randn(g, shape, scale=1.0):
    return torch.randn(shape, generator=g, dtype=F64) * scale

def uniform(g, shape, lo=0.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=F64)

def probs(g, shape):
    """Probabilities in [0.02, 0.98]."""
    return uniform(g, shape, 0.02, 0.98)

def binary(g, shape):
    return (torch.rand(shape, generator=g, dtype=F64) < 0.5).to(F64)

def classes(g, shape, c):
    return torch.randint(0, c, shape, generator=g, dtype=torch.long)

def class_probs(g, shape, dim):
    return torch.softmax(randn(g, shape, 1.5), dim=dim)

def log_probs(g, shape, dim):
    return torch.log_softmax(randn(g, shape, 1.5), dim=dim)

def round_to(t, dtype):
    if t is None:
        return None
    if not t.is_floating_point():
        return t
    t = t.to(F64)
    if dtype == "f32":
        return t.to(torch.float32).to(F64)
    return t.clone()

# --------------------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------------------

def num(v):
    if isinstance(v, bool):
        raise TypeError("bool in tensor data")
    if isinstance(v, int):
        return v
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v)

def tensor_json(t):
    if t is None:
        return None
    data = t.detach().reshape(-1).tolist()
    return {"shape": list(t.shape), "data": [num(v) for v in data]}

# --------------------------------------------------------------------------------------
# Evaluation with PyTorch
# --------------------------------------------------------------------------------------

def call(loss, x, t, reduction, weight, pos_weight, ignore_index, label_smoothing):
    if loss == "binary_cross_entropy":
        return F.binary_cross_entropy(x, t, weight=weight, reduction=reduction)
    if loss == "binary_cross_entropy_with_logits":
        return F.binary_cross_entropy_with_logits(
            x, t, weight=weight, reduction=reduction, pos_weight=pos_weight
        )
    kwargs = {"weight": weight, "reduction": reduction}
    if ignore_index is not None:
        kwargs["ignore_index"] = ignore_index
    if loss == "cross_entropy":
        if label_smoothing is not None:
            kwargs["label_smoothing"] = label_smoothing
        return F.cross_entropy(x, t, **kwargs)
    if loss == "nll_loss":
        return F.nll_loss(x, t, **kwargs)
    raise ValueError(loss)

def add(
    name,
    loss,
    dtype,
    x,
    t,
    reduction,
    *,
    weight=None,
    pos_weight=None,
    ignore_index=None,
    label_smoothing=None,
    upstream=None,
    error=False,
    torch_raises=True,
    torch_error=None,
    tol=None,
    grad_target=False,
):
    """Add one case.

    `upstream`: None (null in the file), a tensor, or "rand" (random tensor of the loss's
    shape, for reduction none). `torch_error`: for an error case, a text PyTorch's error
    message must contain (so that the case fails for the reason it is meant to).
    `grad_target`: also record the gradient with respect to a float target
    (`expected.grad_target`, burn-xent's extension of the format).
    """
    assert name not in NAMES, name
    assert loss in LOSSES, loss
    assert dtype in ("f32", "f64")
    assert reduction in ("mean", "sum", "none")
    NAMES.add(name)
    g = gen_for(name + "/upstream")

    x = round_to(x, dtype)
    t = round_to(t, dtype)
    weight = round_to(weight, dtype)
    pos_weight = round_to(pos_weight, dtype)
    kind = "float" if t.is_floating_point() else "index"
    if kind == "index":
        assert loss in ("cross_entropy", "nll_loss")
    if ignore_index is not None:
        assert kind == "index" and loss in ("cross_entropy", "nll_loss")
    if label_smoothing is not None:
        assert loss == "cross_entropy"
    if pos_weight is not None:
        assert loss == "binary_cross_entropy_with_logits"

    case = {
        "name": name,
        "loss": loss,
        "dtype": dtype,
        "input": tensor_json(x),
        "target": dict(tensor_json(t), kind=kind),
        "weight": tensor_json(weight),
    }
    if loss == "binary_cross_entropy_with_logits":
        case["pos_weight"] = tensor_json(pos_weight)
    if loss in ("cross_entropy", "nll_loss") and kind == "index":
        case["ignore_index"] = -100 if ignore_index is None else int(ignore_index)
    if loss == "cross_entropy":
        case["label_smoothing"] = 0.0 if label_smoothing is None else float(label_smoothing)
    case["reduction"] = reduction

    if error:
        assert upstream is None
        raised = None
        try:
            call(loss, x, t, reduction, weight, pos_weight, ignore_index, label_smoothing)
        except (RuntimeError, ValueError, IndexError) as e:
            raised = e
        if torch_raises:
            assert raised is not None, f"{name}: PyTorch did not raise"
            assert torch_error is None or torch_error in str(raised), (
                f"{name}: PyTorch raised {raised!r}, not {torch_error!r}")
        else:
            assert torch_error is None, name
            assert raised is None, f"{name}: PyTorch raised {raised!r}"
        case["upstream"] = None
        case["expect_error"] = True
        case["tolerance"] = dict(tol or TOL[dtype])
        CASES.append(case)
        return

    xg = x.clone().requires_grad_(True)
    if grad_target:
        assert kind == "float", name
        t = t.clone().requires_grad_(True)
    out = call(loss, xg, t, reduction, weight, pos_weight, ignore_index, label_smoothing)
    if isinstance(upstream, str):
        assert upstream == "rand" and reduction == "none"
        upstream = uniform(g, tuple(out.shape), -1.5, 2.0)
    upstream = round_to(upstream, dtype)
    if upstream is not None:
        assert tuple(upstream.shape) == tuple(out.shape), (name, upstream.shape, out.shape)
        up = upstream
    else:
        up = torch.ones_like(out)
    (out * up).sum().backward()
    grad = xg.grad if xg.grad is not None else torch.zeros_like(x)

    case["upstream"] = tensor_json(upstream)
    case["expected"] = {"loss": tensor_json(out), "grad_input": tensor_json(grad)}
    if grad_target:
        tgrad = t.grad if t.grad is not None else torch.zeros_like(t)
        case["expected"]["grad_target"] = tensor_json(tgrad)
    case["tolerance"] = dict(tol or TOL[dtype])
    CASES.append(case)

# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------

BCE = "binary_cross_entropy"
BCEL = "binary_cross_entropy_with_logits"
CE = "cross_entropy"
NLL = "nll_loss"
RED = ("mean", "sum", "none")

def up_for(red):
    return "rand" if red == "none" else None

def bce_cases():
    # Ranks 1, 2, 3; every reduction; both dtypes.
    for shape, dtype in (((7,), "f32"), ((4, 3), "f64"), ((2, 3, 4), "f32")):
        r = len(shape)
        for red in RED:
            name = f"bce_rank{r}_{red}_{dtype}"
            g = gen_for(name)
            add(name, BCE, dtype, probs(g, shape), binary(g, shape), red, upstream=up_for(red))
    for shape, dtype in (((5,), "f64"), ((3, 4), "f32")):
        r = len(shape)
        name = f"bce_rank{r}_none_null_upstream_{dtype}"
        g = gen_for(name)
        add(name, BCE, dtype, probs(g, shape), binary(g, shape), "none")
    name = "bce_soft_targets_mean_f64"
    g = gen_for(name)
    add(name, BCE, "f64", probs(g, (4, 3)), uniform(g, (4, 3)), "mean")
    name = "bce_soft_targets_none_f32"
    g = gen_for(name)
    add(name, BCE, "f32", probs(g, (3, 5)), uniform(g, (3, 5)), "none", upstream="rand")

    # Weights broadcast against the input.
    for red, dtype in (("mean", "f32"), ("sum", "f64"), ("none", "f32")):
        name = f"bce_weight_c_{red}_{dtype}"
        g = gen_for(name)
        add(name, BCE, dtype, probs(g, (4, 3)), binary(g, (4, 3)), red,
            weight=uniform(g, (3,), 0.2, 2.0), upstream=up_for(red))
    for red, dtype in (("mean", "f64"), ("none", "f32")):
        name = f"bce_weight_n1_{red}_{dtype}"
        g = gen_for(name)
        add(name, BCE, dtype, probs(g, (4, 3)), binary(g, (4, 3)), red,
            weight=uniform(g, (4, 1), 0.2, 2.0), upstream=up_for(red))
    name = "bce_weight_full_sum_f32"
    g = gen_for(name)
    add(name, BCE, "f32", probs(g, (3, 4)), binary(g, (3, 4)), "sum",
        weight=uniform(g, (3, 4), 0.0, 2.0))
    name = "bce_weight_rank3_c1_mean_f64"  # weight [C, 1] against [N, C, D]
    g = gen_for(name)
    add(name, BCE, "f64", probs(g, (2, 3, 4)), uniform(g, (2, 3, 4)), "mean",
        weight=uniform(g, (3, 1), 0.2, 2.0))
    name = "bce_weight_rank1_zero_weight_sum_f64"
    g = gen_for(name)
    add(name, BCE, "f64", probs(g, (5,)), binary(g, (5,)), "sum",
        weight=torch.tensor([1.0, 0.0, 2.5, 0.0, 0.5], dtype=F64))

    # Probabilities exactly 0 and 1.
    right_p = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64)
    right_t = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64)
    wrong_p = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=F64)
    wrong_t = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=F64)
    for dtype in ("f32", "f64"):
        tol = TOL_BCE_CLAMP_F64 if dtype == "f64" else None
        add(f"bce_p_exact_right_none_{dtype}", BCE, dtype, right_p, right_t, "none",
            upstream=torch.tensor([1.0, 2.0, -0.5, 0.25], dtype=F64))
        add(f"bce_p_exact_wrong_none_{dtype}", BCE, dtype, wrong_p, wrong_t, "none",
            upstream=torch.tensor([1.0, 2.0, -0.5, 0.25], dtype=F64), tol=tol)
    mixed_p = torch.tensor([[0.0, 1.0, 0.3], [1.0, 0.0, 0.8]], dtype=F64)
    mixed_t = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]], dtype=F64)
    add("bce_p_exact_mixed_mean_f32", BCE, "f32", mixed_p, mixed_t, "mean")
    add("bce_p_exact_mixed_sum_f64", BCE, "f64", mixed_p, mixed_t, "sum",
        tol=TOL_BCE_CLAMP_F64)
    add("bce_p_exact_soft_target_none_f64", BCE, "f64",
        torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=F64),
        torch.tensor([0.5, 0.5, 0.25, 0.75], dtype=F64), "none", tol=TOL_BCE_CLAMP_F64)

    # Empty batch.
    empty = torch.zeros((0,), dtype=F64)
    for red in RED:
        add(f"bce_empty_{red}_f32", BCE, "f32", empty, empty, red,
            upstream=torch.zeros((0,), dtype=F64) if red == "none" else None)

    # A scalar (shape []) upstream for a reduced loss.
    name = "bce_scalar_upstream_mean_f64"
    g = gen_for(name)
    add(name, BCE, "f64", probs(g, (3, 2)), binary(g, (3, 2)), "mean",
        upstream=torch.tensor(2.5, dtype=F64))

    # Errors.
    g = gen_for("bce_err")
    add("bce_err_shape_mismatch", BCE, "f32", probs(g, (4, 3)), binary(g, (4, 2)), "mean",
        error=True)
    add("bce_err_shape_mismatch_rank", BCE, "f32", probs(g, (4, 3)), binary(g, (12,)), "mean",
        error=True)
    add("bce_err_prob_negative", BCE, "f64", torch.tensor([0.2, -0.1, 0.5], dtype=F64),
        torch.tensor([1.0, 0.0, 1.0], dtype=F64), "mean", error=True)
    add("bce_err_prob_gt_one", BCE, "f32", torch.tensor([0.2, 1.1, 0.5], dtype=F64),
        torch.tensor([1.0, 0.0, 1.0], dtype=F64), "sum", error=True)
    add("bce_err_prob_nan", BCE, "f64", torch.tensor([0.2, NAN, 0.5], dtype=F64),
        torch.tensor([1.0, 0.0, 1.0], dtype=F64), "none", error=True)
    add("bce_err_weight_not_broadcast", BCE, "f32", probs(g, (4, 3)), binary(g, (4, 3)),
        "mean", weight=uniform(g, (4,), 0.5, 1.5), error=True)
    # Targets outside [0, 1]: PyTorch refuses them ("all elements of target should be
    # between 0 and 1"), NaN included.
    p = torch.tensor([[0.2, 0.6, 0.5], [0.9, 0.1, 0.4]], dtype=F64)
    target_error = "all elements of target should be between 0 and 1"
    for name, dtype, bad, red in (("bce_err_target_gt_one", "f32", 1.5, "mean"),
                                  ("bce_err_target_negative", "f64", -0.5, "sum"),
                                  ("bce_err_target_nan", "f64", NAN, "none")):
        t = torch.tensor([[1.0, bad, 0.0], [0.0, 1.0, 0.25]], dtype=F64)
        add(name, BCE, dtype, p, t, red, error=True, torch_error=target_error)

def bcel_cases():
    for shape, dtype in (((7,), "f64"), ((4, 3), "f32"), ((2, 3, 4), "f64")):
        r = len(shape)
        for red in RED:
            name = f"bcel_rank{r}_{red}_{dtype}"
            g = gen_for(name)
            add(name, BCEL, dtype, randn(g, shape, 2.0), binary(g, shape), red,
                upstream=up_for(red))
    name = "bcel_rank2_none_null_upstream_f64"
    g = gen_for(name)
    add(name, BCEL, "f64", randn(g, (3, 4), 2.0), binary(g, (3, 4)), "none")
    name = "bcel_soft_targets_mean_f32"
    g = gen_for(name)
    add(name, BCEL, "f32", randn(g, (4, 3), 2.0), uniform(g, (4, 3)), "mean")

    # Weights.
    for red, dtype in (("mean", "f32"), ("none", "f64")):
        name = f"bcel_weight_c_{red}_{dtype}"
        g = gen_for(name)
        add(name, BCEL, dtype, randn(g, (4, 3), 2.0), binary(g, (4, 3)), red,
            weight=uniform(g, (3,), 0.2, 2.0), upstream=up_for(red))
    name = "bcel_weight_n1_sum_f64"
    g = gen_for(name)
    add(name, BCEL, "f64", randn(g, (4, 3), 2.0), binary(g, (4, 3)), "sum",
        weight=uniform(g, (4, 1), 0.2, 2.0))

    # pos_weight.
    for red, dtype in (("mean", "f64"), ("sum", "f32"), ("none", "f64")):
        name = f"bcel_pos_weight_{red}_{dtype}"
        g = gen_for(name)
        add(name, BCEL, dtype, randn(g, (5, 3), 2.0), uniform(g, (5, 3)), red,
            pos_weight=uniform(g, (3,), 0.3, 4.0), upstream=up_for(red))
    name = "bcel_pos_weight_and_weight_mean_f32"
    g = gen_for(name)
    add(name, BCEL, "f32", randn(g, (4, 3), 2.0), binary(g, (4, 3)), "mean",
        weight=uniform(g, (3,), 0.2, 2.0), pos_weight=uniform(g, (3,), 0.3, 4.0))
    name = "bcel_pos_weight_and_weight_n1_none_f64"
    g = gen_for(name)
    add(name, BCEL, "f64", randn(g, (4, 3), 2.0), uniform(g, (4, 3)), "none",
        weight=uniform(g, (4, 1), 0.2, 2.0), pos_weight=uniform(g, (3,), 0.3, 4.0),
        upstream="rand")
    name = "bcel_pos_weight_rank3_mean_f32"  # pos_weight [D] against [N, C, D]
    g = gen_for(name)
    add(name, BCEL, "f32", randn(g, (2, 3, 4), 2.0), binary(g, (2, 3, 4)), "mean",
        pos_weight=uniform(g, (4,), 0.3, 4.0))
    name = "bcel_pos_weight_len1_sum_f64"
    g = gen_for(name)
    add(name, BCEL, "f64", randn(g, (3, 4), 2.0), binary(g, (3, 4)), "sum",
        pos_weight=torch.tensor([2.5], dtype=F64))
    name = "bcel_pos_weight_rank1_none_f32"
    g = gen_for(name)
    add(name, BCEL, "f32", randn(g, (6,), 2.0), uniform(g, (6,)), "none",
        pos_weight=uniform(g, (6,), 0.3, 4.0), upstream="rand")

    # Logits of +-1e4.
    big_x = torch.tensor([[1e4, -1e4, 1e4, -1e4], [1e4, -1e4, 0.5, -2.0]], dtype=F64)
    big_t = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.3, 0.7, 1.0, 0.0]], dtype=F64)
    for dtype in ("f32", "f64"):
        add(f"bcel_large_logits_none_{dtype}", BCEL, dtype, big_x, big_t, "none",
            upstream="rand", tol=TOL_LARGE[dtype])
    add("bcel_large_logits_mean_f32", BCEL, "f32", big_x, big_t, "mean", tol=TOL_LARGE["f32"])
    pw = torch.tensor([3.0, 0.5, 2.0, 1.5], dtype=F64)
    add("bcel_large_logits_pos_weight_none_f32", BCEL, "f32", big_x, big_t, "none",
        pos_weight=pw, upstream="rand", tol=TOL_LARGE["f32"])
    add("bcel_large_logits_pos_weight_sum_f64", BCEL, "f64", big_x, big_t, "sum",
        pos_weight=pw, tol=TOL_LARGE["f64"])

    # The tails: |x| from 8 to 30, where the loss or its gradient is tiny (down to 1e-13)
    # and only a log1p/exp(-|x|) formulation keeps its relative precision; the tolerance is
    # relative (TOL_TAIL).

    tail_x = torch.tensor([[8.0, 12.0, 16.0, 20.0, 30.0], [-8.0, -12.0, -16.0, -20.0, -30.0]],
                          dtype=F64)
    for target_value in (0.0, 1.0):
        tail_t = torch.full_like(tail_x, target_value)
        for dtype in ("f32", "f64"):
            add(f"bcel_tail_logits_t{int(target_value)}_none_{dtype}", BCEL, dtype, tail_x,
                tail_t, "none", upstream="rand", tol=TOL_TAIL[dtype])
    add("bcel_tail_logits_pos_weight_sum_f32", BCEL, "f32", tail_x,
        torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0, 0.0]], dtype=F64), "sum",
        pos_weight=torch.tensor([2.0, 0.5, 3.0, 1.0, 4.0], dtype=F64), tol=TOL_TAIL["f32"])

    # NaN logits.
    nan_x = torch.tensor([[0.5, NAN, -1.0], [2.0, 0.0, -3.0]], dtype=F64)
    nan_t = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=F64)
    add("bcel_nan_input_none_f64", BCEL, "f64", nan_x, nan_t, "none", upstream="rand")
    add("bcel_nan_input_mean_f32", BCEL, "f32", nan_x, nan_t, "mean")

    # Empty batch.
    empty = torch.zeros((0,), dtype=F64)
    for red in RED:
        add(f"bcel_empty_{red}_f64", BCEL, "f64", empty, empty, red,
            upstream=torch.zeros((0,), dtype=F64) if red == "none" else None)
    add("bcel_empty_2d_pos_weight_sum_f32", BCEL, "f32", torch.zeros((0, 3), dtype=F64),
        torch.zeros((0, 3), dtype=F64), "sum", pos_weight=torch.tensor([1.0, 2.0, 3.0]))

    # Targets outside [0, 1]: PyTorch accepts any target here (no range check).
    name = "bcel_target_out_of_range_none_f64"
    g = gen_for(name)
    add(name, BCEL, "f64", randn(g, (2, 3), 2.0),
        torch.tensor([[1.5, -0.5, 0.3], [-0.5, 1.5, 2.0]], dtype=F64), "none", upstream="rand")
    name = "bcel_target_out_of_range_pos_weight_mean_f32"
    g = gen_for(name)
    add(name, BCEL, "f32", randn(g, (2, 3), 2.0),
        torch.tensor([[1.5, 0.0, -0.5], [1.0, -0.5, 1.5]], dtype=F64), "mean",
        pos_weight=uniform(g, (3,), 0.3, 4.0))

    # Errors.
    g = gen_for("bcel_err")
    add("bcel_err_shape_mismatch", BCEL, "f32", randn(g, (4, 3)), binary(g, (3, 4)), "mean",
        error=True)
    add("bcel_err_pos_weight_not_broadcast", BCEL, "f64", randn(g, (4, 3)), binary(g, (4, 3)),
        "mean", pos_weight=uniform(g, (4,), 0.5, 2.0), error=True)
    add("bcel_err_weight_not_broadcast", BCEL, "f32", randn(g, (4, 3)), binary(g, (4, 3)),
        "sum", weight=uniform(g, (2,), 0.5, 2.0), error=True)

def ce_cases():
    # Plain index targets: 2-D, unbatched, K-dimensional.
    for dtype in ("f32", "f64"):
        for red in RED:
            name = f"ce_2d_{red}_{dtype}"
            g = gen_for(name)
            add(name, CE, dtype, randn(g, (6, 5), 2.0), classes(g, (6,), 5), red,
                upstream=up_for(red))
    name = "ce_2d_none_null_upstream_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (4, 3), 2.0), classes(g, (4,), 3), "none")
    for red, dtype in (("mean", "f64"), ("sum", "f32"), ("none", "f64")):
        name = f"ce_unbatched_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (5,), 2.0), torch.tensor(3), red,
            upstream=torch.tensor(-1.75, dtype=F64) if red == "none" else None)
    for red, dtype in (("mean", "f32"), ("none", "f64")):
        name = f"ce_kdim1_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (3, 4, 5), 2.0), classes(g, (3, 5), 4), red,
            upstream=up_for(red))
    for red, dtype in (("mean", "f64"), ("sum", "f32"), ("none", "f32")):
        name = f"ce_kdim2_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (2, 3, 4, 2), 2.0), classes(g, (2, 4, 2), 3), red,
            upstream=up_for(red))

    # Class weights.
    for red, dtype in (("mean", "f32"), ("sum", "f64"), ("none", "f32")):
        name = f"ce_weight_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (6, 4), 2.0), classes(g, (6,), 4), red,
            weight=uniform(g, (4,), 0.2, 3.0), upstream=up_for(red))
    name = "ce_weight_kdim2_mean_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (2, 3, 2, 3), 2.0), classes(g, (2, 2, 3), 3), "mean",
        weight=uniform(g, (3,), 0.2, 3.0))
    name = "ce_weight_unbatched_mean_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (4,), 2.0), torch.tensor(2), "mean",
        weight=uniform(g, (4,), 0.2, 3.0))
    name = "ce_zero_class_weight_mean_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (5, 3), 2.0), torch.tensor([0, 1, 2, 1, 1]), "mean",
        weight=torch.tensor([1.5, 0.0, 0.7], dtype=F64))
    name = "ce_zero_class_weight_all_targets_mean_f64"  # 0/0 -> nan
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (3, 3), 2.0), torch.tensor([1, 1, 1]), "mean",
        weight=torch.tensor([1.5, 0.0, 0.7], dtype=F64))

    # ignore_index.
    for red, dtype in (("mean", "f32"), ("sum", "f64"), ("none", "f64")):
        name = f"ce_ignore_default_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (5, 4), 2.0), torch.tensor([2, -100, 0, -100, 3]), red,
            upstream=up_for(red))
    name = "ce_ignore_custom_1_mean_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (6, 3), 2.0), torch.tensor([1, 0, 1, 2, 2, 1]), "mean",
        ignore_index=1)
    name = "ce_ignore_custom_1_kdim1_none_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (2, 3, 4), 2.0), torch.tensor([[1, 0, 2, 1], [0, 1, 1, 2]]),
        "none", ignore_index=1, upstream="rand")
    for red, dtype in (("mean", "f32"), ("none", "f64")):
        name = f"ce_ignore_neg1_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (4, 3), 2.0), torch.tensor([-1, 2, -1, 0]), red,
            ignore_index=-1, upstream=up_for(red))
    name = "ce_ignore_weight_mean_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (6, 4), 2.0), torch.tensor([3, -100, 0, 1, -100, 3]), "mean",
        weight=uniform(g, (4,), 0.2, 3.0))
    name = "ce_ignore_custom_2_weight_kdim2_sum_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (2, 3, 2, 2), 2.0),
        torch.tensor([[[2, 0], [1, 2]], [[2, 2], [0, 1]]]), "sum", ignore_index=2,
        weight=uniform(g, (3,), 0.2, 3.0))
    # ignore_index outside [0, C) and present in the target: PyTorch accepts it.
    name = "ce_ignore_out_of_range_present_none_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (4, 4), 2.0), torch.tensor([7, 1, 7, 3]), "none",
        ignore_index=7, upstream="rand")
    # Every target ignored.
    for red, dtype in (("mean", "f32"), ("sum", "f64"), ("none", "f32")):
        name = f"ce_all_ignored_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (3, 4), 2.0), torch.tensor([-100, -100, -100]), red,
            upstream=up_for(red))
    name = "ce_all_ignored_weight_mean_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (3, 4), 2.0), torch.tensor([1, 1, 1]), "mean",
        ignore_index=1, weight=uniform(g, (4,), 0.2, 3.0))

    # Label smoothing, index targets.
    for red, dtype in (("mean", "f64"), ("sum", "f32"), ("none", "f64")):
        name = f"ce_smooth_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (6, 5), 2.0), classes(g, (6,), 5), red,
            label_smoothing=0.1, upstream=up_for(red))
    name = "ce_smooth_unbatched_none_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (4,), 2.0), torch.tensor(0), "none", label_smoothing=0.25,
        upstream=torch.tensor(0.5, dtype=F64))
    name = "ce_smooth_one_mean_f64"  # label_smoothing = 1 is allowed
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (4, 3), 2.0), classes(g, (4,), 3), "mean",
        label_smoothing=1.0)
    name = "ce_smooth_weight_mean_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (6, 4), 2.0), classes(g, (6,), 4), "mean",
        label_smoothing=0.2, weight=uniform(g, (4,), 0.2, 3.0))
    for red, dtype in (("mean", "f64"), ("sum", "f32"), ("none", "f64")):
        name = f"ce_smooth_weight_ignore_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (6, 4), 2.0), torch.tensor([3, -100, 0, 1, -100, 2]), red,
            label_smoothing=0.15, weight=uniform(g, (4,), 0.2, 3.0), upstream=up_for(red))
    name = "ce_smooth_ignore_custom_1_kdim1_mean_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (2, 3, 4), 2.0), torch.tensor([[1, 0, 2, 1], [0, 1, 1, 2]]),
        "mean", ignore_index=1, label_smoothing=0.3)
    name = "ce_smooth_ignore_kdim2_none_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (2, 3, 2, 2), 2.0),
        torch.tensor([[[2, -100], [1, 0]], [[-100, 2], [0, 1]]]), "none", label_smoothing=0.05,
        upstream="rand")
    name = "ce_smooth_all_ignored_mean_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (3, 4), 2.0), torch.tensor([-100, -100, -100]), "mean",
        label_smoothing=0.1)
    name = "ce_smooth_all_ignored_sum_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (3, 4), 2.0), torch.tensor([-100, -100, -100]), "sum",
        label_smoothing=0.1, weight=uniform(g, (4,), 0.2, 3.0))
    name = "ce_smooth_ignore_out_of_range_present_mean_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (4, 4), 2.0), torch.tensor([7, 1, 7, 3]), "mean",
        ignore_index=7, label_smoothing=0.2)

    # Probability targets.
    for red, dtype in (("mean", "f32"), ("sum", "f64"), ("none", "f32")):
        name = f"ce_prob_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, (5, 4), 2.0), class_probs(g, (5, 4), 1), red,
            upstream=up_for(red))
    name = "ce_prob_unbatched_mean_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (5,), 2.0), class_probs(g, (5,), 0), "mean")
    name = "ce_prob_unbatched_none_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (5,), 2.0), class_probs(g, (5,), 0), "none",
        upstream=torch.tensor(1.5, dtype=F64))
    name = "ce_prob_kdim1_mean_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (2, 3, 4), 2.0), class_probs(g, (2, 3, 4), 1), "mean")
    name = "ce_prob_kdim2_none_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (2, 3, 2, 2), 2.0), class_probs(g, (2, 3, 2, 2), 1), "none",
        upstream="rand")
    name = "ce_prob_weight_mean_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (5, 4), 2.0), class_probs(g, (5, 4), 1), "mean",
        weight=uniform(g, (4,), 0.2, 3.0))
    name = "ce_prob_smooth_mean_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (5, 4), 2.0), class_probs(g, (5, 4), 1), "mean",
        label_smoothing=0.2)
    name = "ce_prob_smooth_weight_none_f64"
    g = gen_for(name)
    add(name, CE, "f64", randn(g, (5, 4), 2.0), class_probs(g, (5, 4), 1), "none",
        label_smoothing=0.1, weight=uniform(g, (4,), 0.2, 3.0), upstream="rand")
    name = "ce_prob_smooth_weight_kdim1_sum_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (2, 3, 3), 2.0), class_probs(g, (2, 3, 3), 1), "sum",
        label_smoothing=0.3, weight=uniform(g, (3,), 0.2, 3.0))
    name = "ce_prob_onehot_mean_f64"
    add(name, CE, "f64", randn(gen_for(name), (3, 3), 2.0),
        torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=F64), "mean")

    # Logits of +-1e4.
    big_x = torch.tensor([[1e4, -1e4, 0.0, 1.0], [-1e4, 1e4, 1e4, -1e4], [1e4, 2.0, -1e4, 3.0]],
                         dtype=F64)
    big_t = torch.tensor([0, 2, 2])
    for dtype in ("f32", "f64"):
        add(f"ce_large_logits_none_{dtype}", CE, dtype, big_x, big_t, "none", upstream="rand",
            tol=TOL_LARGE[dtype])
        add(f"ce_large_logits_mean_{dtype}", CE, dtype, big_x, big_t, "mean",
            tol=TOL_LARGE[dtype])
    add("ce_large_logits_smooth_weight_mean_f32", CE, "f32", big_x, big_t, "mean",
        label_smoothing=0.1, weight=torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=F64),
        tol=TOL_LARGE["f32"])
    add("ce_large_logits_prob_sum_f64", CE, "f64", big_x,
        torch.tensor([[0.5, 0.0, 0.25, 0.25], [0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]],
                     dtype=F64), "sum", tol=TOL_LARGE["f64"])

    # -inf logits for non-target classes (no smoothing).
    ninf_x = torch.tensor([[0.5, -INF, 1.0, -INF], [-INF, -INF, 2.0, 0.0], [0.1, 0.2, 0.3, -INF]],
                          dtype=F64)
    ninf_t = torch.tensor([0, 2, 1])
    add("ce_neginf_nontarget_none_f32", CE, "f32", ninf_x, ninf_t, "none", upstream="rand")
    add("ce_neginf_nontarget_mean_f64", CE, "f64", ninf_x, ninf_t, "mean")
    add("ce_neginf_nontarget_weight_sum_f32", CE, "f32", ninf_x, ninf_t, "sum",
        weight=torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=F64))
    add("ce_neginf_target_none_f64", CE, "f64", ninf_x, torch.tensor([1, 2, 3]), "none",
        upstream=torch.tensor([1.0, 0.5, 2.0], dtype=F64))

    # NaN logits.
    nan_x = torch.tensor([[0.5, NAN, 1.0], [0.2, -1.0, 2.0], [1.0, 0.0, -1.0]], dtype=F64)
    add("ce_nan_logits_none_f64", CE, "f64", nan_x, torch.tensor([0, 2, 1]), "none",
        upstream="rand")
    add("ce_nan_logits_mean_f32", CE, "f32", nan_x, torch.tensor([0, 2, 1]), "mean")
    add("ce_nan_logits_ignored_row_mean_f64", CE, "f64", nan_x, torch.tensor([-100, 2, 1]),
        "mean")

    # Empty batch.
    for red in RED:
        add(f"ce_empty_{red}_f32", CE, "f32", torch.zeros((0, 4), dtype=F64),
            torch.zeros((0,), dtype=torch.long), red,
            upstream=torch.zeros((0,), dtype=F64) if red == "none" else None)
    add("ce_empty_weight_smooth_sum_f64", CE, "f64", torch.zeros((0, 3), dtype=F64),
        torch.zeros((0,), dtype=torch.long), "sum", label_smoothing=0.1,
        weight=torch.tensor([1.0, 2.0, 3.0], dtype=F64))
    add("ce_empty_prob_mean_f64", CE, "f64", torch.zeros((0, 3), dtype=F64),
        torch.zeros((0, 3), dtype=F64), "mean")

    # A scalar (shape []) upstream for a reduced loss.
    name = "ce_scalar_upstream_sum_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, (4, 3), 2.0), classes(g, (4,), 3), "sum",
        upstream=torch.tensor(-0.75, dtype=F64))

    # Errors.
    g = gen_for("ce_err")
    x = randn(g, (4, 3))
    add("ce_err_batch_mismatch", CE, "f32", x, torch.tensor([0, 1, 2]), "mean", error=True)
    add("ce_err_kdim_mismatch", CE, "f64", randn(g, (2, 3, 4)), classes(g, (2, 5), 3), "mean",
        error=True)
    add("ce_err_unbatched_target_len", CE, "f32", randn(g, (3,)), torch.tensor([1, 2]), "mean",
        error=True)
    add("ce_err_weight_len", CE, "f32", x, torch.tensor([0, 1, 2, 1]), "mean",
        weight=uniform(g, (4,), 0.5, 1.5), error=True)
    add("ce_err_target_ge_c", CE, "f64", x, torch.tensor([0, 3, 2, 1]), "mean", error=True)
    add("ce_err_target_negative", CE, "f32", x, torch.tensor([0, -1, 2, 1]), "sum", error=True)
    add("ce_err_target_negative_not_custom_ignore", CE, "f64", x, torch.tensor([0, -100, 2, 1]),
        "none", ignore_index=-1, error=True)
    add("ce_err_smooth_target_ge_c", CE, "f32", x, torch.tensor([0, 5, 2, 1]), "mean",
        label_smoothing=0.1, error=True)
    add("ce_err_smooth_gt_one", CE, "f32", x, torch.tensor([0, 1, 2, 1]), "mean",
        label_smoothing=1.5, error=True)
    add("ce_err_smooth_gt_one_prob", CE, "f64", x, class_probs(g, (4, 3), 1), "mean",
        label_smoothing=1.01, error=True)
    # PyTorch does NOT refuse a negative label smoothing (it computes with it silently, for
    # index and for probability targets alike). burn-xent refuses it on purpose (it is
    # meaningless and turns the loss into a reward for confident wrong predictions), so
    # these cases stay `expect_error` and the script checks that PyTorch does not raise.
    add("ce_err_smooth_negative", CE, "f32", x, torch.tensor([0, 1, 2, 1]), "mean",
        label_smoothing=-0.1, error=True, torch_raises=False)
    add("ce_err_smooth_negative_prob", CE, "f64", x, class_probs(g, (4, 3), 1), "mean",
        label_smoothing=-0.1, error=True, torch_raises=False)
    add("ce_err_prob_shape_mismatch", CE, "f32", x, class_probs(g, (4, 4), 1), "mean",
        error=True)

def nll_cases():
    for dtype in ("f32", "f64"):
        for red in RED:
            name = f"nll_2d_{red}_{dtype}"
            g = gen_for(name)
            add(name, NLL, dtype, log_probs(g, (6, 5), 1), classes(g, (6,), 5), red,
                upstream=up_for(red))
    name = "nll_2d_none_null_upstream_f64"
    g = gen_for(name)
    add(name, NLL, "f64", log_probs(g, (4, 3), 1), classes(g, (4,), 3), "none")
    for red, dtype in (("mean", "f32"), ("none", "f64")):
        name = f"nll_unbatched_{red}_{dtype}"
        g = gen_for(name)
        add(name, NLL, dtype, log_probs(g, (4,), 0), torch.tensor(1), red,
            upstream=torch.tensor(2.0, dtype=F64) if red == "none" else None)
    name = "nll_unbatched_sum_weight_f64"
    g = gen_for(name)
    add(name, NLL, "f64", log_probs(g, (4,), 0), torch.tensor(3), "sum",
        weight=uniform(g, (4,), 0.2, 3.0))
    name = "nll_kdim1_sum_f64"
    g = gen_for(name)
    add(name, NLL, "f64", log_probs(g, (3, 4, 5), 1), classes(g, (3, 5), 4), "sum")
    for red, dtype in (("mean", "f32"), ("none", "f64")):
        name = f"nll_kdim2_{red}_{dtype}"
        g = gen_for(name)
        add(name, NLL, dtype, log_probs(g, (2, 3, 2, 3), 1), classes(g, (2, 2, 3), 3), red,
            upstream=up_for(red))
    name = "nll_unnormalised_input_mean_f64"  # any values, not only log-probabilities
    g = gen_for(name)
    add(name, NLL, "f64", randn(g, (5, 3), 3.0), classes(g, (5,), 3), "mean")

    # Class weights.
    for red, dtype in (("mean", "f64"), ("sum", "f32"), ("none", "f64")):
        name = f"nll_weight_{red}_{dtype}"
        g = gen_for(name)
        add(name, NLL, dtype, log_probs(g, (6, 4), 1), classes(g, (6,), 4), red,
            weight=uniform(g, (4,), 0.2, 3.0), upstream=up_for(red))
    name = "nll_zero_class_weight_mean_f32"
    g = gen_for(name)
    add(name, NLL, "f32", log_probs(g, (5, 3), 1), torch.tensor([0, 1, 2, 1, 0]), "mean",
        weight=torch.tensor([0.0, 1.2, 0.7], dtype=F64))
    name = "nll_zero_class_weight_all_targets_mean_f64"  # 0/0 -> nan
    g = gen_for(name)
    add(name, NLL, "f64", log_probs(g, (3, 3), 1), torch.tensor([0, 0, 0]), "mean",
        weight=torch.tensor([0.0, 1.2, 0.7], dtype=F64))

    # ignore_index.
    for red, dtype in (("mean", "f64"), ("sum", "f32"), ("none", "f32")):
        name = f"nll_ignore_default_{red}_{dtype}"
        g = gen_for(name)
        add(name, NLL, dtype, log_probs(g, (5, 4), 1), torch.tensor([2, -100, 0, -100, 3]), red,
            upstream=up_for(red))
    for red, dtype in (("mean", "f32"), ("none", "f64")):
        name = f"nll_ignore_custom_1_{red}_{dtype}"
        g = gen_for(name)
        add(name, NLL, dtype, log_probs(g, (6, 3), 1), torch.tensor([1, 0, 1, 2, 2, 1]), red,
            ignore_index=1, upstream=up_for(red))
    name = "nll_ignore_neg1_sum_f64"
    g = gen_for(name)
    add(name, NLL, "f64", log_probs(g, (4, 3), 1), torch.tensor([-1, 2, -1, 0]), "sum",
        ignore_index=-1)
    name = "nll_ignore_weight_kdim1_mean_f32"
    g = gen_for(name)
    add(name, NLL, "f32", log_probs(g, (2, 4, 3), 1),
        torch.tensor([[3, -100, 1], [0, 2, -100]]), "mean", weight=uniform(g, (4,), 0.2, 3.0))
    name = "nll_ignore_custom_0_weight_kdim2_none_f64"
    g = gen_for(name)
    add(name, NLL, "f64", log_probs(g, (2, 3, 2, 2), 1),
        torch.tensor([[[0, 1], [2, 0]], [[1, 1], [0, 2]]]), "none", ignore_index=0,
        weight=uniform(g, (3,), 0.2, 3.0), upstream="rand")
    name = "nll_ignore_out_of_range_present_mean_f32"
    g = gen_for(name)
    add(name, NLL, "f32", log_probs(g, (4, 3), 1), torch.tensor([5, 1, 5, 2]), "mean",
        ignore_index=5)
    for red, dtype in (("mean", "f64"), ("sum", "f32"), ("none", "f64")):
        name = f"nll_all_ignored_{red}_{dtype}"
        g = gen_for(name)
        add(name, NLL, dtype, log_probs(g, (3, 4), 1), torch.tensor([-100, -100, -100]), red,
            upstream=up_for(red))
    name = "nll_all_ignored_weight_kdim1_mean_f32"
    g = gen_for(name)
    add(name, NLL, "f32", log_probs(g, (2, 3, 2), 1), torch.tensor([[2, 2], [2, 2]]), "mean",
        ignore_index=2, weight=uniform(g, (3,), 0.2, 3.0))

    # NaN inputs.
    nan_x = torch.tensor([[-0.5, NAN, -1.0], [NAN, -1.0, -2.0], [-1.0, -0.3, -1.5]], dtype=F64)
    add("nll_nan_at_target_none_f64", NLL, "f64", nan_x, torch.tensor([1, 1, 2]), "none",
        upstream="rand")
    add("nll_nan_at_target_mean_f32", NLL, "f32", nan_x, torch.tensor([1, 1, 2]), "mean")
    add("nll_nan_off_target_mean_f64", NLL, "f64", nan_x, torch.tensor([0, 2, 2]), "mean")
    add("nll_nan_off_target_none_f32", NLL, "f32", nan_x, torch.tensor([2, 1, 0]), "none",
        upstream="rand")
    add("nll_nan_ignored_sum_f64", NLL, "f64", nan_x, torch.tensor([2, -100, 0]), "sum")
    add("nll_neginf_at_target_none_f64", NLL, "f64",
        torch.tensor([[-INF, -0.1], [-0.2, -INF]], dtype=F64), torch.tensor([0, 0]), "none",
        upstream=torch.tensor([1.0, 3.0], dtype=F64))

    # Empty batch.
    for red in RED:
        add(f"nll_empty_{red}_f64", NLL, "f64", torch.zeros((0, 4), dtype=F64),
            torch.zeros((0,), dtype=torch.long), red,
            upstream=torch.zeros((0,), dtype=F64) if red == "none" else None)
    add("nll_empty_kdim1_weight_mean_f32", NLL, "f32", torch.zeros((0, 3, 2), dtype=F64),
        torch.zeros((0, 2), dtype=torch.long), "mean",
        weight=torch.tensor([1.0, 2.0, 3.0], dtype=F64))

    # Errors.
    g = gen_for("nll_err")
    x = log_probs(g, (4, 3), 1)
    add("nll_err_batch_mismatch", NLL, "f64", x, torch.tensor([0, 1, 2, 1, 0]), "mean",
        error=True)
    add("nll_err_kdim_mismatch", NLL, "f32", log_probs(g, (2, 3, 4), 1), classes(g, (2, 3), 3),
        "mean", error=True)
    add("nll_err_kdim_batch_mismatch", NLL, "f64", log_probs(g, (2, 3, 4), 1),
        classes(g, (3, 4), 3), "sum", error=True)
    add("nll_err_weight_len", NLL, "f32", x, torch.tensor([0, 1, 2, 1]), "mean",
        weight=uniform(g, (2,), 0.5, 1.5), error=True)
    add("nll_err_target_ge_c", NLL, "f32", x, torch.tensor([0, 1, 3, 1]), "sum", error=True)
    add("nll_err_target_negative", NLL, "f64", x, torch.tensor([0, -2, 2, 1]), "mean",
        error=True)
    add("nll_err_unbatched_target_ge_c", NLL, "f32", log_probs(g, (3,), 0), torch.tensor(3),
        "none", error=True)

def with_ignored(g, t, ignore_index, share=0.3):
    """`t` with about `share` of its entries replaced by `ignore_index`."""
    mask = torch.rand(tuple(t.shape), generator=g, dtype=F64) < share
    return torch.where(mask, torch.full_like(t, ignore_index), t)

def ignore_255_cases():
    # The segmentation convention: 21 classes (PASCAL VOC), "void" pixels labelled 255.
    c = 21
    logits = lambda g, shape: randn(g, shape, 2.0)  # noqa: E731
    log_ps = lambda g, shape: log_probs(g, shape, 1)  # noqa: E731
    for short, loss, x_of, none_dtype in (("ce", CE, logits, "f32"),
                                          ("nll", NLL, log_ps, "f64")):
        for red, dtype in (("mean", "f32"), ("sum", "f64"), ("none", none_dtype)):
            name = f"{short}_ignore_255_c21_kdim2_{red}_{dtype}"
            g = gen_for(name)
            add(name, loss, dtype, x_of(g, (2, c, 2, 3)),
                with_ignored(g, classes(g, (2, 2, 3), c), 255), red, ignore_index=255,
                upstream=up_for(red))
        name = f"{short}_ignore_255_c21_kdim1_weight_mean_f64"
        g = gen_for(name)
        add(name, loss, "f64", x_of(g, (2, c, 4)), with_ignored(g, classes(g, (2, 4), c), 255),
            "mean", ignore_index=255, weight=uniform(g, (c,), 0.2, 3.0),
            label_smoothing=0.1 if loss == CE else None)
        # 255 without ignore_index=255 is a class index out of range.
        name = f"{short}_err_255_without_ignore_index"
        g = gen_for(name)
        t = classes(g, (2, 2, 2), c)
        t[1, 0, 1] = 255
        add(name, loss, "f32", x_of(g, (2, c, 2, 2)), t, "mean", error=True)

R5 = (2, 3, 2, 2, 2)
R6 = (2, 3, 2, 1, 2, 2)

def index_shape(shape):
    """A class-index target's shape for an input [N, C, d1, ...]: [N, d1, ...]."""
    return (shape[0],) + tuple(shape[2:])

def high_rank_cases():
    # Ranks 5 and 6, the format's highest, for every loss; tiny sizes (48 elements). Weights
    # and pos_weight broadcast from ranks 1, 5 and 6.
    name = "bce_rank5_mean_f32"
    g = gen_for(name)
    add(name, BCE, "f32", probs(g, R5), binary(g, R5), "mean")
    name = "bce_rank5_weight_rank5_none_f64"
    g = gen_for(name)
    add(name, BCE, "f64", probs(g, R5), uniform(g, R5), "none",
        weight=uniform(g, (1, 3, 1, 2, 1), 0.2, 2.0), upstream="rand")
    name = "bce_rank6_sum_f64"
    g = gen_for(name)
    add(name, BCE, "f64", probs(g, R6), uniform(g, R6), "sum")
    name = "bce_rank6_weight_last_mean_f32"
    g = gen_for(name)
    add(name, BCE, "f32", probs(g, R6), binary(g, R6), "mean",
        weight=uniform(g, (2,), 0.2, 2.0))
    name = "bce_rank6_weight_rank6_none_f32"
    g = gen_for(name)
    add(name, BCE, "f32", probs(g, R6), binary(g, R6), "none",
        weight=uniform(g, (2, 1, 2, 1, 1, 2), 0.2, 2.0), upstream="rand")
    g = gen_for("bce_err_rank6")
    add("bce_err_rank6_weight_not_broadcast", BCE, "f64", probs(g, R6), binary(g, R6), "sum",
        weight=uniform(g, (3, 1, 1, 1, 1, 3), 0.2, 2.0), error=True)

    name = "bcel_rank5_none_f64"
    g = gen_for(name)
    add(name, BCEL, "f64", randn(g, R5, 2.0), binary(g, R5), "none", upstream="rand")
    name = "bcel_rank5_pos_weight_rank5_sum_f32"
    g = gen_for(name)
    add(name, BCEL, "f32", randn(g, R5, 2.0), uniform(g, R5), "sum",
        pos_weight=uniform(g, (1, 3, 1, 1, 2), 0.3, 4.0))
    name = "bcel_rank6_mean_f64"
    g = gen_for(name)
    add(name, BCEL, "f64", randn(g, R6, 2.0), uniform(g, R6), "mean")
    name = "bcel_rank6_weight_rank5_pos_weight_last_mean_f32"
    g = gen_for(name)
    add(name, BCEL, "f32", randn(g, R6, 2.0), binary(g, R6), "mean",
        weight=uniform(g, (3, 1, 1, 1, 1), 0.2, 2.0), pos_weight=uniform(g, (2,), 0.3, 4.0))
    name = "bcel_rank6_weight_pos_weight_rank6_none_f32"
    g = gen_for(name)
    add(name, BCEL, "f32", randn(g, R6, 2.0), uniform(g, R6), "none",
        weight=uniform(g, (2, 1, 1, 1, 1, 2), 0.2, 2.0),
        pos_weight=uniform(g, (1, 3, 2, 1, 1, 2), 0.3, 4.0), upstream="rand")

    # Cross-entropy, index and probability targets; C = 3.
    for r, shape, dtype, other, red in ((5, R5, "f32", "f64", "mean"),
                                        (6, R6, "f64", "f32", "sum")):
        name = f"ce_rank{r}_{red}_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, shape, 2.0), classes(g, index_shape(shape), 3), red)
        name = f"ce_rank{r}_weight_ignore_smooth_none_{other}"
        g = gen_for(name)
        add(name, CE, other, randn(g, shape, 2.0),
            with_ignored(g, classes(g, index_shape(shape), 3), -100), "none",
            weight=uniform(g, (3,), 0.2, 3.0), label_smoothing=0.1, upstream="rand")
        name = f"ce_prob_rank{r}_none_{dtype}"
        g = gen_for(name)
        add(name, CE, dtype, randn(g, shape, 2.0), class_probs(g, shape, 1), "none",
            upstream="rand")
        name = f"ce_prob_rank{r}_weight_smooth_{red}_{other}"
        g = gen_for(name)
        add(name, CE, other, randn(g, shape, 2.0), class_probs(g, shape, 1), red,
            weight=uniform(g, (3,), 0.2, 3.0), label_smoothing=0.15)
    name = "ce_rank6_weight_ignore_custom_smooth_mean_f32"
    g = gen_for(name)
    add(name, CE, "f32", randn(g, R6, 2.0), classes(g, index_shape(R6), 3), "mean",
        ignore_index=1, weight=uniform(g, (3,), 0.2, 3.0), label_smoothing=0.2)
    g = gen_for("ce_err_rank6")
    add("ce_err_rank6_kdim_mismatch", CE, "f32", randn(g, R6), classes(g, (2, 2, 1, 2, 3), 3),
        "mean", error=True)

    name = "nll_rank5_mean_f64"
    g = gen_for(name)
    add(name, NLL, "f64", log_probs(g, R5, 1), classes(g, index_shape(R5), 3), "mean")
    name = "nll_rank5_weight_ignore_none_f32"
    g = gen_for(name)
    add(name, NLL, "f32", log_probs(g, R5, 1),
        with_ignored(g, classes(g, index_shape(R5), 3), -100), "none",
        weight=uniform(g, (3,), 0.2, 3.0), upstream="rand")
    name = "nll_rank6_sum_f32"
    g = gen_for(name)
    add(name, NLL, "f32", log_probs(g, R6, 1), classes(g, index_shape(R6), 3), "sum")
    name = "nll_rank6_weight_ignore_custom_mean_f64"
    g = gen_for(name)
    add(name, NLL, "f64", log_probs(g, R6, 1), classes(g, index_shape(R6), 3), "mean",
        ignore_index=2, weight=uniform(g, (3,), 0.2, 3.0))
    name = "nll_rank6_none_f64"
    g = gen_for(name)
    add(name, NLL, "f64", log_probs(g, R6, 1), classes(g, index_shape(R6), 3), "none",
        upstream="rand")
    g = gen_for("nll_err_rank5")
    add("nll_err_rank5_batch_mismatch", NLL, "f64", log_probs(g, R5, 1),
        classes(g, (3, 2, 2, 2), 3), "sum", error=True)

def f32_overflow_cases():
    # f64 cases with logits of 1e200: finite in f64, infinite in f32 (as are the losses). The
    # parity test runs them in f64 and counts them as "not representable in f32" on backends
    # without f64. The largest logit of each row is unique, so that log-sum-exp is exact.
    x = torch.tensor([[1e200, -1e200, 0.0, 1.0], [-1e200, 0.5, 1e200, -3.0],
                      [2.0, -1e200, 3.0, 1e200]], dtype=F64)
    t = torch.tensor([1, 2, 0])
    add("ce_huge_logits_1e200_none_f64", CE, "f64", x, t, "none", upstream="rand")
    add("ce_huge_logits_1e200_mean_f64", CE, "f64", x, t, "mean")
    x = torch.tensor([[1e200, -1e200, 1e200], [-1e200, 0.5, -2.0]], dtype=F64)
    t = torch.tensor([[0.0, 1.0, 0.3], [0.0, 1.0, 0.7]], dtype=F64)
    add("bcel_huge_logits_1e200_none_f64", BCEL, "f64", x, t, "none", upstream="rand")
    add("bcel_huge_logits_1e200_pos_weight_sum_f64", BCEL, "f64", x, t, "sum",
        pos_weight=torch.tensor([2.0, 0.5, 3.0], dtype=F64))

# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------

REQUIRED = ("name", "loss", "dtype", "input", "target", "reduction", "tolerance")
MAX_RANK = 6  # the format's highest rank
KNOWN = set(REQUIRED) | {
    "weight", "pos_weight", "ignore_index", "label_smoothing", "upstream", "expected",
    "expect_error",
}

def check_tensor(t, where, allow_int=False):
    assert isinstance(t, dict), where
    assert set(t) <= {"shape", "data", "kind"}, where
    shape, data = t["shape"], t["data"]
    assert isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape), where
    assert len(shape) <= MAX_RANK, f"{where}: rank {len(shape)} > {MAX_RANK}"
    n = 1
    for d in shape:
        n *= d
    assert len(data) == n, f"{where}: {len(data)} values for shape {shape}"
    for v in data:
        if isinstance(v, str):
            assert v in ("nan", "inf", "-inf"), where
        elif isinstance(v, int) and not isinstance(v, bool):
            assert allow_int, f"{where}: integer in a float tensor"
        else:
            assert isinstance(v, float) and math.isfinite(v), where
    return shape

def validate(path):
    with open(path) as f:
        doc = json.load(f)
    assert set(doc) == {"format", "generator", "cases"}
    assert doc["format"] == "xent-fixtures/1"
    names = set()
    for c in doc["cases"]:
        name = c["name"]
        assert name not in names, f"duplicate name {name}"
        names.add(name)
        assert set(c) <= KNOWN, (name, set(c) - KNOWN)
        for k in REQUIRED:
            assert k in c, (name, k)
        assert c["loss"] in LOSSES and c["dtype"] in ("f32", "f64"), name
        assert c["reduction"] in ("mean", "sum", "none"), name
        in_shape = check_tensor(c["input"], name + ".input")
        kind = c["target"]["kind"]
        assert kind in ("index", "float"), name
        t_shape = check_tensor(c["target"], name + ".target", allow_int=(kind == "index"))
        if kind == "index":
            assert all(isinstance(v, int) for v in c["target"]["data"]), name
        for k in ("weight", "pos_weight", "upstream"):
            if c.get(k) is not None:
                check_tensor(c[k], f"{name}.{k}")
        if "ignore_index" in c:
            assert kind == "index" and isinstance(c["ignore_index"], int), name
        if "label_smoothing" in c:
            assert c["loss"] == "cross_entropy", name
        if c.get("pos_weight") is not None:
            assert c["loss"] == "binary_cross_entropy_with_logits", name
        if c["dtype"] == "f32":  # stored inputs must be exactly representable in f32
            for k in ("input", "target", "weight", "pos_weight", "upstream"):
                if c.get(k) is not None:
                    for v in c[k]["data"]:
                        if isinstance(v, float):
                            f32 = struct.unpack("<f", struct.pack("<f", v))[0]
                            assert f32 == v, f"{name}.{k}: {v!r} is not an f32 value"
        tol = c["tolerance"]
        assert set(tol) == {"rtol", "atol"}, name
        if c.get("expect_error"):
            assert c["expect_error"] is True and "expected" not in c, name
            continue
        assert "expected" in c, name
        exp = c["expected"]
        assert set(exp) in ({"loss", "grad_input"}, {"loss", "grad_input", "grad_target"}), name
        l_shape = check_tensor(exp["loss"], name + ".expected.loss")
        if c["reduction"] != "none":
            assert l_shape == [], name
        if c.get("upstream") is not None:
            assert c["upstream"]["shape"] == l_shape, name
        if exp["grad_input"] is not None:
            assert check_tensor(exp["grad_input"], name + ".expected.grad_input") == in_shape
        if exp.get("grad_target") is not None:
            assert kind == "float", name
            assert check_tensor(exp["grad_target"], name + ".expected.grad_target") == t_shape
        if kind == "float":
            assert t_shape == in_shape, name
    return doc

def overflows_f32(c):
    """Whether a case holds a finite value that becomes infinite in f32 (as the parity test
    checks it: input, float target, weight, pos_weight, upstream, expected values)."""
    tensors = [c.get(k) for k in ("input", "weight", "pos_weight", "upstream")]
    if c["target"]["kind"] == "float":
        tensors.append(c["target"])
    if "expected" in c:
        tensors += [c["expected"][k] for k in ("loss", "grad_input", "grad_target")
                    if k in c["expected"]]
    values = [v for t in tensors if t is not None for v in t["data"] if isinstance(v, float)]
    return bool(values) and bool(torch.tensor(values, dtype=F64).to(torch.float32).isinf().any())

def summary(doc):
    cases = doc["cases"]
    print(f"{doc['generator']}: {len(cases)} cases")
    for loss in LOSSES:
        cs = [c for c in cases if c["loss"] == loss]
        err = sum(1 for c in cs if c.get("expect_error"))
        reds = {r: sum(1 for c in cs if c["reduction"] == r and not c.get("expect_error"))
                for r in RED}
        print(f"  {loss}: {len(cs)} ({err} expect_error; {reds})")
    for dtype in ("f32", "f64"):
        print(f"  {dtype}: {sum(1 for c in cases if c['dtype'] == dtype)}")
    print(f"  expect_error: {sum(1 for c in cases if c.get('expect_error'))}")
    ranks = sorted({len(c["input"]["shape"]) for c in cases})
    print(f"  input ranks: {ranks}")
    print(f"  f64 cases not representable in f32: "
          f"{sum(1 for c in cases if c['dtype'] == 'f64' and overflows_f32(c))}")

def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures",
                                                               "pytorch.json")
    torch.manual_seed(0)
    bce_cases()
    bcel_cases()
    ce_cases()
    nll_cases()
    ignore_255_cases()
    high_rank_cases()
    f32_overflow_cases()
    write(out, CASES)

def write(out, cases):
    """Writes `cases` to `out` (one case per line, so that a diff shows which cases changed),
    then validates the file and prints a summary."""
    version = torch.__version__.split("+")[0]
    doc = {"format": "xent-fixtures/1", "generator": f"torch {version}", "cases": cases}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write('{"format":%s,"generator":%s,"cases":[\n'
                % (json.dumps(doc["format"]), json.dumps(doc["generator"])))
        f.write(",\n".join(json.dumps(c, allow_nan=False, separators=(",", ":"))
                           for c in cases))
        f.write("\n]}\n")
    summary(validate(out))
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")

if __name__ == "__main__":
    main()
