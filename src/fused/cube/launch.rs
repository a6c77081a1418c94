//! Host-side helpers of the launchers: which ops the kernels cover, the cube layouts, the
//! buffers and the scalar arguments.

use burn::backend::cubecl::dtype_to_elem_type;
use burn::backend::{Backend, DType, Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

use super::rows::RowShapeLaunch;
use super::{CUBE_UNITS, MAX_FORWARD_CUBES};
use crate::fused::kernels::{
    BinaryKind, BinaryParams, ClassIndexParams, ClassProbsParams, Periodic,
};

/// Whether the cube kernels cover a class-index op: sizes within `u32` (the kernels' scalar
/// arguments), an `ignore_index` within `i32` (targets are compared as `u32`), no in-kernel
/// value checks.
pub(in crate::fused) fn covers_class_index(params: &ClassIndexParams) -> bool {
    !params.check_values
        && fits_u32(params.batch * params.classes * params.spatial)
        && i32::try_from(params.ignore_index).is_ok()
}

/// Whether the cube kernels cover a class-probability op (sizes within `u32`).
pub(in crate::fused) fn covers_class_probs(params: &ClassProbsParams) -> bool {
    fits_u32(params.batch * params.classes * params.spatial)
}

/// Whether the cube kernels cover a binary op: sizes within `u32`, non-zero periods, no
/// positive weight for BCE on probabilities, no in-kernel value checks.
pub(in crate::fused) fn covers_binary<X: Backend>(
    params: &BinaryParams,
    weight: Option<&Periodic<X>>,
    pos_weight: Option<&Periodic<X>>,
) -> bool {
    let period_fits = |w: &Periodic<X>| w.period > 0 && fits_u32(w.period);
    !params.check_values
        && fits_u32(params.len)
        && weight.is_none_or(period_fits)
        && pos_weight.is_none_or(period_fits)
        && (params.kind == BinaryKind::WithLogits || pos_weight.is_none())
}

fn fits_u32(n: usize) -> bool {
    u32::try_from(n).is_ok()
}

/// The layout of a row kernel's cube (see [`super::rows`]): `tx` units per row, `ty` rows,
/// `tx × ty = CUBE_UNITS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RowLayout {
    /// Units per row, `tx` (a power of two).
    pub width: u32,
    /// Rows per cube, `ty`.
    pub rows: u32,
    /// The cube's units numbered along its rows (consecutive units take consecutive rows),
    /// rather than along each row's lanes.
    pub along_spatial: bool,
}

impl RowLayout {
    /// One unit per row, [`CUBE_UNITS`] rows per cube.
    pub(super) const SINGLE: Self = Self {
        width: 1,
        rows: CUBE_UNITS,
        along_spatial: false,
    };
}

/// The layout of a row kernel's cube for rows of `classes` logits at stride `spatial`.
///
/// - Up to 32 classes: one unit per row ([`RowLayout::SINGLE`]); consecutive units take
///   consecutive rows, so for `S > 1` each class is read in runs of consecutive addresses.
/// - More classes, `S` ≥ [`SPATIAL_RUN`] (`[N, C, S]` inputs read in their own layout):
///   8 units per row, 32 rows per cube, numbered along the rows: a warp is 32 consecutive
///   positions of one class stripe, so each of its reads is one run of consecutive addresses
///   (stride `S` from one class to the next), and 8 units share each row's classes.
/// - Otherwise (rows at stride 1, or short spatial runs): one 32-unit row (a warp on most
///   GPUs) per row, its units striding over the classes.
///
/// Few barriers per row in every case, which also keeps lavapipe (where each barrier switches
/// between a workgroup's invocations on one CPU thread) fast.
pub(super) fn row_layout(classes: usize, spatial: usize) -> RowLayout {
    if classes <= 32 {
        RowLayout::SINGLE
    } else if spatial >= SPATIAL_RUN {
        RowLayout {
            width: 8,
            rows: CUBE_UNITS / 8,
            along_spatial: true,
        }
    } else {
        RowLayout {
            width: 32,
            rows: CUBE_UNITS / 32,
            along_spatial: false,
        }
    }
}

