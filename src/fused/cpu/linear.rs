//! The products of `linear_cross_entropy` on the CPU backends ([`GemmProducts`]): `hidden`
//! and `weight` read where they lie, at their strides (a transposed `hidden` or a tied
//! embedding's transposed weight is not copied), each chunk's logits made in one new buffer
//! with the bias as its starting value, and the gradients accumulated in one buffer each:
//! `[N, D]` for `hidden` (each chunk writes its rows), `[D, V]` for `weight` (each chunk adds
//! `hidden[rows]ᵀ · dlogits` in place) and `[V]` for `bias`. Nothing of `W`'s size is
//! allocated but the weight's gradient itself.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Range;

use burn::backend::tensor::FloatTensor;
use burn::backend::{DType, TensorMetadata};
use rayon::prelude::*;

use super::gemm::{Matrix, multiply};
use super::{CpuTensors, Element, tensor};
use crate::fused::linear_products::{BurnProducts, Grads, LinearOperands, LinearProducts};

/// The CPU's rows per chunk: as many as 2^24 logits hold, and at least 256 where 256 rows
/// stay within 2^25 logits, a multiple of 64 from 64 up, at most `N`: 512 rows at
/// `V = 32,000`, 256 at `V = 128,256`. The products' speed per row grows with the rows up to
/// about 256 to 512 (measured with `gemm` on 2 threads at `D = 1024`, `V = 32,000`: the three
/// products at 128 rows took about 1.3× as long per row as at 512); the chunk's logits (their
/// gradient written over them) are the only buffer that grows with it: 64 MiB in `f32` at 512
/// rows and `V = 32,000`, 125 MiB at 256 rows and `V = 128,256`.
pub(super) fn chunk_rows(rows: usize, _width: usize, classes: usize) -> usize {
    let classes = classes.max(1);
    let at_least = if 256 * classes <= 1 << 25 { 256 } else { 1 };
    let chunk = ((1 << 24) / classes).max(at_least);
    let chunk = if chunk >= 64 { chunk / 64 * 64 } else { chunk };
    chunk.clamp(1, rows.max(1))
}

/// The products of `operands` on `X`'s storage with the `gemm` crate, for `f32` and `f64`
/// tensors; [`BurnProducts`] for other dtypes.
pub(super) fn products<'a, X: CpuTensors>(
    operands: LinearOperands<'a, X>,
    wants: [bool; 3],
) -> Box<dyn LinearProducts<X> + 'a> {
    match operands.hidden.dtype() {
        DType::F32 => Box::new(GemmProducts::<f32, X>::new(operands, wants)),
        DType::F64 => Box::new(GemmProducts::<f64, X>::new(operands, wants)),
        _ => Box::new(BurnProducts::new(operands, wants)),
    }
}

/// An operand of the products: a view of the tensor's own storage, or (for a dtype other than
/// `T`, or a layout `gemm` cannot read) a row-major copy.
enum Operand<'a, T> {
    View(Matrix<'a, T>),
    Copy(Vec<T>, [usize; 2]),
}

impl<'a, T: Element> Operand<'a, T> {
    fn new<X: CpuTensors>(tensor: &'a FloatTensor<X>) -> Self {
        match X::matrix::<T>(tensor) {
            Some(view) => Self::View(view),
            None => {
                let dims = tensor.shape().dims::<2>();
                Self::Copy(X::reals::<T>(tensor).into_owned(), dims)
            }
        }
    }

    fn matrix(&self) -> Matrix<'_, T> {
        match self {
            Self::View(view) => *view,
            Self::Copy(values, [rows, cols]) => Matrix::row_major(values, *rows, *cols),
        }
    }
}

/// The products with `gemm` on `T` storage, and the gradients' buffers.
struct GemmProducts<'a, T: Element, X: CpuTensors> {
    hidden: Operand<'a, T>,
    weight: Operand<'a, T>,
    bias: Option<Cow<'a, [T]>>,
    rows: usize,
    width: usize,
    classes: usize,
    grad_hidden: Option<Vec<T>>,
    grad_weight: Option<Vec<T>>,
    /// Whether a chunk has written `grad_weight` yet (the first overwrites its zeros).
    weight_written: bool,
    grad_bias: Option<Vec<T>>,
    /// The last chunk's logits gradient, once its products are done: the next chunk of the
    /// same size writes its logits there (its pages already mapped) instead of in a new
    /// buffer.
    spare: Option<FloatTensor<X>>,
    /// `grad_hidden[rows]ᵀ` of one chunk, for [`TRANSPOSED_ROWS`] rows or fewer.
    transposed: Vec<T>,
    _backend: PhantomData<fn() -> X>,
}

impl<'a, T: Element, X: CpuTensors> GemmProducts<'a, T, X> {
    fn new(operands: LinearOperands<'a, X>, [hidden, weight, bias]: [bool; 3]) -> Self {
        let LinearOperands {
            rows,
            width,
            classes,
            ..
        } = operands;
        let bias_values = operands.bias.map(|bias| X::reals::<T>(bias));
        Self {
            hidden: Operand::new::<X>(operands.hidden),
            weight: Operand::new::<X>(operands.weight),
            // Zeroed buffers are allocated zeroed by the system: pages are only touched where
            // written.
            grad_hidden: hidden.then(|| vec![T::ZERO; rows * width]),
            grad_weight: weight.then(|| vec![T::ZERO; width * classes]),
            weight_written: false,
            grad_bias: (bias && bias_values.is_some()).then(|| vec![T::ZERO; classes]),
            bias: bias_values,
            spare: None,
            transposed: Vec::new(),
            rows,
            width,
            classes,
            _backend: PhantomData,
        }
    }
}

