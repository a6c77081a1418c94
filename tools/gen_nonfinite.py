#!/usr/bin/env python3
"""Generate the PyTorch reference fixtures for non-finite inputs.

Usage (from the repository root):

    pip install torch          # CPU is enough
    python tools/gen_nonfinite.py

This writes ``tests/fixtures/pytorch_nonfinite.json``, in the same ``xent-fixtures/1``
format as ``tools/gen_fixtures.py`` (whose helpers it uses, so rounding, seeding and
validation are the same). Every case holds +inf, -inf or NaN somewhere: in the logits, the
log-probabilities, the probabilities' weights, or the float targets; alone, together, in
whole rows, at the target class and away from it; with class weights, ``pos_weight``, label
smoothing and ``ignore_index``; for every reduction, f32 and f64. The expected values are
whatever PyTorch 2.15 returns, NaN and inf included, for the loss, the input gradient and
(for float targets) the target gradient (``expected.grad_target``, burn-xent's extension of
the format).

What PyTorch does there, and burn-xent therefore does too:

* Cross-entropy: ``log_softmax`` subtracts the row's maximum, so a row holding +inf gives
  ``inf - inf = NaN`` in every class, a row of all -inf gives ``-inf - (-inf) = NaN``, and one
  NaN logit makes the whole row NaN. The gradient is ``softmax - target``, NaN in such a row.
  A row that is ignored (``ignore_index``) or has weight 0 still has a NaN gradient when its
  softmax is NaN (``0 * NaN``), but contributes nothing to the loss (the loss only gathers).
* -inf at the target class: loss +inf, gradient finite (``softmax - onehot``).
* Probability targets: ``-sum(t * log_softmax(x))``, so ``t = 0`` at a -inf logit is
  ``0 * -inf = NaN`` in the loss, while the gradient stays finite.
* BCE with logits: ``(1 - t) x - log_sigmoid(x)`` (with ``pos_weight``:
  ``(1 - t) x - (1 + (pw - 1) t) log_sigmoid(x)``), so ``x = +inf`` with ``t = 1`` is
  ``0 * inf = NaN``, and ``x = -inf`` with ``t = 0`` is ``inf - inf = NaN``.
* BCE: the logs are clamped at -100, so only the weights bring inf or NaN in.
"""

import os
import sys

import torch

import gen_fixtures as G
from gen_fixtures import BCE, BCEL, CE, F64, INF, NAN, NLL, RED, add

C = 4
# One row per pattern, a finite row last. With `CE_TARGETS` each row's target class.
CE_ROWS = {
    "inf_and_neginf": [INF, 0.0, -INF, 1.0],
    "two_inf": [INF, INF, 0.0, 1.0],
    "all_neginf": [-INF, -INF, -INF, -INF],
    "nan": [NAN, 0.0, 1.0, 2.0],
    "neginf_at_target": [0.5, -INF, 1.0, 2.0],
    "inf_at_target": [INF, 0.0, 1.0, 2.0],
    "finite": [0.3, -0.2, 1.1, 0.4],
}
CE_TARGETS = {
    "inf_and_neginf": 1,
    "two_inf": 0,
    "all_neginf": 2,
    "nan": 3,
    "neginf_at_target": 1,
    "inf_at_target": 0,
    "finite": 2,
}
WEIGHT = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=F64)


def ce_all_rows():
    x = torch.tensor(list(CE_ROWS.values()), dtype=F64)
    t = torch.tensor(list(CE_TARGETS.values()))
    return x, t


def upstream(red):
    return "rand" if red == "none" else None


