//! The fused loss kernels of the cube backends ([`CubeBackend`], e.g. `burn_wgpu`'s `CubeBackend`
//! on `WgpuRuntime`), written in CubeCL.
//!
//! Every kernel reads its inputs made contiguous ([`into_contiguous`], a no-op for contiguous
//! ones) as flat buffers in the layouts of [`super::kernels`], and works in the float type of
//! the input (`F`) and the int type of the targets (`I`), both picked at run time
//! (`#[define(F, I)]`), so each kernel compiles once per dtype and comptime flag set.
//!
//! - Class losses (cross-entropy and NLL with class indices, cross-entropy with class
//!   probabilities): the forward gives each element (a row of `C` logits at stride `S`) to a
//!   row of `tx` units of a `tx × ty` cube; the row's units stride over its classes with an
//!   online softmax (running max and sum of exponentials, one read of the logits) and merge
//!   their partial results by a tree in shared memory. With `S = 1` a row has up to 256 units
//!   (one row per cube for `C > 128`); with `S > 1`, where consecutive elements are
//!   consecutive in memory, one unit (or 32 for many classes) per element. The
//!   class-index backward is elementwise over `[N, C, S]`; the class-probability backward
//!   reuses the row layout (it needs a sum over each row).
//! - Binary losses: elementwise, with a grid-stride loop in the forward.
//! - Reduced outputs: each forward cube writes one partial sum (of the losses, and of the
//!   target weights for class indices), in a fixed order; one single-cube kernel
//!   ([`finalize_kernel()`]) adds the partials and divides for the mean. Deterministic, no
//!   atomics.
//!
//! WGSL rejects infinite and NaN literals, so no kernel writes one: the online softmax starts
//! from each row's first logit, and the NaN of a mean over zero total weight comes in as a
//! run-time scalar.
//!
//! The caller checks the values (class indices in `[0, C)` or `ignore_index`, probabilities in
//! `[0, 1]`) before the forward ([`Kernels::CHECKS_VALUES`] is false) and never passes empty
//! tensors (Burn 0.21's cube kernels crash on zero-sized buffers).

