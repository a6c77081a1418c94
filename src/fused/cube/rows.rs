//! The row layout of the class kernels and the online softmax of their forwards.
//!
//! A row kernel gives each element `i` of `[N, S]` (a row of `C` logits at stride `S`) to a
//! row of `tx` units of a cube of `tx × ty` units ([`RowUnit`]); the cube works through blocks
//! of `ty` rows (grid-stride). A row's units stride over its classes and merge their partial
//! results by a tree in shared memory (one slot per unit).
//!
//! The cube's units are numbered (hence grouped into warps) along the row's lanes, or, for
//! `[N, C, S]` inputs laid out along the spatial positions ([`RowShape::along_spatial`]),
//! along the rows: consecutive units then take consecutive rows, which are consecutive
//! positions, so a warp reads each class in a run of consecutive addresses.

use cubecl::prelude::*;

use super::SHARED_LEN;
use super::helpers::finite_or_nan;

/// The work of a row kernel, a kernel argument: `elements = N × S` rows of `classes` logits
/// at stride `spatial` (`S`).
#[derive(CubeLaunch, CubeType)]
pub(super) struct RowShape {
    /// `C`.
    pub classes: u32,
    /// `S`.
    pub spatial: u32,
    /// `N × S`.
    pub elements: u32,
    /// 1 when the cube's units are numbered along its rows (the cube is `ty × tx`: `x` the
    /// row, `y` the lane), 0 when along each row's lanes (`tx × ty`).
    pub along_spatial: u32,
}

/// Where a unit of a row kernel stands in its `tx × ty` cube, and the shape of the work.
#[derive(CubeType)]
pub(super) struct RowUnit {
    /// Units per row, `tx` (a power of two).
    pub width: usize,
    /// Rows per cube, `ty`.
    pub rows: usize,
    /// The unit's lane in its row, `0..tx`: the first class it reads.
    pub lane: usize,
    /// The unit's row in the cube, `0..ty`.
    pub row: usize,
    /// The unit's shared-memory slot, its number in the cube: `row * tx + lane`, or
    /// `lane * ty + row` along the spatial positions.
    pub slot: usize,
    /// The slot of lane 0 of the unit's row, where the tree leaves the row's result.
    pub first: usize,
    /// How far apart the slots of a row's consecutive lanes are: 1, or `ty` along the
    /// spatial positions.
    pub lane_step: usize,
    /// `C`.
    pub classes: usize,
    /// `S`.
    pub spatial: usize,
    /// `N × S`.
    pub elements: usize,
}

#[cube]
impl RowUnit {
    /// The calling unit's place, for work of `shape`.
    pub fn here(shape: &RowShape) -> RowUnit {
        let along = shape.along_spatial == 1;
        let (x, y) = (UNIT_POS_X as usize, UNIT_POS_Y as usize);
        let (dim_x, dim_y) = (CUBE_DIM_X as usize, CUBE_DIM_Y as usize);
        let width = select(along, dim_y, dim_x);
        let rows = select(along, dim_x, dim_y);
        let lane = select(along, y, x);
        let row = select(along, x, y);
        let lane_step = select(along, rows, 1usize);
        let first = select(along, row, row * width);
        RowUnit {
            width,
            rows,
            lane,
            row,
            slot: first + lane * lane_step,
            first,
            lane_step,
            classes: shape.classes as usize,
            spatial: shape.spatial as usize,
            elements: shape.elements as usize,
        }
    }

    /// The number of blocks of `ty` rows; a cube works on blocks `CUBE_POS`,
    /// `CUBE_POS + CUBE_COUNT`, ….
    pub fn blocks(&self) -> usize {
        self.elements.div_ceil(self.rows)
    }

    /// The element `block * ty + row` this unit's row works on in block `block` (past the
    /// last element for the cube's spare rows, which write nothing but still take part in
    /// the cube's barriers).
    pub fn element(&self, block: usize) -> usize {
        block * self.rows + self.row
    }