/// The shortest spatial run (`S`) that [`row_layout`] lays along the spatial positions: 16
/// consecutive f32 positions fill a 64-byte line, where a 32-unit row would read one value
/// per line.
const SPATIAL_RUN: usize = 16;

/// The cube count of a grid-stride forward over `blocks` blocks of work.
pub(super) fn forward_cubes(blocks: usize) -> u32 {
    blocks.clamp(1, MAX_FORWARD_CUBES) as u32
}

/// The launch of a row kernel (see [`super::rows`]) over `batch × spatial` rows of `classes`
/// classes in cubes of a [`RowLayout`].
pub(super) struct RowLaunch {
    /// The number of cubes (each writes one partial sum of a reduced forward).
    pub cubes: u32,
    /// `cubes` cubes…
    pub count: CubeCount,
    /// …of `tx × ty` units (`ty × tx` along the spatial positions).
    pub dim: CubeDim,
    /// The kernel's shape argument.
    pub shape: RowShapeLaunch,
}

impl RowLaunch {
    /// The launch in cubes of `layout` (e.g. [`row_layout`]`(classes, spatial)`).
    pub(super) fn new(layout: RowLayout, batch: usize, classes: usize, spatial: usize) -> Self {
        let elements = batch * spatial;
        let cubes = forward_cubes(elements.div_ceil(layout.rows as usize));
        let dim = if layout.along_spatial {
            CubeDim::new_2d(layout.rows, layout.width)
        } else {
            CubeDim::new_2d(layout.width, layout.rows)
        };
        Self {
            cubes,
            count: CubeCount::Static(cubes, 1, 1),
            dim,
            shape: RowShapeLaunch::new(
                classes as u32,
                spatial as u32,
                elements as u32,
                u32::from(layout.along_spatial),
            ),
        }
    }
}

/// The cubes of [`CUBE_UNITS`] units of an elementwise kernel over `count` elements.
pub(super) fn elementwise(like: &CubeTensor, count: usize) -> (CubeCount, CubeDim) {
    let cube_dim = CubeDim::new_1d(CUBE_UNITS);
    (
        calculate_cube_count_elemwise(&like.client, count, cube_dim),
        cube_dim,
    )
}

/// An uninitialized tensor on `like`'s device.
pub(super) fn empty_like(like: &CubeTensor, shape: Shape, dtype: DType) -> CubeTensor {
    empty_device_dtype(like.client.clone(), like.device.clone(), shape, dtype)
}

/// A one-element placeholder for an argument a comptime flag leaves unread or unwritten.
pub(super) fn dummy(like: &CubeTensor) -> CubeTensor {
    empty_like(like, Shape::new([1]), like.dtype)
}

/// An optional input (class weights) as a kernel argument: contiguous, or a placeholder.
pub(super) fn or_dummy(tensor: Option<&CubeTensor>, like: &CubeTensor) -> CubeTensor {
    tensor.map_or_else(|| dummy(like), |t| into_contiguous(t.clone()))
}

/// A binary weight `(values, period)` as the kernels take it: the values (or a placeholder)
/// and the period (1 for none).
pub(super) fn periodic_arg(
    weight: Option<(&CubeTensor, usize)>,
    like: &CubeTensor,
) -> (CubeTensor, u32) {
    (
        or_dummy(weight.map(|(values, _)| values), like),
        weight.map_or(1, |(_, period)| period as u32),
    )
}