use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};
use burn::tensor::{DType, Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

use super::kernels::{
    BadValue, BinaryKind, BinaryParams, ClassIndexKind, ClassIndexParams, ClassIndexSaved,
    ClassProbsParams, Kernels, Output, Periodic,
};
use crate::reduction::Reduction;

/// Units per cube of every kernel, and the size of each shared-memory buffer.
const CUBE_UNITS: u32 = 256;
/// The most cubes a grid-stride forward launches (each writes one partial sum).
const MAX_FORWARD_CUBES: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Device helpers
// ---------------------------------------------------------------------------------------------

/// `log(1 + exp(-|x|))`, accurate for large `|x|` (Goldberg's `log1p`: WGSL's `log1p` is
/// `log(1 + y)`, which rounds `y < 2⁻²⁴` away).
#[cube]
fn log1p_exp_neg_abs<F: Float>(x: F) -> F {
    let y = (-x.abs()).exp();
    let u = F::new(1.0) + y;
    let mut out = y;
    if u != F::new(1.0) {
        out = u.ln() * (y / (u - F::new(1.0)));
    }
    out
}

/// `softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))`.
#[cube]
fn softplus<F: Float>(x: F) -> F {
    x.max(F::new(0.0)) + log1p_exp_neg_abs::<F>(x)
}

/// `max(log(p), -100)`, PyTorch's clamped log of BCE, without evaluating `log(0)` (undefined
/// in SPIR-V and WGSL).
#[cube]
fn clamped_ln<F: Float>(p: F) -> F {
    let floor = F::new(-100.0);
    let mut out = floor;
    if p > F::new(0.0) {
        out = p.ln().max(floor);
    }
    out
}

/// The class of a target, or `classes` for an ignored one: an index outside `[0, C)` (as `u32`
/// a negative one is at least `2³¹`) or equal to `ignore` (`u32::MAX` when `ignore_index` lies
/// outside `[0, C)`).
#[cube]
fn target_class<I: Numeric>(t: I, classes: usize, ignore: u32) -> usize {
    let tu = u32::cast_from(t);
    let mut class = classes;
    if (tu as usize) < classes && tu != ignore {
        class = tu as usize;
    }
    class
}

/// `x`, with `-inf` raised to `lowest` (the lowest finite value) and NaN kept (`max` would
/// drop it).
#[cube]
fn finite_or_nan<F: Float>(x: F, lowest: F) -> F {
    let mut out = x;
    if x < lowest {
        out = lowest;
    }
    out
}

/// Merges the online-softmax states (running max `m`, sum of `exp(x - m)`) of units `unit` and
/// `other` into `unit`.
#[cube]
fn merge_softmax<F: Float>(
    max: &mut SharedMemory<F>,
    sum: &mut SharedMemory<F>,
    unit: usize,
    other: usize,
) {
    let m1 = max[unit];
    let m2 = max[other];
    if m1 == m2 {
        // Also when both are infinite, where `m1 - m` would be NaN.
        let other_sum = sum[other];
        sum[unit] += other_sum;
    } else {
        let m = m1.max(m2);
        sum[unit] = sum[unit] * (m1 - m).exp() + sum[other] * (m2 - m).exp();
        max[unit] = m;
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------------

/// Class-index forward (cross-entropy when `ce`, NLL otherwise) over `elements = N × S` rows.
///
/// Writes `log_sum_exp[i]` (cross-entropy), `loss[i]` (per element) or the cube's sum of the
/// losses to `loss[CUBE_POS]` (`reduced`), and the cube's sum of the target weights to
/// `partial_weight[CUBE_POS]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn class_index_forward_kernel<F: Float, I: Numeric>(
    input: &Tensor<F>,
    target: &Tensor<I>,
    weight: &Tensor<F>,
    loss: &mut Tensor<F>,
    log_sum_exp: &mut Tensor<F>,
    partial_weight: &mut Tensor<F>,
    classes: u32,
    spatial: u32,
    elements: u32,
    ignore: u32,
    one_minus_eps: InputScalar,
    eps_over_c: InputScalar,
    lowest: InputScalar,
    #[comptime] ce: bool,
    #[comptime] weighted: bool,
    #[comptime] smoothing: bool,
    #[comptime] reduced: bool,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let tx = CUBE_DIM_X as usize;
    let ty = CUBE_DIM_Y as usize;
    let ux = UNIT_POS_X as usize;
    let uy = UNIT_POS_Y as usize;
    let unit = uy * tx + ux;
    let row = uy * tx;
    let c_count = classes as usize;
    let s_count = spatial as usize;
    let m = elements as usize;
    let one_minus_eps = one_minus_eps.get::<F>();
    let eps_over_c = eps_over_c.get::<F>();
    let lowest = lowest.get::<F>();

    let mut sh_max = SharedMemory::<F>::new(256usize);
    let mut sh_sum = SharedMemory::<F>::new(256usize);
    let mut sh_wx = SharedMemory::<F>::new(256usize);
    let mut sh_w = SharedMemory::<F>::new(256usize);

    let mut acc_loss = F::new(0.0);
    let mut acc_weight = F::new(0.0);

    let blocks = m.div_ceil(ty);
    let mut block = CUBE_POS;
    while block < blocks {
        let i = block * ty + uy;
        let valid = i < m;
        let mut ii = 0usize;
        if valid {
            ii = i;
        }
        let n = ii / s_count;
        let s = ii % s_count;
        let base = n * c_count * s_count + s;

        if ce {
            // Online softmax over this unit's classes, from the row's first logit `x0`; the
            // smoothing sum is taken relative to `x0`, so large logits do not cancel.
            // The softmax state never holds an infinity: `-inf` logits count as the lowest
            // finite value (their exponential is 0 all the same), so no `inf - inf` arises.
            let x0 = finite_or_nan::<F>(input[base], lowest);
            let mut mx = x0;
            let mut se = F::new(0.0);
            let mut swx = F::new(0.0);
            let mut sw = F::new(0.0);
            let mut c = ux;
            while c < c_count {
                let raw = input[base + c * s_count];
                let x = finite_or_nan::<F>(raw, lowest);
                if x == mx {
                    // exp(0), exactly.
                    se += F::new(1.0);
                } else if x > mx {
                    se = se * (mx - x).exp() + F::new(1.0);
                    mx = x;
                } else {
                    se += (x - mx).exp();
                }
                if smoothing {
                    if weighted {
                        let w = weight[c];
                        swx += w * (raw - x0);
                        sw += w;
                    } else {
                        swx += raw - x0;
                        sw += F::new(1.0);
                    }
                }
                c += tx;
            }
            sh_max[unit] = mx;
            sh_sum[unit] = se;
            if smoothing {
                sh_wx[unit] = swx;
                sh_w[unit] = sw;
            }
            sync_cube();

            let mut stride = tx / 2;
            while stride > 0 {
                if ux < stride {
                    merge_softmax::<F>(&mut sh_max, &mut sh_sum, unit, unit + stride);
                    if smoothing {
                        let other = sh_wx[unit + stride];
                        sh_wx[unit] += other;
                        let other = sh_w[unit + stride];
                        sh_w[unit] += other;
                    }
                }
                sync_cube();
                stride /= 2;
            }

            if ux == 0 && valid {
                // The log-sum-exp in two parts, `max + ln(sum)`: `x - max` is exact.
                let row_max = sh_max[row];
                let log_sum = sh_sum[row].ln();
                log_sum_exp[i] = row_max;
                log_sum_exp[m + i] = log_sum;
                let class = target_class::<I>(target[i], c_count, ignore);
                let mut li = F::new(0.0);
                let mut wt = F::new(0.0);
                if class < c_count {
                    if weighted {
                        wt = weight[class];
                    } else {
                        wt = F::new(1.0);
                    }
                    li = one_minus_eps * wt * ((row_max - input[base + class * s_count]) + log_sum);
                    if smoothing {
                        // Σ_c w_c (lse - x_c), with the sum of w_c (x_c - x0) from above.
                        li += eps_over_c * (sh_w[row] * ((row_max - x0) + log_sum) - sh_wx[row]);
                    }
                }
                if reduced {
                    acc_loss += li;
                } else {
                    loss[i] = li;
                }
                acc_weight += wt;
            }
            // The next block overwrites the shared memory.
            sync_cube();
        } else if ux == 0 && valid {
            let class = target_class::<I>(target[i], c_count, ignore);
            let mut li = F::new(0.0);
            let mut wt = F::new(0.0);
            if class < c_count {
                if weighted {
                    wt = weight[class];
                } else {
                    wt = F::new(1.0);
                }
                li = -(wt * input[base + class * s_count]);
            }
            if reduced {
                acc_loss += li;
            } else {
                loss[i] = li;
            }
            acc_weight += wt;
        }
        block += CUBE_COUNT;
    }

    // The cube's partial sums, in a fixed order.
    if ux == 0 {
        sh_max[uy] = acc_loss;
        sh_sum[uy] = acc_weight;
    }
    sync_cube();
    if unit == 0 {
        let mut total_loss = F::new(0.0);
        let mut total_weight = F::new(0.0);
        for y in 0..ty {
            total_loss += sh_max[y];
            total_weight += sh_sum[y];
        }
        partial_weight[CUBE_POS] = total_weight;
        if reduced {
            loss[CUBE_POS] = total_loss;
        }
    }
}

/// Class-index input gradient, one unit per element of `[N, C, S]`.
///
/// `mode`: 0 per element (`grad[i]`), 1 sum (`grad[0]`), 2 mean (`grad[0] / total_weight[0]`).
/// `weight_sum[0]` is `Σ_c w_c` (read only for weighted label smoothing).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn class_index_backward_kernel<F: Float, I: Numeric>(
    input: &Tensor<F>,
    target: &Tensor<I>,
    weight: &Tensor<F>,
    log_sum_exp: &Tensor<F>,
    grad: &Tensor<F>,
    total_weight: &Tensor<F>,
    weight_sum: &Tensor<F>,
    out: &mut Tensor<F>,
    classes: u32,
    spatial: u32,
    ignore: u32,
    one_minus_eps: InputScalar,
    eps_over_c: InputScalar,
    zero: InputScalar,
    #[comptime] ce: bool,
    #[comptime] weighted: bool,
    #[comptime] smoothing: bool,
    #[comptime] mode: u32,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let c_count = classes as usize;
    let s_count = spatial as usize;
    let c = (pos / s_count) % c_count;
    let i = (pos / (c_count * s_count)) * s_count + pos % s_count;

    let class = target_class::<I>(target[i], c_count, ignore);
    let mut d = F::new(0.0);
    let mut p = F::new(0.0);
    if ce {
        // The saved log-sum-exp: each element's max, then `ln Σ exp(x - max)`.
        let elements = log_sum_exp.len() / 2;
        p = ((input[pos] - log_sum_exp[i]) - log_sum_exp[elements + i]).exp();
    }
    if ce && class >= c_count {
        // An ignored target: PyTorch's log_softmax backward of a zero gradient, `0 · p`
        // (NaN where the row holds a NaN).
        // `zero` is a run-time 0 that no compiler folds `p · 0` with.
        d = p * zero.get::<F>();
    }
    if class < c_count {
        let mut g = grad[0];
        if mode == 0 {
            g = grad[i];
        }
        if mode == 2 {
            g /= total_weight[0];
        }
        let mut wt = F::new(1.0);
        if weighted {
            wt = weight[class];
        }
        if ce {
            let one_minus_eps = one_minus_eps.get::<F>();
            let mut coef = one_minus_eps * wt;
            let mut v = F::new(0.0);
            if smoothing {
                let eps_over_c = eps_over_c.get::<F>();
                if weighted {
                    coef += eps_over_c * weight_sum[0];
                    v = -(eps_over_c * weight[c]);
                } else {
                    coef += eps_over_c * F::cast_from(classes);
                    v = -eps_over_c;
                }
            }
            v += p * coef;
            if c == class {
                v -= one_minus_eps * wt;
            }
            d = g * v;
        } else if c == class {
            d = -(g * wt);
        }
    }
    out[pos] = d;
}

/// NLL input gradient, one unit per element `i` of `[N, S]`: writes `-g_i w[t_i]` at the
/// target class into `out`, which the caller zero-filled (ignored elements write nothing).
///
/// `mode` as in [`class_index_backward_kernel()`].
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn nll_backward_scatter_kernel<F: Float, I: Numeric>(
    target: &Tensor<I>,
    weight: &Tensor<F>,
    grad: &Tensor<F>,
    total_weight: &Tensor<F>,
    out: &mut Tensor<F>,
    classes: u32,
    spatial: u32,
    ignore: u32,
    #[comptime] weighted: bool,
    #[comptime] mode: u32,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let i = ABSOLUTE_POS;
    if i >= target.len() {
        terminate!();
    }
    let c_count = classes as usize;
    let s_count = spatial as usize;
    let class = target_class::<I>(target[i], c_count, ignore);
    if class < c_count {
        let mut g = grad[0];
        if mode == 0 {
            g = grad[i];
        }
        if mode == 2 {
            g /= total_weight[0];
        }
        let mut wt = F::new(1.0);
        if weighted {
            wt = weight[class];
        }
        let n = i / s_count;
        let s = i % s_count;
        out[(n * c_count + class) * s_count + s] = -(g * wt);
    }
}

/// Class-probability forward: per row, `lse = log Σ exp(x)`,
/// `loss = lse Σ_c w_c q_c - Σ_c w_c q_c x_c` with `q = (1 - ε) y + ε / C`.
///
/// Writes `log_sum_exp[i]` and `loss[i]` (per element) or the cube's sum of the losses to
/// `loss[CUBE_POS]` (`reduced`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn class_probs_forward_kernel<F: Float>(
    input: &Tensor<F>,
    target: &Tensor<F>,
    weight: &Tensor<F>,
    loss: &mut Tensor<F>,
    log_sum_exp: &mut Tensor<F>,
    classes: u32,
    spatial: u32,
    elements: u32,
    one_minus_eps: InputScalar,
    eps_over_c: InputScalar,
    lowest: InputScalar,
    #[comptime] weighted: bool,
    #[comptime] reduced: bool,
    #[define(F)] _dtype: StorageType,
) {
    let tx = CUBE_DIM_X as usize;
    let ty = CUBE_DIM_Y as usize;
    let ux = UNIT_POS_X as usize;
    let uy = UNIT_POS_Y as usize;
    let unit = uy * tx + ux;
    let row = uy * tx;
    let c_count = classes as usize;
    let s_count = spatial as usize;
    let m = elements as usize;
    let one_minus_eps = one_minus_eps.get::<F>();
    let eps_over_c = eps_over_c.get::<F>();
    let lowest = lowest.get::<F>();

    let mut sh_max = SharedMemory::<F>::new(256usize);
    let mut sh_sum = SharedMemory::<F>::new(256usize);
    let mut sh_wq = SharedMemory::<F>::new(256usize);
    let mut sh_wqx = SharedMemory::<F>::new(256usize);

    let mut acc_loss = F::new(0.0);

    let blocks = m.div_ceil(ty);
    let mut block = CUBE_POS;
    while block < blocks {
        let i = block * ty + uy;
        let valid = i < m;
        let mut ii = 0usize;
        if valid {
            ii = i;
        }
        let n = ii / s_count;
        let s = ii % s_count;
        let base = n * c_count * s_count + s;

        // Sums relative to the row's first logit `x0`, so large logits do not cancel.
        // `-inf` logits count as the lowest finite value in the softmax state (see the
        // class-index forward).
        let x0 = finite_or_nan::<F>(input[base], lowest);
        let mut mx = x0;
        let mut se = F::new(0.0);
        let mut swq = F::new(0.0);
        let mut swqx = F::new(0.0);
        let mut c = ux;
        while c < c_count {
            let at = base + c * s_count;
            let raw = input[at];
            let x = finite_or_nan::<F>(raw, lowest);
            if x == mx {
                // exp(0), exactly.
                se += F::new(1.0);
            } else if x > mx {
                se = se * (mx - x).exp() + F::new(1.0);
                mx = x;
            } else {
                se += (x - mx).exp();
            }
            let mut wq = one_minus_eps * target[at] + eps_over_c;
            if weighted {
                wq *= weight[c];
            }
            swq += wq;
            swqx += wq * (raw - x0);
            c += tx;
        }
        sh_max[unit] = mx;
        sh_sum[unit] = se;
        sh_wq[unit] = swq;
        sh_wqx[unit] = swqx;
        sync_cube();

        let mut stride = tx / 2;
        while stride > 0 {
            if ux < stride {
                merge_softmax::<F>(&mut sh_max, &mut sh_sum, unit, unit + stride);
                let other = sh_wq[unit + stride];
                sh_wq[unit] += other;
                let other = sh_wqx[unit + stride];
                sh_wqx[unit] += other;
            }
            sync_cube();
            stride /= 2;
        }

        if ux == 0 && valid {
            let row_max = sh_max[row];
            let log_sum = sh_sum[row].ln();
            log_sum_exp[i] = row_max;
            log_sum_exp[m + i] = log_sum;
            // Σ_c w_c q_c (lse - x_c), lse = row_max + log_sum.
            let li = ((row_max - x0) + log_sum) * sh_wq[row] - sh_wqx[row];
            if reduced {
                acc_loss += li;
            } else {
                loss[i] = li;
            }
        }
        sync_cube();
        block += CUBE_COUNT;
    }

    if reduced {
        if ux == 0 {
            sh_max[uy] = acc_loss;
        }
        sync_cube();
        if unit == 0 {
            let mut total = F::new(0.0);
            for y in 0..ty {
                total += sh_max[y];
            }
            loss[CUBE_POS] = total;
        }
    }
}

