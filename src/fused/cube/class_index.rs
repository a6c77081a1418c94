//! Cross-entropy and NLL with class-index targets: the forward (a row kernel, see
//! [`super::rows`]), the cross-entropy backward (elementwise over `[N, C, S]`), the NLL
//! backward (fill, then one scatter per element), and their launchers.

use burn::tensor::TensorMetadata;
use burn_cubecl::CubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::zeros_client;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::CUBE_UNITS;
use super::helpers::{class_weight, target_class};
use super::launch::{
    RowLaunch, dummy, elementwise, empty_like, ignore_u32, lowest, or_dummy, row_layout, scalar,
    smoothing_args,
};
use super::reduce::{MeanOver, Reduce, element_grad, finish, loss_buffer, ordered_sum};
use super::rows::{RowMemory, RowShape, RowSums, RowUnit, row_softmax};
use crate::fused::kernels::{ClassIndexKind, ClassIndexParams};

/// Class-index forward (cross-entropy when `ce`, NLL otherwise) over `elements = N × S` rows.
///
/// Writes `log_sum_exp[i]` (cross-entropy), `loss[i]` (per element) or the cube's sum of the
/// losses to `loss[CUBE_POS]` (reduced), and the cube's sum of the target weights to
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
    shape: RowShape,
    ignore: u32,
    one_minus_eps: InputScalar,
    eps_over_c: InputScalar,
    lowest: InputScalar,
    #[comptime] ce: bool,
    #[comptime] weighted: bool,
    #[comptime] smoothing: bool,
    #[comptime] reduce: Reduce,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let unit = RowUnit::here(&shape);
    let m = unit.elements;
    let one_minus_eps = one_minus_eps.get::<F>();
    let eps_over_c = eps_over_c.get::<F>();
    let sums = comptime!(if smoothing {
        RowSums::ClassWeights
    } else {
        RowSums::None
    });

    let mut memory = RowMemory::<F>::new();

    let mut acc_loss = F::new(0.0);
    let mut acc_weight = F::new(0.0);

    let mut block = CUBE_POS;
    while block < unit.blocks() {
        let i = unit.element(block);
        let valid = i < m;
        let base = unit.base(unit.clamped(i));
        let mut x0 = F::new(0.0);
        if ce {
            // `input` stands in for the probability targets, which these sums do not read.
            x0 = row_softmax::<F>(
                input,
                input,
                weight,
                unit,
                base,
                lowest.get::<F>(),
                one_minus_eps,
                eps_over_c,
                &mut memory,
                sums,
                weighted,
            );
        }

        if unit.lane == 0 && valid {
            let mut row_max = F::new(0.0);
            let mut log_sum = F::new(0.0);
            if ce {
                // The log-sum-exp in two parts, `max + ln(sum)`: `x - max` is exact.
                row_max = memory.max[unit.first];
                log_sum = memory.sum[unit.first].ln();
                log_sum_exp[i] = row_max;
                log_sum_exp[m + i] = log_sum;
            }
            let class = target_class::<I>(target[i], unit.classes, ignore);
            let mut li = F::new(0.0);
            let mut wt = F::new(0.0);
            if class < unit.classes {
                wt = class_weight::<F>(weight, class, weighted);
                let x_t = input[base + class * unit.spatial];
                if ce {
                    li = one_minus_eps * wt * ((row_max - x_t) + log_sum);
                    if smoothing {
                        // Σ_c w_c (lse - x_c), with the sum of w_c (x_c - x0) from the row.
                        li += eps_over_c
                            * (memory.a_sum[unit.first] * ((row_max - x0) + log_sum)
                                - memory.ax_sum[unit.first]);
                    }
                } else {
                    li = -(wt * x_t);
                }
            }
            if comptime!(reduce.is_reduced()) {
                acc_loss += li;
            } else {
                loss[i] = li;
            }
            acc_weight += wt;
        }
        if ce {
            // The next block overwrites the shared memory.
            sync_cube();
        }
        block += CUBE_COUNT;
    }

    // The cube's partial sums, in a fixed order.
    if unit.lane == 0 {
        memory.max[unit.row] = acc_loss;
        memory.sum[unit.row] = acc_weight;
    }
    sync_cube();
    if unit.slot == 0 {
        partial_weight[CUBE_POS] = ordered_sum::<F>(&memory.sum, unit.rows);
        if comptime!(reduce.is_reduced()) {
            loss[CUBE_POS] = ordered_sum::<F>(&memory.max, unit.rows);
        }
    }
}

