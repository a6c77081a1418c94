//! Cross-entropy and NLL with class-index targets: the forward (a row kernel, see
//! [`super::rows`]), the cross-entropy backward (elementwise over `[N, C, S]`), the NLL
//! backward (fill, then one scatter per element), and their launchers.

use burn::backend::TensorMetadata;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::zeros_client;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::helpers::{class_weight, target_class};
use super::launch::{
    GradInto, RowLaunch, RowLayout, dummy, elem, elementwise, empty_like, ignore_u32, lowest,
    or_dummy, row_layout, scalar, smoothing_args,
};
use super::reduce::{MeanOver, Reduce, element_grad, finish, loss_buffer, ordered_sum, tree_sum};
use super::rows::{RowMemory, RowShape, RowSums, RowUnit, row_log_sum, row_softmax};
use super::{CUBE_UNITS, SHARED_LEN};
use crate::fused::kernels::{ClassIndexKind, ClassIndexParams, Output};
use crate::reduction::Reduction;

/// Class-index forward (cross-entropy when `ce`, NLL otherwise) over `elements = N × S` rows.
///
/// Writes `log_sum_exp[i]` (cross-entropy, without `with_grad`), `loss[i]` (per element) or
/// the cube's sum of the losses to `loss[CUBE_POS]` (reduced), and the cube's sum of the
/// target weights to `partial_weight[CUBE_POS]`.
///
/// With `with_grad`, also the input gradient for a unit upstream gradient into `grad` (which
/// may alias `input`, argument 0): once a row's softmax is known, its units read their
/// classes again and write each one's gradient where its logit was, as
/// [`cross_entropy_backward_kernel()`] and [`nll_backward_scatter_kernel()`] do with `g = 1`
/// (`1 / total_weight[0]` for a mean). Over the input, no unit writes a logit that another
/// unit still has to read: each unit writes only the classes it read itself (the target
/// logit too: its reader passes it to lane 0 through shared memory), and every unit's read
/// of the row's first logit feeds the softmax state it stores before the first barrier.
#[cube(launch)]
// `if comptime { if runtime { … } }`: CubeCL expands the outer `if` at compile time.
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
fn class_index_forward_kernel<F: Float, I: Numeric>(
    input: &Tensor<F>,
    target: &Tensor<I>,
    weight: &Tensor<F>,
    total_weight: &Tensor<F>,
    loss: &mut Tensor<F>,
    log_sum_exp: &mut Tensor<F>,
    partial_weight: &mut Tensor<F>,
    grad: &mut Tensor<F>,
    shape: RowShape,
    ignore: u32,
    one_minus_eps: InputScalar,
    eps_over_c: InputScalar,
    lowest: InputScalar,
    nan: InputScalar,
    zero: InputScalar,
    #[comptime] ce: bool,
    #[comptime] weighted: bool,
    #[comptime] smoothing: bool,
    #[comptime] reduce: Reduce,
    #[comptime] with_grad: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let unit = RowUnit::here(&shape);
    let m = unit.elements;
    let one_minus_eps = one_minus_eps.get::<F>();
    let eps_over_c = eps_over_c.get::<F>();
    // Row sums of the class weights for the smoothed loss, and for its gradient's `Σ_c w_c`.
    let sums = comptime!(if smoothing {
        RowSums::ClassWeights
    } else {
        RowSums::None
    });
    // The factor of a unit upstream gradient: `1 / total weight` for a mean.
    let mut unit_grad = F::new(1.0);
    if comptime!(with_grad && reduce == Reduce::Mean) {
        unit_grad = F::new(1.0) / total_weight[0];
    }

    let mut memory = RowMemory::<F>::new();
    // Each row's target logit, at the row's first slot (cross-entropy).
    let mut target_logit = Shared::<[F]>::new_slice(SHARED_LEN);

    let mut acc_loss = F::new(0.0);
    let mut acc_weight = F::new(0.0);

    let mut block = CUBE_POS;
    while block < unit.blocks() {
        let i = unit.element(block);
        let valid = i < m;
        let ii = unit.clamped(i);
        let base = unit.base(ii);
        let class = target_class::<I>(target[ii], unit.classes, ignore);
        // The target logit, read by the unit that will write its gradient (the one whose
        // classes include it), and handed to lane 0 through shared memory before the
        // softmax's barriers: over the input, no unit writes a value another unit reads.
        let owner = class < unit.classes && class % unit.width == unit.lane;
        let mut x_t = F::new(0.0);
        if owner {
            x_t = input[base + class * unit.spatial];
            if ce {
                target_logit[unit.first] = x_t;
            }
        }
        let mut x0 = F::new(0.0);
        if ce {
            // `input` stands in for the probability targets, which these sums do not read.
            x0 = row_softmax::<F>(
                input,
                input,
                weight,
                &unit,
                base,
                lowest.get::<F>(),
                one_minus_eps,
                eps_over_c,
                &mut memory,
                sums,
                weighted,
            );
        }
        let mut row_max = F::new(0.0);
        let mut log_sum = F::new(0.0);
        if ce {
            // The log-sum-exp in two parts, `max + ln(sum)`: `x - max` is exact.
            row_max = memory.max[unit.first];
            log_sum = row_log_sum::<F>(
                row_max,
                memory.sum[unit.first],
                lowest.get::<F>(),
                nan.get::<F>(),
            );
        }
        let mut wt = F::new(0.0);
        if class < unit.classes {
            wt = class_weight::<F>(weight, class, weighted);
        }

        if unit.lane == 0 && valid {
            if comptime!(ce && !with_grad) {
                log_sum_exp[i] = row_max;
                log_sum_exp[m + i] = log_sum;
            }
            let mut li = F::new(0.0);
            if class < unit.classes {
                if ce {
                    x_t = target_logit[unit.first];
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

        if with_grad {
            if valid {
                if ce {
                    // `g (p_c coef - v_c)` as in `cross_entropy_backward_kernel`, with `Σ_c w_c`
                    // (or `C`) from the row's sums.
                    let mut coef = one_minus_eps * wt;
                    if smoothing {
                        coef += eps_over_c * memory.a_sum[unit.first];
                    }
                    let mut c = unit.lane;
                    while c < unit.classes {
                        let at = base + c * unit.spatial;
                        let p = ((input[at] - row_max) - log_sum).exp();
                        // An ignored target: `0 · p`, NaN where the row holds a NaN.
                        let mut d = p * zero.get::<F>();
                        if class < unit.classes {
                            let mut v = p * coef;
                            if smoothing {
                                v -= eps_over_c * class_weight::<F>(weight, c, weighted);
                            }
                            if c == class {
                                v -= one_minus_eps * wt;
                            }
                            d = unit_grad * v;
                        }
                        grad[at] = d;
                        c += unit.width;
                    }
                } else {
                    // `-g w_t` at the target class, 0 elsewhere (and everywhere when ignored).
                    let mut c = unit.lane;
                    while c < unit.classes {
                        let mut d = F::new(0.0);
                        if c == class {
                            d = -(unit_grad * wt);
                        }
                        grad[base + c * unit.spatial] = d;
                        c += unit.width;
                    }
                }
            }
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

/// The total weight of the targets, `Σ_i w[t_i]` over non-ignored elements, into
/// `total_weight[0]`: one cube, its units striding over the targets, then a tree. The
/// divisor of a mean, which the forward with the gradient needs before it starts.
#[cube(launch)]
fn total_weight_kernel<F: Float, I: Numeric>(
    target: &Tensor<I>,
    weight: &Tensor<F>,
    total_weight: &mut Tensor<F>,
    classes: u32,
    ignore: u32,
    #[comptime] weighted: bool,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let unit = UNIT_POS_X as usize;
    let units = CUBE_DIM_X as usize;
    let c_count = classes as usize;
    let mut acc = F::new(0.0);
    let mut i = unit;
    while i < target.len() {
        let class = target_class::<I>(target[i], c_count, ignore);
        if class < c_count {
            acc += class_weight::<F>(weight, class, weighted);
        }
        i += units;
    }
    let mut sums = Shared::<[F]>::new_slice(SHARED_LEN);
    sums[unit] = acc;
    sync_cube();
    tree_sum::<F>(&mut sums, unit, unit, units, 1);
    if unit == 0 {
        total_weight[0] = sums[0];
    }
}

/// Cross-entropy input gradient, one unit per element of `[N, C, S]`: `g (p_c coef - v_c)`,
/// with `g` the element's gradient ([`element_grad()`], a mean over `total_weight[0]`).
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
    #[define(F, I)] _dtypes: [ElemType; 2],
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
    #[define(F, I)] _dtypes: [ElemType; 2],
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
pub(in crate::fused) struct ClassIndexOutputs {
    /// `[N * S]` per element, `[1]` reduced.
    pub loss: CubeTensor,
    /// `[2 * N * S]`, cross-entropy only.
    pub log_sum_exp: Option<CubeTensor>,
    /// `[1]`.
    pub total_weight: CubeTensor,
}

/// The class-index forward on cube tensors (see `Kernels::class_index_forward`); `None` for
/// an op the kernels do not cover.
pub(in crate::fused) fn class_index_forward(
    input: &CubeTensor,
    target: &CubeTensor,
    weight: Option<&CubeTensor>,
    params: &ClassIndexParams,
) -> Option<ClassIndexOutputs> {
    if !super::covers_class_index(params) {
        return None;
    }
    let input = into_contiguous(input.clone());
    let target = into_contiguous(target.clone());
    let weight = weight.map(|w| into_contiguous(w.clone()));
    let elements = params.batch * params.spatial;
    let ce = params.kind == ClassIndexKind::CrossEntropy;
    let log_sum_exp = ce.then(|| empty_like(&input, [2 * elements].into(), input.dtype));
    let run = Forward {
        input: &input,
        target: &target,
        weight: weight.as_ref(),
        params,
    };
    let (loss, total_weight) = run.launch(log_sum_exp.as_ref(), None);
    Some(ClassIndexOutputs {
        loss,
        log_sum_exp,
        total_weight: total_weight.expect("a mean over the total weight writes it"),
    })
}

/// The class-index loss and input gradient for a unit upstream gradient on cube tensors
/// (see `Kernels::class_index_with_grad`), in one forward launch (after a one-cube pass over
/// the targets for a mean's divisor): the gradient over `input`'s buffer when it is ours
/// ([`GradInto`]), into a new one otherwise. `Err(input)` for an op the kernels do not
/// cover.
#[allow(clippy::result_large_err)]
pub(in crate::fused) fn class_index_with_grad(
    input: CubeTensor,
    target: &CubeTensor,
    weight: Option<&CubeTensor>,
    params: &ClassIndexParams,
) -> Result<(CubeTensor, CubeTensor), CubeTensor> {
    if !super::covers_class_index(params) {
        return Err(input);
    }
    let (input, into) = GradInto::of(input, true);
    let target = into_contiguous(target.clone());
    let weight = weight.map(|w| into_contiguous(w.clone()));
    let run = Forward {
        input: &input,
        target: &target,
        weight: weight.as_ref(),
        params,
    };
    let total_weight = (params.output == Output::Reduced(Reduction::Mean)).then(|| {
        let total = empty_like(&input, [1].into(), input.dtype);
        total_weight_kernel::launch(
            &input.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(CUBE_UNITS),
            target.clone().into_tensor_arg(),
            or_dummy(weight.as_ref(), &input).into_tensor_arg(),
            total.clone().into_tensor_arg(),
            params.classes as u32,
            ignore_u32(params.ignore_index, params.classes),
            weight.is_some(),
            [elem(input.dtype), elem(target.dtype)],
        );
        total
    });
    let (loss, _) = run.launch(None, Some((&into, total_weight)));
    Ok((loss, into.gradient(input)))
}

/// One launch of [`class_index_forward_kernel()`] (and the finalise step) on contiguous
/// tensors.
struct Forward<'a> {
    input: &'a CubeTensor,
    target: &'a CubeTensor,
    weight: Option<&'a CubeTensor>,
    params: &'a ClassIndexParams,
}

impl Forward<'_> {
    /// Runs the forward, writing the log-sum-exp when given, or the gradient into `grad`'s
    /// place with the mean's known total weight (`[1]`, for a mean). Returns the loss and the
    /// total weight the finalise step added up (`None` with the gradient).
    fn launch(
        &self,
        log_sum_exp: Option<&CubeTensor>,
        grad: Option<(&GradInto, Option<CubeTensor>)>,
    ) -> (CubeTensor, Option<CubeTensor>) {
        let (input, params) = (self.input, self.params);
        let dtype = input.dtype;
        let elements = params.batch * params.spatial;
        let ce = params.kind == ClassIndexKind::CrossEntropy;
        let eps = if ce { params.label_smoothing } else { 0.0 };
        let reduce = Reduce::of(params.output);
        let layout = if ce {
            row_layout(params.classes, params.spatial)
        } else {
            RowLayout::SINGLE
        };
        let rows = RowLaunch::new(layout, params.batch, params.classes, params.spatial);
        let loss = loss_buffer(input, reduce, rows.cubes, elements);
        let partial_weight = empty_like(input, [rows.cubes as usize].into(), dtype);
        let (one_minus_eps, eps_over_c) = smoothing_args(eps, params.classes, input);
        let with_grad = grad.is_some();
        let (grad_arg, known_total) = match grad {
            Some((into, total)) => (into.arg(input), total),
            None => (dummy(input).into_tensor_arg(), None),
        };

        class_index_forward_kernel::launch(
            &input.client,
            rows.count,
            rows.dim,
            input.clone().into_tensor_arg(),
            self.target.clone().into_tensor_arg(),
            or_dummy(self.weight, input).into_tensor_arg(),
            known_total
                .clone()
                .unwrap_or_else(|| dummy(input))
                .into_tensor_arg(),
            loss.clone().into_tensor_arg(),
            log_sum_exp
                .cloned()
                .unwrap_or_else(|| dummy(input))
                .into_tensor_arg(),
            partial_weight.clone().into_tensor_arg(),
            grad_arg,
            rows.shape,
            ignore_u32(params.ignore_index, params.classes),
            one_minus_eps,
            eps_over_c,
            scalar(lowest(dtype), input),
            scalar(f64::NAN, input),
            scalar(0.0, input),
            ce,
            self.weight.is_some(),
            eps > 0.0,
            reduce,
            with_grad,
            [elem(dtype), elem(self.target.dtype)],
        );

        // With the gradient, a mean divides by the total weight it already knows, and the
        // other reductions need none.
        let (partial, mean_over) = match (with_grad, known_total) {
            (false, _) => (Some(partial_weight), MeanOver::TotalWeight),
            (true, Some(total)) => (Some(total), MeanOver::Known),
            (true, None) => (None, MeanOver::Count),
        };
        finish(
            input, loss, partial, rows.cubes, elements, reduce, mean_over,
        )
    }
}

/// The class-index input gradient on cube tensors (see `Kernels::class_index_backward`);
/// `weight_sum` sums the class weights (`[C]` to `[1]`) for weighted label smoothing.
#[allow(clippy::too_many_arguments)]
pub(in crate::fused) fn class_index_backward(
    input: &CubeTensor,
    target: &CubeTensor,
    weight: Option<&CubeTensor>,
    params: &ClassIndexParams,
    log_sum_exp: Option<&CubeTensor>,
    total_weight: &CubeTensor,
    grad: CubeTensor,
    weight_sum: impl FnOnce(&CubeTensor) -> CubeTensor,
) -> CubeTensor {
    let input = into_contiguous(input.clone());
    let target = into_contiguous(target.clone());
    let grad = into_contiguous(grad);
    let weight = weight.map(|w| into_contiguous(w.clone()));
    let weight_arg = or_dummy(weight.as_ref(), &input);
    let reduce = Reduce::of(params.output);
    let ignore = ignore_u32(params.ignore_index, params.classes);
    let dtypes = [elem(input.dtype), elem(target.dtype)];
    if params.kind == ClassIndexKind::Nll {
        // A zero gradient but for one element per row: fill, then scatter.
        let out = zeros_client(
            input.client.clone(),
            input.device.clone(),
            input.shape(),
            input.dtype,
        );
        let (cube_count, cube_dim) = elementwise(&input, target.meta.num_elements());
        nll_backward_scatter_kernel::launch(
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

    cross_entropy_backward_kernel::launch(
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