/// Class-probability gradients, rows laid out as in [`class_probs_forward_kernel()`]:
/// `dx_c = g (p_c Σ_k w_k q_k - w_c q_c)`, `dy_c = g (1 - ε) w_c (lse - x_c)`.
///
/// `mode`: 0 per element (`grad[i]`), 1 sum (`grad[0]`), 2 mean (`grad[0] / (N S)`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn class_probs_backward_kernel<F: Float>(
    input: &Tensor<F>,
    target: &Tensor<F>,
    weight: &Tensor<F>,
    log_sum_exp: &Tensor<F>,
    grad: &Tensor<F>,
    grad_input: &mut Tensor<F>,
    grad_target: &mut Tensor<F>,
    classes: u32,
    spatial: u32,
    elements: u32,
    one_minus_eps: InputScalar,
    eps_over_c: InputScalar,
    #[comptime] weighted: bool,
    #[comptime] mode: u32,
    #[comptime] want_input: bool,
    #[comptime] want_target: bool,
    #[define(F)] _dtype: StorageType,
) {
    let tx = CUBE_DIM_X as usize;
    let ty = CUBE_DIM_Y as usize;
    let ux = UNIT_POS_X as usize;
    let uy = UNIT_POS_Y as usize;
    let unit = uy * tx + ux;
    let row = uy * tx;
    let c_count = classes as usize;
    let s_count = spatial as usize;
    let m = elements as usize;
    let one_minus_eps = one_minus_eps.get::<F>();
    let eps_over_c = eps_over_c.get::<F>();

    let mut sh_wq = SharedMemory::<F>::new(256usize);

    let blocks = m.div_ceil(ty);
    let mut block = CUBE_POS;
    while block < blocks {
        let i = block * ty + uy;
        let valid = i < m;
        let mut ii = 0usize;
        if valid {
            ii = i;
        }
        let n = ii / s_count;
        let s = ii % s_count;
        let base = n * c_count * s_count + s;

        let mut g = grad[0];
        if mode == 0 {
            g = grad[ii];
        }
        if mode == 2 {
            g /= F::cast_from(elements);
        }
        let row_max = log_sum_exp[ii];
        let log_sum = log_sum_exp[m + ii];

        if want_input {
            let mut swq = F::new(0.0);
            let mut c = ux;
            while c < c_count {
                let mut wq = one_minus_eps * target[base + c * s_count] + eps_over_c;
                if weighted {
                    wq *= weight[c];
                }
                swq += wq;
                c += tx;
            }
            sh_wq[unit] = swq;
            sync_cube();
            let mut stride = tx / 2;
            while stride > 0 {
                if ux < stride {
                    let other = sh_wq[unit + stride];
                    sh_wq[unit] += other;
                }
                sync_cube();
                stride /= 2;
            }
            let total_wq = sh_wq[row];
            // Every unit has read the sum before the next block overwrites it.
            sync_cube();
            if valid {
                let mut c = ux;
                while c < c_count {
                    let at = base + c * s_count;
                    let mut wq = one_minus_eps * target[at] + eps_over_c;
                    if weighted {
                        wq *= weight[c];
                    }
                    let p = ((input[at] - row_max) - log_sum).exp();
                    grad_input[at] = g * (p * total_wq - wq);
                    c += tx;
                }
            }
        }
        if want_target && valid {
            let mut c = ux;
            while c < c_count {
                let at = base + c * s_count;
                let mut v = g * one_minus_eps * ((row_max - input[at]) + log_sum);
                if weighted {
                    v *= weight[c];
                }
                grad_target[at] = v;
                c += tx;
            }
        }
        block += CUBE_COUNT;
    }
}