/// Columns each rayon task sums for the bias gradient.
const BIAS_COLUMNS: usize = 1 << 10;

/// Up to this many rows, a chunk's `grad_hidden[rows] = dlogits · Wᵀ` is made as its
/// transpose `W · dlogitsᵀ` (`[D, rows]`, row-major) and then transposed into place: `gemm`
/// ran that form faster on 2 threads (`f32`, AVX-512): at `D = 1024`, `V = 32,000`, 304 against
/// 254 GFLOP/s at 512 rows and 292 against 198 at 256; at `D = 2048`, `V = 128,256`, 292
/// against 234 at 256 rows; at 1024 rows it was slower (230 against 292 at `D = 2048`).
const TRANSPOSED_ROWS: usize = 512;

/// Rows of `dst` each rayon task of [`transpose_into`] fills.
const STRIP_ROWS: usize = 32;

/// `dst[i·cols + j] = src[j·rows + i]`: the `[cols, rows]` row-major `src` transposed into
/// the `[rows, cols]` row-major `dst`, rayon tasks over strips of [`STRIP_ROWS`] rows of
/// `dst` (each reads a short contiguous run of every row of `src`).
fn transpose_into<T: Element>(dst: &mut [T], src: &[T], rows: usize, cols: usize) {
    debug_assert!(dst.len() == rows * cols && src.len() == rows * cols);
    dst.par_chunks_mut(STRIP_ROWS * cols)
        .enumerate()
        .for_each(|(strip, block)| {
            let first_row = strip * STRIP_ROWS;
            let block_rows = block.len() / cols;
            for col in 0..cols {
                let column = &src[col * rows + first_row..][..block_rows];
                for (i, &value) in column.iter().enumerate() {
                    block[i * cols + col] = value;
                }
            }
        });
}

impl<T: Element, X: CpuTensors> LinearProducts<X> for GemmProducts<'_, T, X> {
    fn logits(&mut self, rows: Range<usize>) -> FloatTensor<X> {
        let (count, classes) = (rows.len(), self.classes);
        let hidden = self.hidden.matrix().rows(rows);
        let weight = self.weight.matrix();
        let with_bias = self.bias.is_some();
        // The bias as every row's starting value, then the product added to it (without a
        // bias the product overwrites every value).
        let compute = |logits: &mut [T]| {
            if let Some(bias) = &self.bias {
                for row in logits.chunks_exact_mut(classes) {
                    row.copy_from_slice(bias);
                }
            }
            multiply(logits, hidden, weight, with_bias);
        };
        if let Some(mut spare) = self.spare.take()
            && spare.shape().dims::<2>() == [count, classes]
            && let Some(logits) = X::unique_reals_mut::<T>(&mut spare)
        {
            compute(logits);
            return spare;
        }
        // Zeroed buffers are allocated zeroed by the system: pages are only touched where
        // written.
        let mut logits = vec![T::ZERO; count * classes];
        compute(&mut logits);
        tensor::<T, X>(logits, &[count, classes])
    }

    fn add_gradients(&mut self, rows: Range<usize>, gradient: FloatTensor<X>) {
        let (width, classes) = (self.width, self.classes);
        // The fused kernel's gradient, written over the logits: contiguous, borrowed.
        let values = X::reals::<T>(&gradient);
        let dlogits = Matrix::row_major(&values, rows.len(), classes);
        if let Some(grad) = &mut self.grad_hidden {
            let part = &mut grad[rows.start * width..rows.end * width];
            let weight = self.weight.matrix();
            if rows.len() <= TRANSPOSED_ROWS {
                let transposed = &mut self.transposed;
                transposed.resize(rows.len() * width, T::ZERO);
                multiply(transposed, weight, dlogits.t(), false);
                transpose_into(part, transposed, rows.len(), width);
            } else {
                multiply(part, dlogits, weight.t(), false);
            }
        }
        if let Some(grad) = &mut self.grad_weight {
            let hidden = self.hidden.matrix().rows(rows);
            multiply(grad, hidden.t(), dlogits, self.weight_written);
            self.weight_written = true;
        }
        if let Some(grad) = &mut self.grad_bias {
            grad.par_chunks_mut(BIAS_COLUMNS)
                .enumerate()
                .for_each(|(block, sums)| {
                    let first = block * BIAS_COLUMNS;
                    for row in values.chunks_exact(classes) {
                        let row = &row[first..first + sums.len()];
                        for (sum, &value) in sums.iter_mut().zip(row) {
                            *sum = *sum + value;
                        }
                    }
                });
        }
        drop(values);
        self.spare = Some(gradient);
    }

    fn finish(self: Box<Self>) -> Grads<X> {
        let (rows, width, classes) = (self.rows, self.width, self.classes);
        [
            self.grad_hidden
                .map(|grad| tensor::<T, X>(grad, &[rows, width])),
            self.grad_weight
                .map(|grad| tensor::<T, X>(grad, &[width, classes])),
            self.grad_bias.map(|grad| tensor::<T, X>(grad, &[classes])),
        ]
    }
}