    /// Element `i`, or 0 for a spare row's `i` (which then reads within bounds).
    pub fn clamped(&self, i: usize) -> usize {
        select(i < self.elements, i, 0usize)
    }

    /// The flat index of class 0 of element `i` in `[N, C, S]`.
    pub fn base(&self, i: usize) -> usize {
        (i / self.spatial) * self.classes * self.spatial + i % self.spatial
    }
}

/// What a forward row adds up beside its softmax, with a per-class weight `a_c`: `Σ_c a_c`
/// and `Σ_c a_c (x_c - x0)` (relative to the row's first logit `x0`, so that large logits do
/// not cancel). A comptime choice of [`row_softmax()`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum RowSums {
    /// Nothing: cross-entropy without label smoothing.
    None,
    /// `a_c = w_c` (1 without class weights): cross-entropy's label smoothing.
    ClassWeights,
    /// `a_c = w_c q_c`, `q_c = (1 - ε) y_c + ε / C`: probability targets `y`.
    TargetWeights,
}

/// `w_c q_c`, `q_c = (1 - ε) y_c + ε / C`: the weight of class `c` in a row with probability
/// targets, `y_c = target[at]` (`w_c = 1` without class weights).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn target_weight<F: Float>(
    target: &Tensor<F>,
    weight: &Tensor<F>,
    at: usize,
    c: usize,
    one_minus_eps: F,
    eps_over_c: F,
    #[comptime] weighted: bool,
) -> F {
    let mut wq = one_minus_eps * target[at] + eps_over_c;
    if weighted {
        wq *= weight[c];
    }
    wq
}

/// The shared memory of a row forward, one slot per unit of the cube for each running
/// quantity of [`row_softmax()`]; the tree leaves a row's results at its `first` slot.
#[derive(CubeType)]
pub(super) struct RowMemory<F: Float> {
    /// The running maxima.
    pub max: Shared<[F]>,
    /// The running sums of `exp(x - max)`.
    pub sum: Shared<[F]>,
    /// `Σ a_c` (see [`RowSums`]).
    pub a_sum: Shared<[F]>,
    /// `Σ a_c (x_c - x0)`.
    pub ax_sum: Shared<[F]>,
}

#[cube]
impl<F: Float> RowMemory<F> {
    /// The cube's buffers.
    pub fn new() -> RowMemory<F> {
        RowMemory::<F> {
            max: Shared::<[F]>::new_slice(SHARED_LEN),
            sum: Shared::<[F]>::new_slice(SHARED_LEN),
            a_sum: Shared::<[F]>::new_slice(SHARED_LEN),
            ax_sum: Shared::<[F]>::new_slice(SHARED_LEN),
        }
    }
}

/// Merges the online-softmax states (running max `m`, sum of `exp(x - m)`) of slots `slot`
/// and `other` into `slot`.
#[cube]
fn merge_softmax<F: Float>(
    max: &mut Shared<[F]>,
    sum: &mut Shared<[F]>,
    slot: usize,
    other: usize,
) {
    let m1 = max[slot];
    let m2 = max[other];
    if m1 == m2 {
        // Also when both are infinite, where `m1 - m` would be NaN.
        let other_sum = sum[other];
        sum[slot] += other_sum;
    } else {
        let m = m1.max(m2);
        sum[slot] = sum[slot] * (m1 - m).exp() + sum[other] * (m2 - m).exp();
        max[slot] = m;
    }
}

/// `ln(sum)` of a row's softmax state, or `nan` where PyTorch's log-softmax is NaN in the
/// whole row: its maximum is +inf (`inf - inf`; above `-lowest`, the largest finite value)
/// or all its logits are -inf (`-inf - (-inf)`; [`row_softmax()`] leaves a sum of 0 then). A
/// NaN logit already makes the sum NaN. `nan` is a kernel argument: WGSL rejects NaN
/// literals, and the driver may fold the expressions that would make one.
#[cube]
pub(super) fn row_log_sum<F: Float>(max: F, sum: F, lowest: F, nan: F) -> F {
    let mut out = sum.ln();
    if sum == F::new(0.0) || max > -lowest {
        out = nan;
    }
    out
}