/// Cross-entropy input gradient, one unit per element of `[N, C, S]`: `g (p_c coef - v_c)`,
/// with `g` the element's gradient ([`element_grad`], a mean over `total_weight[0]`).
/// `weight_sum[0]` is `Σ_c w_c` (read only for weighted label smoothing).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn cross_entropy_backward_kernel<F: Float, I: Numeric>(
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
    #[comptime] weighted: bool,
    #[comptime] smoothing: bool,
    #[comptime] reduce: Reduce,
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
    // The saved log-sum-exp: each element's max, then `ln Σ exp(x - max)`.
    let elements = log_sum_exp.len() / 2;
    let p = ((input[pos] - log_sum_exp[i]) - log_sum_exp[elements + i]).exp();
    // An ignored target: PyTorch's log_softmax backward of a zero gradient, `0 · p` (NaN
    // where the row holds a NaN). `zero` is a run-time 0 that no compiler folds `p · 0` with.
    let mut d = p * zero.get::<F>();
    if class < c_count {
        let g = element_grad::<F>(grad, i, total_weight[0], reduce);
        let wt = class_weight::<F>(weight, class, weighted);
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
    }
    out[pos] = d;
}

/// NLL input gradient, one unit per element `i` of `[N, S]`: writes `-g_i w[t_i]` at the
/// target class into `out`, which the caller zero-filled (ignored elements write nothing);
/// `g_i` as in [`cross_entropy_backward_kernel()`].
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
    #[comptime] reduce: Reduce,
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
        let g = element_grad::<F>(grad, i, total_weight[0], reduce);
        let wt = class_weight::<F>(weight, class, weighted);
        let n = i / s_count;
        let s = i % s_count;
        out[(n * c_count + class) * s_count + s] = -(g * wt);
    }
}

/// What [`class_index_forward`] returns: the loss and what the backward needs (see
/// `ClassIndexSaved`).
pub(in crate::fused) struct ClassIndexOutputs<R: CubeRuntime> {
    /// `[N * S]` per element, `[1]` reduced.
    pub loss: CubeTensor<R>,
    /// `[2 * N * S]`, cross-entropy only.
    pub log_sum_exp: Option<CubeTensor<R>>,
    /// `[1]`.
    pub total_weight: CubeTensor<R>,
}

