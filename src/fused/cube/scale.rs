//! The backward of every fused loss on the cube backends: the gradients the forward computed
//! for a unit upstream gradient, times the upstream gradient ([`Upstream`]), elementwise and
//! over the gradient's own buffer when nothing else holds it.

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::launch::{GradInto, elem, elementwise};
use crate::fused::kernels::Upstream;

/// Which upstream value scales each gradient element, a comptime choice of
/// [`scale_kernel()`]: [`Upstream`] without its sizes (run-time arguments of the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Scale {
    /// `upstream[0]`.
    Whole,
    /// `upstream[n * S + s]` for element `(n, c, s)` of `[N, C, S]`.
    Rows,
    /// `upstream[i]`.
    Elements,
}

/// `out[i] = upstream[j] × grad[i]`, one unit per element, with `j` as `how` says; `out` may
/// alias `grad` (argument 0).
#[cube(launch)]
fn scale_kernel<F: Float>(
    grad: &Tensor<F>,
    upstream: &Tensor<F>,
    out: &mut Tensor<F>,
    classes: u32,
    spatial: u32,
    #[comptime] how: Scale,
    #[define(F)] _dtype: ElemType,
) {
    let pos = ABSOLUTE_POS;
    if pos >= grad.len() {
        terminate!();
    }
    let g = match how {
        Scale::Whole => upstream[0],
        Scale::Rows => {
            let s_count = spatial as usize;
            upstream[(pos / (classes as usize * s_count)) * s_count + pos % s_count]
        }
        Scale::Elements => upstream[pos],
    };
    out[pos] = g * grad[pos];
}

/// `grad` times `upstream` as `how` says (see `Kernels::scale`), over `grad`'s buffer when
/// it is ours ([`GradInto`]), into a new one otherwise. Always one launch, even for an
/// upstream gradient of 1: checking it would read it back from the device.
pub(in crate::fused) fn scale(grad: CubeTensor, upstream: CubeTensor, how: Upstream) -> CubeTensor {
    let (grad, into) = GradInto::of(grad, true);
    let upstream = into_contiguous(upstream);
    let (kind, classes, spatial) = match how {
        Upstream::Whole => (Scale::Whole, 1, 1),
        Upstream::Rows { classes, spatial } => (Scale::Rows, classes as u32, spatial as u32),
        Upstream::Elements => (Scale::Elements, 1, 1),
    };
    let (cube_count, cube_dim) = elementwise(&grad, grad.meta.num_elements());
    scale_kernel::launch(
        &grad.client,
        cube_count,
        cube_dim,
        grad.clone().into_tensor_arg(),
        upstream.into_tensor_arg(),
        into.arg(&grad),
        classes,
        spatial,
        kind,
        elem(grad.dtype),
    );
    into.gradient(grad)
}