/// The online softmax of the row whose class 0 is at `base` (one read of the logits): each
/// unit of the row runs a running max and sum of exponentials over its classes
/// (`lane, lane + tx, …`), with the [`RowSums`] beside them, and the row's units merge theirs
/// by a tree. Returns the row's first logit `x0`; at the row's `first` slot of `memory` it
/// leaves the row's max in `max`, `Σ_c exp(x_c - max)` in `sum`, and `Σ a_c`,
/// `Σ a_c (x_c - x0)` in `a_sum`, `ax_sum` (untouched for [`RowSums::None`]). Ends on a
/// barrier.
///
/// The softmax state never holds `-inf`: `-inf` logits count as `lowest`, the lowest
/// finite value, with an exponential of 0, so no `-inf - (-inf)` arises, and no infinite
/// literal is needed (WGSL rejects them); a +inf logit makes the max +inf, and
/// [`row_log_sum()`] turns that row into NaN as PyTorch does. `target` is read for
/// [`RowSums::TargetWeights`] only, `weight` when `weighted`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn row_softmax<F: Float>(
    input: &Tensor<F>,
    target: &Tensor<F>,
    weight: &Tensor<F>,
    unit: &RowUnit,
    base: usize,
    lowest: F,
    one_minus_eps: F,
    eps_over_c: F,
    memory: &mut RowMemory<F>,
    #[comptime] sums: RowSums,
    #[comptime] weighted: bool,
) -> F {
    let x0 = finite_or_nan::<F>(input[base], lowest);
    let mut mx = x0;
    let mut se = F::new(0.0);
    let mut sa = F::new(0.0);
    let mut sax = F::new(0.0);
    let mut c = unit.lane;
    while c < unit.classes {
        let at = base + c * unit.spatial;
        let raw = input[at];
        let x = finite_or_nan::<F>(raw, lowest);
        if raw < lowest {
            // -inf: its exponential is 0, so a row of -inf alone ends with a sum of 0 (which
            // `row_log_sum` reads as PyTorch's NaN row).
        } else if x == mx {
            // exp(0), exactly.
            se += F::new(1.0);
        } else if x > mx {
            se = se * (mx - x).exp() + F::new(1.0);
            mx = x;
        } else {
            se += (x - mx).exp();
        }
        match sums {
            RowSums::None => {}
            RowSums::ClassWeights => {
                if weighted {
                    let w = weight[c];
                    sax += w * (raw - x0);
                    sa += w;
                } else {
                    sax += raw - x0;
                    sa += F::new(1.0);
                }
            }
            RowSums::TargetWeights => {
                let wq =
                    target_weight::<F>(target, weight, at, c, one_minus_eps, eps_over_c, weighted);
                sa += wq;
                sax += wq * (raw - x0);
            }
        }
        c += unit.width;
    }
    let with_sums = comptime!(sums != RowSums::None);
    memory.max[unit.slot] = mx;
    memory.sum[unit.slot] = se;
    if with_sums {
        memory.a_sum[unit.slot] = sa;
        memory.ax_sum[unit.slot] = sax;
    }
    sync_cube();

    let mut stride = unit.width / 2;
    while stride > 0 {
        if unit.lane < stride {
            let other = unit.slot + stride * unit.lane_step;
            merge_softmax::<F>(&mut memory.max, &mut memory.sum, unit.slot, other);
            if with_sums {
                let a = memory.a_sum[other];
                memory.a_sum[unit.slot] += a;
                let ax = memory.ax_sum[other];
                memory.ax_sum[unit.slot] += ax;
            }
        }
        sync_cube();
        stride /= 2;
    }
    x0
}