/// The class-index forward on cube tensors (see `Kernels::class_index_forward`); `None` for
/// an op the kernels do not cover.
pub(in crate::fused) fn class_index_forward<R: CubeRuntime>(
    input: &CubeTensor<R>,
    target: &CubeTensor<R>,
    weight: Option<&CubeTensor<R>>,
    params: &ClassIndexParams,
) -> Option<ClassIndexOutputs<R>> {
    if !super::covers_class_index(params) {
        return None;
    }
    let input = into_contiguous(input.clone());
    let target = into_contiguous(target.clone());
    let dtype = input.dtype;
    let elements = params.batch * params.spatial;
    let ce = params.kind == ClassIndexKind::CrossEntropy;
    let eps = if ce { params.label_smoothing } else { 0.0 };
    let reduce = Reduce::of(params.output);
    let layout = if ce {
        row_layout(params.classes)
    } else {
        (1, CUBE_UNITS)
    };
    let rows = RowLaunch::new(layout, params.batch, params.classes, params.spatial);
    let loss = loss_buffer(&input, reduce, rows.cubes, elements);
    let log_sum_exp = ce.then(|| empty_like(&input, [2 * elements].into(), dtype));
    let partial_weight = empty_like(&input, [rows.cubes as usize].into(), dtype);
    let (one_minus_eps, eps_over_c) = smoothing_args(eps, params.classes, &input);

    class_index_forward_kernel::launch::<R>(
        &input.client,
        rows.count,
        rows.dim,
        input.clone().into_tensor_arg(),
        target.clone().into_tensor_arg(),
        or_dummy(weight, &input).into_tensor_arg(),
        loss.clone().into_tensor_arg(),
        log_sum_exp
            .clone()
            .unwrap_or_else(|| dummy(&input))
            .into_tensor_arg(),
        partial_weight.clone().into_tensor_arg(),
        rows.shape,
        ignore_u32(params.ignore_index, params.classes),
        one_minus_eps,
        eps_over_c,
        scalar(lowest(dtype), &input),
        ce,
        weight.is_some(),
        eps > 0.0,
        reduce,
        [dtype.into(), target.dtype.into()],
    );

    let (loss, total_weight) = finish(
        &input,
        loss,
        Some(partial_weight),
        rows.cubes,
        elements,
        reduce,
        MeanOver::TotalWeight,
    );
    Some(ClassIndexOutputs {
        loss,
        log_sum_exp,
        total_weight: total_weight.expect("a mean over the total weight writes it"),
    })
}

/// The class-index input gradient on cube tensors (see `Kernels::class_index_backward`);
/// `weight_sum` sums the class weights (`[C]` to `[1]`) for weighted label smoothing.
#[allow(clippy::too_many_arguments)]
pub(in crate::fused) fn class_index_backward<R: CubeRuntime>(
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
    let weight = weight.map(|w| into_contiguous(w.clone()));
    let weight_arg = or_dummy(weight.as_ref(), &input);
    let reduce = Reduce::of(params.output);
    let ignore = ignore_u32(params.ignore_index, params.classes);
    let dtypes = [input.dtype.into(), target.dtype.into()];
    if params.kind == ClassIndexKind::Nll {
        // A zero gradient but for one element per row: fill, then scatter.
        let out = zeros_client(
            input.client.clone(),
            input.device.clone(),
            input.shape(),
            input.dtype,
        );
        let (cube_count, cube_dim) = elementwise(&input, target.meta.num_elements());
        nll_backward_scatter_kernel::launch::<R>(
            &input.client,
            cube_count,
            cube_dim,
            target.into_tensor_arg(),
            weight_arg.into_tensor_arg(),
            grad.into_tensor_arg(),
            total_weight.clone().into_tensor_arg(),
            out.clone().into_tensor_arg(),
            params.classes as u32,
            params.spatial as u32,
            ignore,
            weight.is_some(),
            reduce,
            dtypes,
        );
        return out;
    }
    let eps = params.label_smoothing;
    let smoothing = eps > 0.0;
    let weight_sum = match (&weight, smoothing) {
        (Some(w), true) => weight_sum(w),
        _ => dummy(&input),
    };
    let lse = into_contiguous(
        log_sum_exp
            .expect("cross-entropy backward without its saved log-sum-exp")
            .clone(),
    );
    let out = empty_like(&input, input.shape(), input.dtype);
    let (cube_count, cube_dim) = elementwise(&input, input.meta.num_elements());
    let (one_minus_eps, eps_over_c) = smoothing_args(eps, params.classes, &input);

    cross_entropy_backward_kernel::launch::<R>(
        &input.client,
        cube_count,
        cube_dim,
        input.clone().into_tensor_arg(),
        target.into_tensor_arg(),
        weight_arg.into_tensor_arg(),
        lse.into_tensor_arg(),
        grad.into_tensor_arg(),
        total_weight.clone().into_tensor_arg(),
        weight_sum.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        params.classes as u32,
        params.spatial as u32,
        ignore,
        one_minus_eps,
        eps_over_c,
        scalar(0.0, &input),
        weight.is_some(),
        smoothing,
        reduce,
        dtypes,
    );
    out
}