/// The contiguous `[input, target]` of a backward and its gradient buffers `[input, target]`
/// (uninitialized where wanted, placeholders otherwise); `None` when no gradient is wanted.
#[allow(clippy::type_complexity)]
pub(super) fn backward_tensors(
    input: &CubeTensor,
    target: &CubeTensor,
    wants: [bool; 2],
) -> Option<([CubeTensor; 2], [CubeTensor; 2])> {
    if wants == [false; 2] {
        return None;
    }
    let [input, target] = [input, target].map(|t| into_contiguous(t.clone()));
    let buffer = |wanted: bool, shape: Shape| {
        if wanted {
            empty_like(&input, shape, input.dtype)
        } else {
            dummy(&input)
        }
    };
    let grads = [
        buffer(wants[0], input.shape()),
        buffer(wants[1], target.shape()),
    ];
    Some(([input, target], grads))
}

/// Where a forward writes the input gradient: over the input itself when its buffer is
/// ours to write (a contiguous tensor whose handle nothing else holds: burn-cubecl's own
/// test for in-place ops, `can_mut`; a non-contiguous input is first copied into a new
/// buffer, which is ours), or into a new buffer.
// Short-lived, one or two per launch: not worth a box.
#[allow(clippy::large_enum_variant)]
pub(super) enum GradInto {
    /// Over the input: the kernel's gradient argument aliases its first argument.
    Input,
    /// Into this new tensor (of the gradient's shape, or a placeholder for a gradient not
    /// wanted, which the kernel leaves unwritten).
    New(CubeTensor),
}

impl GradInto {
    /// The contiguous input and where its gradient goes, when it is `wanted` (otherwise a
    /// placeholder that the kernel leaves unwritten).
    pub(super) fn of(input: CubeTensor, wanted: bool) -> (CubeTensor, Self) {
        let input = into_contiguous(input);
        let into = if !wanted {
            Self::New(dummy(&input))
        } else if input.can_mut() && input.is_nonoverlapping() {
            Self::Input
        } else {
            Self::New(empty_like(&input, input.shape(), input.dtype))
        };
        (input, into)
    }

    /// The kernel argument: an alias of argument 0 (`input`, which every such kernel takes
    /// first), or the new tensor.
    pub(super) fn arg(&self, input: &CubeTensor) -> TensorArg {
        match self {
            Self::Input => input.as_tensor_alias(0),
            Self::New(out) => out.clone().into_tensor_arg(),
        }
    }

    /// The gradient once the kernel ran.
    pub(super) fn gradient(self, input: CubeTensor) -> CubeTensor {
        match self {
            Self::Input => input,
            Self::New(out) => out,
        }
    }
}

/// The wanted gradients of [`backward_tensors`].
pub(super) fn wanted(
    [input, target]: [CubeTensor; 2],
    wants: [bool; 2],
) -> [Option<CubeTensor>; 2] {
    [wants[0].then_some(input), wants[1].then_some(target)]
}

/// `ignore_index` as the kernels compare it (see `helpers::target_class`).
pub(super) fn ignore_u32(ignore_index: i64, classes: usize) -> u32 {
    if ignore_index >= 0 && (ignore_index as u64) < classes as u64 {
        ignore_index as u32
    } else {
        u32::MAX
    }
}

/// The lowest finite value of `dtype`: the forward kernels' stand-in for `-inf` logits.
pub(super) fn lowest(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::MIN,
        DType::F16 => -65504.0,
        DType::BF16 => -3.389_531_4e38,
        _ => f32::MIN as f64,
    }
}

/// The kernels' element type of `dtype`: the value of a `#[define]` argument.
pub(super) fn elem(dtype: DType) -> ElemType {
    dtype_to_elem_type(dtype)
}

/// A float scalar argument in `like`'s dtype.
pub(super) fn scalar(value: f64, like: &CubeTensor) -> InputScalar {
    InputScalar::new(value, elem(like.dtype))
}

/// The label-smoothing scalars `(1 - ε, ε / C)` in `like`'s dtype.
pub(super) fn smoothing_args(
    label_smoothing: f64,
    classes: usize,
    like: &CubeTensor,
) -> (InputScalar, InputScalar) {
    (
        scalar(1.0 - label_smoothing, like),
        scalar(label_smoothing / classes as f64, like),
    )
}