def ce_index_cases():
    x, t = ce_all_rows()
    for dtype in ("f32", "f64"):
        for red in RED:
            add(f"nf_ce_rows_{red}_{dtype}", CE, dtype, x, t, red, upstream=upstream(red))
    for red in RED:
        add(f"nf_ce_rows_weight_{red}_f32", CE, "f32", x, t, red, weight=WEIGHT,
            upstream=upstream(red))
        add(f"nf_ce_rows_smooth_{red}_f32", CE, "f32", x, t, red, label_smoothing=0.1,
            upstream=upstream(red))
    add("nf_ce_rows_weight_smooth_none_f64", CE, "f64", x, t, "none", weight=WEIGHT,
        label_smoothing=0.1, upstream="rand")
    # Each pattern beside a finite row, reduced: which patterns poison the mean.
    finite = CE_ROWS["finite"]
    for name, row in CE_ROWS.items():
        if name == "finite":
            continue
        pair = torch.tensor([row, finite], dtype=F64)
        pt = torch.tensor([CE_TARGETS[name], CE_TARGETS["finite"]])
        add(f"nf_ce_{name}_mean_f32", CE, "f32", pair, pt, "mean")
        add(f"nf_ce_{name}_smooth_sum_f64", CE, "f64", pair, pt, "sum", label_smoothing=0.1)
        # The pattern's row ignored: the loss is the finite row's, the gradient of the
        # ignored row is 0 * softmax (NaN where the softmax is).
        it = torch.tensor([-100, CE_TARGETS["finite"]])
        add(f"nf_ce_{name}_ignored_mean_f32", CE, "f32", pair, it, "mean")
        add(f"nf_ce_{name}_ignored_weight_smooth_mean_f64", CE, "f64", pair, it, "mean",
            weight=WEIGHT, label_smoothing=0.1)
    # A zero class weight on the pattern row's target (weight 0, not ignored).
    zw = torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=F64)
    add("nf_ce_rows_zero_weight_sum_f32", CE, "f32", x, t, "sum", weight=zw)
    # ignore_index 255 with every row ignored but the finite one.
    t255 = torch.tensor([255] * (len(CE_ROWS) - 1) + [CE_TARGETS["finite"]])
    add("nf_ce_rows_ignore255_mean_f32", CE, "f32", x, t255, "mean", ignore_index=255)
    # Inf weights: inf * 0 where a row's softmax of the target is 1.
    add("nf_ce_inf_weight_mean_f64", CE, "f64",
        torch.tensor([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 0.0]], dtype=F64),
        torch.tensor([0, 2]), "mean", weight=torch.tensor([INF, 1.0, 1.0, 1.0], dtype=F64))
    # K-dimensional: [N=2, C=4, 4] with the patterns along the spatial dimension.
    rows = list(CE_ROWS.values())
    kx = torch.tensor([rows[0:4], rows[3:7]], dtype=F64).transpose(1, 2).contiguous()
    kt = torch.tensor([[CE_TARGETS[n] for n in list(CE_ROWS)[0:4]],
                       [CE_TARGETS[n] for n in list(CE_ROWS)[3:7]]])
    for red in RED:
        add(f"nf_ce_kdim_{red}_f32", CE, "f32", kx, kt, red, upstream=upstream(red))
    add("nf_ce_kdim_ignored_weight_mean_f64", CE, "f64", kx,
        torch.tensor([[-100, 0, -100, 3], [-100, 1, 0, 2]]), "mean", weight=WEIGHT)


def ce_prob_cases():
    x, _ = ce_all_rows()
    g = G.gen_for("nf_ce_probs")
    t = G.class_probs(g, (len(CE_ROWS), C), 1)
    # A hard row (zeros beside a -inf logit) and a target with its own non-finite values.
    t[0] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=F64)
    for dtype in ("f32", "f64"):
        for red in RED:
            add(f"nf_ce_probs_rows_{red}_{dtype}", CE, dtype, x, t, red, upstream=upstream(red),
                grad_target=True)
    add("nf_ce_probs_rows_weight_smooth_mean_f32", CE, "f32", x, t, "mean", weight=WEIGHT,
        label_smoothing=0.1, grad_target=True)
    finite = torch.tensor([CE_ROWS["finite"]] * 3, dtype=F64)
    bad_t = torch.tensor([[0.5, INF, 0.0, 0.5], [NAN, 0.25, 0.25, 0.5], [0.25, 0.25, -INF, 0.5]],
                         dtype=F64)
    for red in RED:
        add(f"nf_ce_probs_bad_target_{red}_f64", CE, "f64", finite, bad_t, red,
            upstream=upstream(red), grad_target=True)