/// Binary forward, grid-stride over `len` elements: `loss[i]`, or the cube's sum of the
/// losses in `loss[CUBE_POS]` (`reduced`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn binary_forward_kernel<F: Float>(
    input: &Tensor<F>,
    target: &Tensor<F>,
    weight: &Tensor<F>,
    pos_weight: &Tensor<F>,
    loss: &mut Tensor<F>,
    len: u32,
    weight_period: u32,
    pos_weight_period: u32,
    #[comptime] logits: bool,
    #[comptime] weighted: bool,
    #[comptime] pos_weighted: bool,
    #[comptime] reduced: bool,
    #[define(F)] _dtype: StorageType,
) {
    let l = len as usize;
    let unit = UNIT_POS_X as usize;
    let step = CUBE_COUNT * CUBE_DIM_X as usize;
    let mut acc = F::new(0.0);
    let mut i = CUBE_POS * CUBE_DIM_X as usize + unit;
    while i < l {
        let x = input[i];
        let t = target[i];
        let mut li = if logits {
            let mut pos = t * softplus::<F>(-x);
            if pos_weighted {
                pos *= pos_weight[i % pos_weight_period as usize];
            }
            (F::new(1.0) - t) * softplus::<F>(x) + pos
        } else {
            -(t * clamped_ln::<F>(x) + (F::new(1.0) - t) * clamped_ln::<F>(F::new(1.0) - x))
        };
        if weighted {
            li *= weight[i % weight_period as usize];
        }
        if reduced {
            acc += li;
        } else {
            loss[i] = li;
        }
        i += step;
    }

    if reduced {
        let mut sh = SharedMemory::<F>::new(256usize);
        sh[unit] = acc;
        sync_cube();
        let mut stride = CUBE_DIM_X as usize / 2;
        while stride > 0 {
            if unit < stride {
                let other = sh[unit + stride];
                sh[unit] += other;
            }
            sync_cube();
            stride /= 2;
        }
        if unit == 0 {
            loss[CUBE_POS] = sh[0];
        }
    }
}

/// Binary gradients, one unit per element. `mode`: 0 per element (`grad[i]`), 1 sum
/// (`grad[0]`), 2 mean (`grad[0] / len`).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn binary_backward_kernel<F: Float>(
    input: &Tensor<F>,
    target: &Tensor<F>,
    weight: &Tensor<F>,
    pos_weight: &Tensor<F>,
    grad: &Tensor<F>,
    grad_input: &mut Tensor<F>,
    grad_target: &mut Tensor<F>,
    len: u32,
    weight_period: u32,
    pos_weight_period: u32,
    #[comptime] logits: bool,
    #[comptime] weighted: bool,
    #[comptime] pos_weighted: bool,
    #[comptime] mode: u32,
    #[comptime] want_input: bool,
    #[comptime] want_target: bool,
    #[define(F)] _dtype: StorageType,
) {
    let i = ABSOLUTE_POS;
    if i >= len as usize {
        terminate!();
    }
    let x = input[i];
    let t = target[i];
    let mut g = grad[0];
    if mode == 0 {
        g = grad[i];
    }
    if mode == 2 {
        g /= F::cast_from(len);
    }
    if weighted {
        g *= weight[i % weight_period as usize];
    }
    if logits {
        let mut pw = F::new(1.0);
        if pos_weighted {
            pw = pos_weight[i % pos_weight_period as usize];
        }
        let sp_pos = softplus::<F>(x);
        let sp_neg = softplus::<F>(-x);
        if want_input {
            // σ(x) = exp(-softplus(-x)), σ(-x) = exp(-softplus(x)).
            let sig_pos = (-sp_neg).exp();
            let sig_neg = (-sp_pos).exp();
            grad_input[i] = g * ((F::new(1.0) - t) * sig_pos - pw * t * sig_neg);
        }
        if want_target {
            grad_target[i] = g * (pw * sp_neg - sp_pos);
        }
    } else {
        if want_input {
            let denom = (x * (F::new(1.0) - x)).max(F::new(1e-12));
            grad_input[i] = g * (x - t) / denom;
        }
        if want_target {
            grad_target[i] = g * (clamped_ln::<F>(F::new(1.0) - x) - clamped_ln::<F>(x));
        }
    }
}