def nll_cases():
    x = torch.tensor([[-INF, -0.5, -1.0, -2.0], [-0.1, INF, -3.0, -1.0],
                      [NAN, -0.2, -1.0, -0.7], [-0.3, -0.4, -INF, NAN],
                      [-1.0, -1.2, -0.9, -0.6]], dtype=F64)
    t = torch.tensor([0, 1, 0, 1, 3])
    for dtype in ("f32", "f64"):
        for red in RED:
            add(f"nf_nll_{red}_{dtype}", NLL, dtype, x, t, red, upstream=upstream(red))
    add("nf_nll_weight_mean_f32", NLL, "f32", x, t, "mean", weight=WEIGHT)
    add("nf_nll_ignored_mean_f64", NLL, "f64", x, torch.tensor([-100, -100, -100, 1, 3]),
        "mean", weight=WEIGHT)
    add("nf_nll_inf_weight_sum_f32", NLL, "f32", x, t, "sum",
        weight=torch.tensor([1.0, 1.0, INF, NAN], dtype=F64))


def bcel_cases():
    xs = [INF, -INF, NAN, 0.5, -2.0]
    ts = [0.0, 1.0, 0.3]
    x = torch.tensor([[v for v in xs for _ in ts]], dtype=F64).reshape(len(xs), len(ts))
    t = torch.tensor([ts] * len(xs), dtype=F64)
    pw = torch.tensor([2.0, 0.5, 1.0], dtype=F64)
    w = torch.tensor([1.0, 0.5, 2.0], dtype=F64)
    for dtype in ("f32", "f64"):
        for red in RED:
            add(f"nf_bcel_{red}_{dtype}", BCEL, dtype, x, t, red, upstream=upstream(red),
                grad_target=True)
    for red in RED:
        add(f"nf_bcel_pos_weight_{red}_f32", BCEL, "f32", x, t, red, pos_weight=pw,
            upstream=upstream(red), grad_target=True)
    add("nf_bcel_weight_pos_weight_none_f64", BCEL, "f64", x, t, "none", weight=w,
        pos_weight=pw, upstream="rand", grad_target=True)
    # Non-finite targets and weights beside finite logits.
    fx = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -0.5]], dtype=F64)
    ft = torch.tensor([[INF, 0.5, NAN], [-INF, 1.0, 0.0]], dtype=F64)
    add("nf_bcel_bad_target_none_f64", BCEL, "f64", fx, ft, "none", upstream="rand",
        grad_target=True)
    add("nf_bcel_inf_weight_mean_f32", BCEL, "f32", fx, torch.tensor(
        [[1.0, 0.0, 0.5], [0.0, 1.0, 0.2]], dtype=F64), "mean",
        weight=torch.tensor([INF, 1.0, NAN], dtype=F64), grad_target=True)
    add("nf_bcel_inf_pos_weight_sum_f64", BCEL, "f64", fx, torch.tensor(
        [[1.0, 0.0, 0.5], [0.0, 1.0, 0.2]], dtype=F64), "sum",
        pos_weight=torch.tensor([INF, 1.0, 0.0], dtype=F64), grad_target=True)


def bce_cases():
    # Probabilities at the boundaries, where the clamped logs are -100.
    p = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.5, 0.25]], dtype=F64)
    t = torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=F64)
    for red in RED:
        add(f"nf_bce_inf_weight_{red}_f64", BCE, "f64", p, t, red,
            weight=torch.tensor([INF, 1.0, NAN], dtype=F64), upstream=upstream(red),
            grad_target=True)
        add(f"nf_bce_inf_weight_{red}_f32", BCE, "f32", p, t, red,
            weight=torch.tensor([[INF, 1.0, 0.5], [1.0, -INF, 2.0]], dtype=F64),
            upstream=upstream(red), grad_target=True)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        root, "tests", "fixtures", "pytorch_nonfinite.json")
    torch.manual_seed(0)
    ce_index_cases()
    ce_prob_cases()
    nll_cases()
    bcel_cases()
    bce_cases()
    G.write(out, G.CASES)


if __name__ == "__main__":
    main()