/// Adds the forward cubes' partial sums in one cube and writes the reduced outputs.
///
/// `mode`: 0 total weight only; 1 loss sum and total weight; 2 loss sum / total weight (NaN,
/// from the scalar `nan`, for `0 / 0`) and total weight; 3 loss sum only; 4 loss sum /
/// `divisor` only.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn finalize_kernel<F: Float>(
    partial_loss: &Tensor<F>,
    partial_weight: &Tensor<F>,
    loss: &mut Tensor<F>,
    total_weight: &mut Tensor<F>,
    count: u32,
    divisor: InputScalar,
    nan: InputScalar,
    #[comptime] mode: u32,
    #[define(F)] _dtype: StorageType,
) {
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let p = count as usize;
    let with_loss = mode != 0;
    let with_weight = mode <= 2;
    let mut sh_loss = SharedMemory::<F>::new(256usize);
    let mut sh_weight = SharedMemory::<F>::new(256usize);
    let mut acc_loss = F::new(0.0);
    let mut acc_weight = F::new(0.0);
    let mut k = unit;
    while k < p {
        if with_loss {
            acc_loss += partial_loss[k];
        }
        if with_weight {
            acc_weight += partial_weight[k];
        }
        k += units;
    }
    sh_loss[unit] = acc_loss;
    sh_weight[unit] = acc_weight;
    sync_cube();
    let mut stride = units / 2;
    while stride > 0 {
        if unit < stride {
            let other = sh_loss[unit + stride];
            sh_loss[unit] += other;
            let other = sh_weight[unit + stride];
            sh_weight[unit] += other;
        }
        sync_cube();
        stride /= 2;
    }
    if unit == 0 {
        let sum = sh_loss[0];
        let tw = sh_weight[0];
        if with_weight {
            total_weight[0] = tw;
        }
        if mode == 1 || mode == 3 {
            loss[0] = sum;
        }
        if mode == 2 {
            let mut mean = sum / tw;
            if tw == F::new(0.0) && sum == F::new(0.0) {
                mean = nan.get::<F>();
            }
            loss[0] = mean;
        }
        if mode == 4 {
            loss[0] = sum / divisor.get::<F>();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------

/// Whether the cube kernels cover a class-index op: sizes within `u32` (the kernels' scalar
/// arguments), an `ignore_index` within `i32` (targets are compared as `u32`), no in-kernel
/// value checks.
pub(super) fn covers_class_index(params: &ClassIndexParams) -> bool {
    !params.check_values
        && fits_u32(params.batch * params.classes * params.spatial)
        && i32::try_from(params.ignore_index).is_ok()
}

/// Whether the cube kernels cover a class-probability op (sizes within `u32`).
pub(super) fn covers_class_probs(params: &ClassProbsParams) -> bool {
    fits_u32(params.batch * params.classes * params.spatial)
}

/// Whether the cube kernels cover a binary op: sizes within `u32`, non-zero periods, no
/// positive weight for BCE on probabilities, no in-kernel value checks.
pub(super) fn covers_binary<T>(
    params: &BinaryParams,
    weight: Option<&Periodic<T>>,
    pos_weight: Option<&Periodic<T>>,
) -> bool
where
    T: burn::tensor::backend::Backend,
{
    !params.check_values
        && fits_u32(params.len)
        && weight.is_none_or(|w| w.period > 0 && fits_u32(w.period))
        && pos_weight.is_none_or(|w| w.period > 0 && fits_u32(w.period))
        && (params.kind == BinaryKind::WithLogits || pos_weight.is_none())
}

fn fits_u32(n: usize) -> bool {
    u32::try_from(n).is_ok()
}

/// The `(tx, ty)` units of a row kernel's cube: `tx` units per row (a power of two, at most
/// [`CUBE_UNITS`]), `ty = CUBE_UNITS / tx` rows per cube.
fn row_layout(classes: usize) -> (u32, u32) {
    // One unit per row for up to 32 classes, one 32-unit row (a warp on most GPUs) above:
    // few barriers per row, which also keeps lavapipe (where each barrier switches between
    // a workgroup's invocations on one CPU thread) fast.
    let tx = if classes <= 32 { 1 } else { 32 };
    (tx, CUBE_UNITS / tx)
}

/// The cube count of a grid-stride forward over `blocks` blocks of work.
fn forward_cubes(blocks: usize) -> u32 {
    blocks.clamp(1, MAX_FORWARD_CUBES) as u32
}

/// An uninitialized tensor on `like`'s device.
fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape, dtype: DType) -> CubeTensor<R> {
    empty_device_dtype(like.client.clone(), like.device.clone(), shape, dtype)
}

/// A one-element placeholder for an argument a comptime flag leaves unread or unwritten.
fn dummy<R: CubeRuntime>(like: &CubeTensor<R>) -> CubeTensor<R> {
    empty_like(like, Shape::new([1]), like.dtype)
}

/// `ignore_index` as the kernels compare it (see `target_class`).
fn ignore_u32(ignore_index: i64, classes: usize) -> u32 {
    if ignore_index >= 0 && (ignore_index as u64) < classes as u64 {
        ignore_index as u32
    } else {
        u32::MAX
    }
}

/// The reduction mode of a backward kernel.
fn grad_mode(output: Output) -> u32 {
    match output {
        Output::PerElement => 0,
        Output::Reduced(Reduction::Sum) => 1,
        Output::Reduced(Reduction::Mean) => 2,
    }
}

/// The lowest finite value of `dtype`: the forward kernels' stand-in for `-inf` logits.
fn lowest(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::MIN,
        DType::F16 => -65504.0,
        DType::BF16 => -3.389_531_4e38,
        _ => f32::MIN as f64,
    }
}

fn scalar<R: CubeRuntime>(value: f64, like: &CubeTensor<R>) -> InputScalar {
    InputScalar::new(value, like.dtype)
}

/// Launches [`finalize_kernel()`] (one cube) over `count` partial sums.
#[allow(clippy::too_many_arguments)]
fn finalize<R: CubeRuntime>(
    like: &CubeTensor<R>,
    partial_loss: CubeTensor<R>,
    partial_weight: CubeTensor<R>,
    loss: CubeTensor<R>,
    total_weight: CubeTensor<R>,
    count: u32,
    divisor: f64,
    mode: u32,
) {
    finalize_kernel::launch::<R>(
        &like.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(CUBE_UNITS),
        partial_loss.into_tensor_arg(),
        partial_weight.into_tensor_arg(),
        loss.into_tensor_arg(),
        total_weight.into_tensor_arg(),
        count,
        scalar(divisor, like),
        scalar(f64::NAN, like),
        mode,
        like.dtype.into(),
    );
}

/// What [`class_index_forward`] returns: the loss and what the backward needs (see
/// [`ClassIndexSaved`]).
pub(super) struct ClassIndexOutputs<R: CubeRuntime> {
    pub loss: CubeTensor<R>,
    pub log_sum_exp: Option<CubeTensor<R>>,
    pub total_weight: CubeTensor<R>,
}

/// The class-index forward on cube tensors (see [`Kernels::class_index_forward`]).
pub(super) fn class_index_forward<R: CubeRuntime>(
    input: &CubeTensor<R>,
    target: &CubeTensor<R>,
    weight: Option<&CubeTensor<R>>,
    params: &ClassIndexParams,
) -> Option<ClassIndexOutputs<R>> {
    if !covers_class_index(params) {
        return None;
    }
    let input = into_contiguous(input.clone());
    let target = into_contiguous(target.clone());
    let dtype = input.dtype;
    let elements = params.batch * params.spatial;
    let ce = params.kind == ClassIndexKind::CrossEntropy;
    let eps = if ce { params.label_smoothing } else { 0.0 };
    let smoothing = eps > 0.0;
    let reduced = params.output != Output::PerElement;

    let (tx, ty) = if ce {
        row_layout(params.classes)
    } else {
        (1, CUBE_UNITS)
    };
    let cubes = forward_cubes(elements.div_ceil(ty as usize));

    let weight_arg = match weight {
        Some(w) => into_contiguous(w.clone()),
        None => dummy(&input),
    };
    let loss = if reduced {
        empty_like(&input, Shape::new([cubes as usize]), dtype)
    } else {
        empty_like(&input, Shape::new([elements]), dtype)
    };
    let log_sum_exp = if ce {
        empty_like(&input, Shape::new([2 * elements]), dtype)
    } else {
        dummy(&input)
    };
    let partial_weight = empty_like(&input, Shape::new([cubes as usize]), dtype);

    class_index_forward_kernel::launch::<R>(
        &input.client,
        CubeCount::Static(cubes, 1, 1),
        CubeDim::new_2d(tx, ty),
        input.clone().into_tensor_arg(),
        target.clone().into_tensor_arg(),
        weight_arg.into_tensor_arg(),
        loss.clone().into_tensor_arg(),
        log_sum_exp.clone().into_tensor_arg(),
        partial_weight.clone().into_tensor_arg(),
        params.classes as u32,
        params.spatial as u32,
        elements as u32,
        ignore_u32(params.ignore_index, params.classes),
        scalar(1.0 - eps, &input),
        scalar(eps / params.classes as f64, &input),
        scalar(lowest(dtype), &input),
        ce,
        weight.is_some(),
        smoothing,
        reduced,
        [dtype.into(), target.dtype.into()],
    );

    let total_weight = empty_like(&input, Shape::new([1]), dtype);
    let (loss, mode) = match params.output {
        Output::PerElement => (loss, 0),
        Output::Reduced(reduction) => {
            let out = empty_like(&input, Shape::new([1]), dtype);
            let mode = if reduction == Reduction::Sum { 1 } else { 2 };
            finalize(
                &input,
                loss,
                partial_weight.clone(),
                out.clone(),
                total_weight.clone(),
                cubes,
                1.0,
                mode,
            );
            (out, mode)
        }
    };
    if mode == 0 {
        finalize(
            &input,
            dummy(&input),
            partial_weight,
            dummy(&input),
            total_weight.clone(),
            cubes,
            1.0,
            0,
        );
    }
    Some(ClassIndexOutputs {
        loss,
        log_sum_exp: ce.then_some(log_sum_exp),
        total_weight,
    })
}

/// The class-index input gradient on cube tensors (see [`Kernels::class_index_backward`]);
/// `weight_sum` sums the class weights (`[C]` to `[1]`) for weighted label smoothing.
#[allow(clippy::too_many_arguments)]
pub(super) fn class_index_backward<R: CubeRuntime>(
    input: &CubeTensor<R>,
    target: &CubeTensor<R>,
    weight: Option<&CubeTensor<R>>,
    params: &ClassIndexParams,
    log_sum_exp: Option<&CubeTensor<R>>,
    total_weight: &CubeTensor<R>,
    grad: CubeTensor<R>,
    weight_sum: impl FnOnce(&CubeTensor<R>) -> CubeTensor<R>,
) -> CubeTensor<R> {
    let input = into_contiguous(input.clone());
    let target = into_contiguous(target.clone());
    let grad = into_contiguous(grad);
    let ce = params.kind == ClassIndexKind::CrossEntropy;
    let eps = if ce { params.label_smoothing } else { 0.0 };
    let smoothing = eps > 0.0;
    let weight = weight.map(|w| into_contiguous(w.clone()));
    let weight_sum = match (&weight, smoothing) {
        (Some(w), true) => weight_sum(w),
        _ => dummy(&input),
    };
    if !ce {
        // NLL: a zero gradient but for one element per row; fill, then scatter.
        let out = burn_cubecl::ops::numeric::zeros_client(
            input.client.clone(),
            input.device.clone(),
            input.shape(),
            input.dtype,
        );
        let cube_dim = CubeDim::new_1d(CUBE_UNITS);
        let count = target.meta.num_elements();
        let cube_count = calculate_cube_count_elemwise(&input.client, count, cube_dim);
        nll_backward_scatter_kernel::launch::<R>(
            &input.client,
            cube_count,
            cube_dim,
            target.clone().into_tensor_arg(),
            weight
                .clone()
                .unwrap_or_else(|| dummy(&input))
                .into_tensor_arg(),
            grad.into_tensor_arg(),
            total_weight.clone().into_tensor_arg(),
            out.clone().into_tensor_arg(),
            params.classes as u32,
            params.spatial as u32,
            ignore_u32(params.ignore_index, params.classes),
            weight.is_some(),
            grad_mode(params.output),
            [input.dtype.into(), target.dtype.into()],
        );
        return out;
    }
    let lse = match (ce, log_sum_exp) {
        (true, Some(lse)) => into_contiguous(lse.clone()),
        (true, None) => panic!("cross-entropy backward without its saved log-sum-exp"),
        (false, _) => dummy(&input),
    };
    let out = empty_like(&input, input.shape(), input.dtype);
    let total = input.meta.num_elements();
    let cube_dim = CubeDim::new_1d(CUBE_UNITS);
    let cube_count = calculate_cube_count_elemwise(&input.client, total, cube_dim);

    class_index_backward_kernel::launch::<R>(
        &input.client,
        cube_count,
        cube_dim,
        input.clone().into_tensor_arg(),
        target.clone().into_tensor_arg(),
        weight
            .clone()
            .unwrap_or_else(|| dummy(&input))
            .into_tensor_arg(),
        lse.into_tensor_arg(),
        grad.into_tensor_arg(),
        total_weight.clone().into_tensor_arg(),
        weight_sum.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        params.classes as u32,
        params.spatial as u32,
        ignore_u32(params.ignore_index, params.classes),
        scalar(1.0 - eps, &input),
        scalar(eps / params.classes as f64, &input),
        scalar(0.0, &input),
        ce,
        weight.is_some(),
        smoothing,
        grad_mode(params.output),
        [input.dtype.into(), target.dtype.into()],
    );
    out
}

/// The class-probability forward on cube tensors (see [`Kernels::class_probs_forward`]).
pub(super) fn class_probs_forward<R: CubeRuntime>(
    input: &CubeTensor<R>,
    target: &CubeTensor<R>,
    weight: Option<&CubeTensor<R>>,
    params: &ClassProbsParams,
) -> Option<(CubeTensor<R>, CubeTensor<R>)> {
    if !covers_class_probs(params) {
        return None;
    }
    let input = into_contiguous(input.clone());
    let target = into_contiguous(target.clone());
    let dtype = input.dtype;
    let elements = params.batch * params.spatial;
    let eps = params.label_smoothing;
    let reduced = params.output != Output::PerElement;
    let (tx, ty) = row_layout(params.classes);
    let cubes = forward_cubes(elements.div_ceil(ty as usize));
    let weight_arg = match weight {
        Some(w) => into_contiguous(w.clone()),
        None => dummy(&input),
    };
    let loss = if reduced {
        empty_like(&input, Shape::new([cubes as usize]), dtype)
    } else {
        empty_like(&input, Shape::new([elements]), dtype)
    };
    let log_sum_exp = empty_like(&input, Shape::new([2 * elements]), dtype);

    class_probs_forward_kernel::launch::<R>(
        &input.client,
        CubeCount::Static(cubes, 1, 1),
        CubeDim::new_2d(tx, ty),
        input.clone().into_tensor_arg(),
        target.into_tensor_arg(),
        weight_arg.into_tensor_arg(),
        loss.clone().into_tensor_arg(),
        log_sum_exp.clone().into_tensor_arg(),
        params.classes as u32,
        params.spatial as u32,
        elements as u32,
        scalar(1.0 - eps, &input),
        scalar(eps / params.classes as f64, &input),
        scalar(lowest(dtype), &input),
        weight.is_some(),
        reduced,
        dtype.into(),
    );

    let loss = match params.output {
        Output::PerElement => loss,
        Output::Reduced(reduction) => {
            let out = empty_like(&input, Shape::new([1]), dtype);
            let mode = if reduction == Reduction::Sum { 3 } else { 4 };
            finalize(
                &input,
                loss,
                dummy(&input),
                out.clone(),
                dummy(&input),
                cubes,
                elements as f64,
                mode,
            );
            out
        }
    };
    Some((loss, log_sum_exp))
}

/// The class-probability gradients on cube tensors (see [`Kernels::class_probs_backward`]).
pub(super) fn class_probs_backward<R: CubeRuntime>(
    input: &CubeTensor<R>,
    target: &CubeTensor<R>,
    weight: Option<&CubeTensor<R>>,
    params: &ClassProbsParams,
    log_sum_exp: &CubeTensor<R>,
    grad: CubeTensor<R>,
    wants: [bool; 2],
) -> [Option<CubeTensor<R>>; 2] {
    if !wants[0] && !wants[1] {
        return [None, None];
    }
    let input = into_contiguous(input.clone());
    let target = into_contiguous(target.clone());
    let grad = into_contiguous(grad);
    let dtype = input.dtype;
    let elements = params.batch * params.spatial;
    let eps = params.label_smoothing;
    let (tx, ty) = row_layout(params.classes);
    let cubes = forward_cubes(elements.div_ceil(ty as usize));
    let weight_arg = match weight {
        Some(w) => into_contiguous(w.clone()),
        None => dummy(&input),
    };
    let grad_input = if wants[0] {
        empty_like(&input, input.shape(), dtype)
    } else {
        dummy(&input)
    };
    let grad_target = if wants[1] {
        empty_like(&input, target.shape(), dtype)
    } else {
        dummy(&input)
    };

    class_probs_backward_kernel::launch::<R>(
        &input.client,
        CubeCount::Static(cubes, 1, 1),
        CubeDim::new_2d(tx, ty),
        input.clone().into_tensor_arg(),
        target.into_tensor_arg(),
        weight_arg.into_tensor_arg(),
        into_contiguous(log_sum_exp.clone()).into_tensor_arg(),
        grad.into_tensor_arg(),
        grad_input.clone().into_tensor_arg(),
        grad_target.clone().into_tensor_arg(),
        params.classes as u32,
        params.spatial as u32,
        elements as u32,
        scalar(1.0 - eps, &input),
        scalar(eps / params.classes as f64, &input),
        weight.is_some(),
        grad_mode(params.output),
        wants[0],
        wants[1],
        dtype.into(),
    );
    [
        wants[0].then_some(grad_input),
        wants[1].then_some(grad_target),
    ]
}

/// A binary weight as the kernels take it: the values (or a placeholder) and the period.
fn periodic_arg<R: CubeRuntime>(
    weight: Option<(&CubeTensor<R>, usize)>,
    like: &CubeTensor<R>,
) -> (CubeTensor<R>, u32) {
    match weight {
        Some((values, period)) => (into_contiguous(values.clone()), period as u32),
        None => (dummy(like), 1),
    }
}

/// The binary forward on cube tensors (see [`Kernels::binary_forward`]); `weight` and
/// `pos_weight` are `(values, period)`.
pub(super) fn binary_forward<R: CubeRuntime>(
    input: &CubeTensor<R>,
    target: &CubeTensor<R>,
    weight: Option<(&CubeTensor<R>, usize)>,
    pos_weight: Option<(&CubeTensor<R>, usize)>,
    params: &BinaryParams,
) -> CubeTensor<R> {
    let input = into_contiguous(input.clone());
    let target = into_contiguous(target.clone());
    let dtype = input.dtype;
    let len = params.len;
    let reduced = params.output != Output::PerElement;
    let cubes = forward_cubes(len.div_ceil(CUBE_UNITS as usize));
    let (w, w_period) = periodic_arg(weight, &input);
    let (pw, pw_period) = periodic_arg(pos_weight, &input);
    let loss = if reduced {
        empty_like(&input, Shape::new([cubes as usize]), dtype)
    } else {
        empty_like(&input, Shape::new([len]), dtype)
    };

    binary_forward_kernel::launch::<R>(
        &input.client,
        CubeCount::Static(cubes, 1, 1),
        CubeDim::new_1d(CUBE_UNITS),
        input.clone().into_tensor_arg(),
        target.into_tensor_arg(),
        w.into_tensor_arg(),
        pw.into_tensor_arg(),
        loss.clone().into_tensor_arg(),
        len as u32,
        w_period,
        pw_period,
        params.kind == BinaryKind::WithLogits,
        weight.is_some(),
        pos_weight.is_some(),
        reduced,
        dtype.into(),
    );

    match params.output {
        Output::PerElement => loss,
        Output::Reduced(reduction) => {
            let out = empty_like(&input, Shape::new([1]), dtype);
            let mode = if reduction == Reduction::Sum { 3 } else { 4 };
            finalize(
                &input,
                loss,
                dummy(&input),
                out.clone(),
                dummy(&input),
                cubes,
                len as f64,
                mode,
            );
            out
        }
    }
}

/// The binary gradients on cube tensors (see [`Kernels::binary_backward`]).
pub(super) fn binary_backward<R: CubeRuntime>(
    input: &CubeTensor<R>,
    target: &CubeTensor<R>,
    weight: Option<(&CubeTensor<R>, usize)>,
    pos_weight: Option<(&CubeTensor<R>, usize)>,
    params: &BinaryParams,
    grad: CubeTensor<R>,
    wants: [bool; 2],
) -> [Option<CubeTensor<R>>; 2] {
    if !wants[0] && !wants[1] {
        return [None, None];
    }
    let input = into_contiguous(input.clone());
    let target = into_contiguous(target.clone());
    let grad = into_contiguous(grad);
    let dtype = input.dtype;
    let len = params.len;
    let (w, w_period) = periodic_arg(weight, &input);
    let (pw, pw_period) = periodic_arg(pos_weight, &input);
    let grad_input = if wants[0] {
        empty_like(&input, input.shape(), dtype)
    } else {
        dummy(&input)
    };
    let grad_target = if wants[1] {
        empty_like(&input, target.shape(), dtype)
    } else {
        dummy(&input)
    };
    let cube_dim = CubeDim::new_1d(CUBE_UNITS);
    let cube_count = calculate_cube_count_elemwise(&input.client, len, cube_dim);

    binary_backward_kernel::launch::<R>(
        &input.client,
        cube_count,
        cube_dim,
        input.clone().into_tensor_arg(),
        target.into_tensor_arg(),
        w.into_tensor_arg(),
        pw.into_tensor_arg(),
        grad.into_tensor_arg(),
        grad_input.clone().into_tensor_arg(),
        grad_target.clone().into_tensor_arg(),
        len as u32,
        w_period,
        pw_period,
        params.kind == BinaryKind::WithLogits,
        weight.is_some(),
        pos_weight.is_some(),
        grad_mode(params.output),
        wants[0],
        wants[1],
        dtype.into(),
    );
    [
        wants[0].then_some(grad_input),
        wants[1].then_some(grad_target),
    ]
}

impl<R, F, I, BT> Kernels for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    const CHECKS_VALUES: bool = false;

    fn class_index_forward(
        input: &FloatTensor<Self>,
        target: &IntTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassIndexParams,
    ) -> Option<Result<(FloatTensor<Self>, ClassIndexSaved<Self>), BadValue>> {
        let out = class_index_forward(input, target, weight, params)?;
        Some(Ok((
            out.loss,
            ClassIndexSaved {
                log_sum_exp: out.log_sum_exp,
                total_weight: out.total_weight,
            },
        )))
    }

    fn class_index_backward(
        input: &FloatTensor<Self>,
        target: &IntTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassIndexParams,
        saved: &ClassIndexSaved<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        class_index_backward(
            input,
            target,
            weight,
            params,
            saved.log_sum_exp.as_ref(),
            &saved.total_weight,
            grad,
            |w| Self::float_sum(w.clone()),
        )
    }

    fn class_probs_forward(
        input: &FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassProbsParams,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        class_probs_forward(input, target, weight, params)
    }

    fn class_probs_backward(
        input: &FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&FloatTensor<Self>>,
        params: &ClassProbsParams,
        log_sum_exp: &FloatTensor<Self>,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        class_probs_backward(input, target, weight, params, log_sum_exp, grad, wants)
    }

    fn binary_forward(
        input: &FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&Periodic<Self>>,
        pos_weight: Option<&Periodic<Self>>,
        params: &BinaryParams,
    ) -> Option<Result<FloatTensor<Self>, BadValue>> {
        if !covers_binary(params, weight, pos_weight) {
            return None;
        }
        Some(Ok(binary_forward(
            input,
            target,
            weight.map(Periodic::parts),
            pos_weight.map(Periodic::parts),
            params,
        )))
    }

    fn binary_backward(
        input: &FloatTensor<Self>,
        target: &FloatTensor<Self>,
        weight: Option<&Periodic<Self>>,
        pos_weight: Option<&Periodic<Self>>,
        params: &BinaryParams,
        grad: FloatTensor<Self>,
        wants: [bool; 2],
    ) -> [Option<FloatTensor<Self>>; 2] {
        binary_backward(
            input,
            target,
            weight.map(Periodic::parts),
            pos_weight.map(Periodic::parts),
            params,
            grad,
            wants,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract_tests::{CubeWgpu, float, int, ready};
    use super::*;

    /// The cases the cube kernels leave to the composite path: a positive weight for BCE on
    /// probabilities, an `ignore_index` beyond `i32`.
    #[test]
    fn uncovered_cases_return_none() {
        if !ready::<CubeWgpu>("uncovered_cases_return_none") {
            return;
        }
        let device = Default::default();
        let input = float::<CubeWgpu>(&[0.5; 4], &[4], &device);
        let pos_weight = Periodic::<CubeWgpu> {
            values: float::<CubeWgpu>(&[2.0], &[1], &device),
            period: 1,
        };
        let params = BinaryParams {
            kind: BinaryKind::Probabilities,
            len: 4,
            output: Output::PerElement,
            check_values: false,
        };
        assert!(
            CubeWgpu::binary_forward(&input, &input, None, Some(&pos_weight), &params).is_none()
        );
        let class_params = ClassIndexParams {
            kind: ClassIndexKind::CrossEntropy,
            batch: 2,
            classes: 2,
            spatial: 1,
            ignore_index: i64::from(i32::MAX) + 1,
            label_smoothing: 0.0,
            output: Output::PerElement,
            check_values: false,
        };
        let target = int::<CubeWgpu>(&[0, 1], &[2, 1], &device);
        assert!(CubeWgpu::class_index_forward(&input, &target, None, &class_params).is_none());
    }
}
