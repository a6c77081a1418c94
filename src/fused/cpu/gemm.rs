//! Matrix products on borrowed, strided storage: [`Matrix`], a view of `rows × cols` elements
//! at any strides (a transpose is a view with its strides swapped), and [`multiply`], the
//! `gemm` crate's product into a row-major buffer, which it overwrites or adds to.
//!
//! The `gemm` crate is the one Flex's own matrix product runs on: it takes any strides, so
//! neither operand is copied into a layout first, and it accumulates into its destination
//! (`dst = dst + lhs · rhs`), so a gradient summed over chunks needs no temporary. It picks
//! AVX-512, AVX2 or baseline kernels at run time (the crate is built with its `x86-v4`
//! feature, whose kernels only run on a CPU that has AVX-512) and splits a product over
//! rayon's threads.

use std::marker::PhantomData;
use std::ops::Range;

use super::Element;

/// `rows × cols` elements of `T`, element `(i, j)` at `i · row_stride + j · col_stride` from
/// the first, every one inside storage borrowed for `'a`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Matrix<'a, T> {
    first: *const T,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
    _storage: PhantomData<&'a [T]>,
}

impl<'a, T: Element> Matrix<'a, T> {
    /// The view of `storage` whose element `(0, 0)` is `storage[offset]`; `None` when an
    /// element would lie outside `storage`.
    pub(crate) fn in_storage(
        storage: &'a [T],
        offset: usize,
        [rows, cols]: [usize; 2],
        [row_stride, col_stride]: [isize; 2],
    ) -> Option<Self> {
        if rows > 0 && cols > 0 {
            // The lowest and highest offsets of an element, whatever the strides' signs.
            let extent = |n: usize, stride: isize| stride.checked_mul(n as isize - 1);
            let (down, across) = (extent(rows, row_stride)?, extent(cols, col_stride)?);
            let low = offset as isize + down.min(0) + across.min(0);
            let high = offset as isize + down.max(0) + across.max(0);
            if low < 0 || high >= storage.len() as isize {
                return None;
            }
        }
        Some(Self {
            // In bounds (checked above), or not read (an empty view).
            first: storage.as_ptr().wrapping_add(offset),
            rows,
            cols,
            row_stride,
            col_stride,
            _storage: PhantomData,
        })
    }

    /// `values` as a row-major `rows × cols` matrix.
    pub(crate) fn row_major(values: &'a [T], rows: usize, cols: usize) -> Self {
        assert_eq!(values.len(), rows * cols, "a row-major matrix's length");
        Self::in_storage(values, 0, [rows, cols], [cols as isize, 1]).expect("in bounds")
    }

    /// Where element `(0, 0)` lies (for tests: whether a view is the storage's own).
    #[cfg(test)]
    pub(crate) fn first(&self) -> *const T {
        self.first
    }

    pub(crate) fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// The rows `rows` of this matrix.
    pub(crate) fn rows(self, rows: Range<usize>) -> Self {
        assert!(
            rows.start <= rows.end && rows.end <= self.rows,
            "rows in range"
        );
        Self {
            // Row `rows.start` lies in the storage (or the view is empty and never read).
            first: self
                .first
                .wrapping_offset(rows.start as isize * self.row_stride),
            rows: rows.len(),
            ..self
        }
    }

    /// The transpose: the same elements, strides swapped.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// Products smaller than this (in multiply-adds) run on the calling thread.
const PARALLEL_MULTIPLY_ADDS: usize = 1 << 21;

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`: `lhs` `m × k`, `rhs` `k × n`,
/// `dst` the `m × n` row-major buffer.
pub(crate) fn multiply<T: Element>(
    dst: &mut [T],
    lhs: Matrix<'_, T>,
    rhs: Matrix<'_, T>,
    accumulate: bool,
) {
    let ([m, k], [k_rhs, n]) = (lhs.dims(), rhs.dims());
    assert_eq!(k, k_rhs, "multiply: the operands' inner dimensions");
    assert_eq!(dst.len(), m * n, "multiply: the destination's length");
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if m * n * k >= PARALLEL_MULTIPLY_ADDS {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `dst` holds the m × n destination at strides (n, 1), exclusively borrowed;
    // every element of `lhs` and `rhs` lies in storage borrowed for their lifetimes (their
    // constructors check it); `T` is `f32` or `f64`, which `gemm` supports. With
    // `read_dst = accumulate`, gemm computes `dst = 1 · dst + 1 · lhs · rhs`, or
    // `dst = 1 · lhs · rhs` without reading `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.first,
            lhs.col_stride,
            lhs.row_stride,
            rhs.first,
            rhs.col_stride,
            rhs.row_stride,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{Matrix, multiply};

    /// The product by its definition, in f64.
    fn reference(lhs: &Matrix<'_, f64>, rhs: &Matrix<'_, f64>) -> Vec<f64> {
        let ([m, k], [_, n]) = (lhs.dims(), rhs.dims());
        let at = |a: &Matrix<'_, f64>, i: usize, j: usize| {
            // SAFETY: (i, j) is inside the view, which lies in its storage.
            unsafe {
                *a.first
                    .offset(i as isize * a.row_stride + j as isize * a.col_stride)
            }
        };
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|l| at(lhs, i, l) * at(rhs, l, j)).sum();
            }
        }
        out
    }

    fn values(len: usize, seed: f64) -> Vec<f64> {
        (0..len).map(|i| (i as f64 * 0.731 + seed).sin()).collect()
    }

    #[test]
    fn products_at_odd_sizes_and_strides_match_the_definition() {
        // Sizes that are not multiples of any vector width, a transposed operand, a row range,
        // and a product large enough to run on several threads.
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (17, 33, 9), (130, 70, 301)] {
            let a = values(m * k, 0.1);
            let b = values(k * n, 0.7);
            let a_t = values(k * m, 0.3);
            let lhs = Matrix::row_major(&a, m, k);
            let rhs = Matrix::row_major(&b, k, n);
            let lhs_t = Matrix::row_major(&a_t, k, m).t();
            for (lhs, rhs) in [(lhs, rhs), (lhs_t, rhs)] {
                let expected = reference(&lhs, &rhs);
                let mut dst = vec![f64::NAN; m * n];
                multiply(&mut dst, lhs, rhs, false);
                for (got, want) in dst.iter().zip(&expected) {
                    assert!((got - want).abs() < 1e-12, "{m}×{k}×{n}: {got} vs {want}");
                }
                // Accumulating adds the product once more.
                multiply(&mut dst, lhs, rhs, true);
                for (got, want) in dst.iter().zip(&expected) {
                    assert!((got - 2.0 * want).abs() < 1e-12, "{m}×{k}×{n} accumulated");
                }
            }
            // A range of rows of the left operand.
            if m > 2 {
                let part = lhs.rows(1..m - 1);
                let expected = reference(&part, &rhs);
                let mut dst = vec![0.0; (m - 2) * n];
                multiply(&mut dst, part, rhs, false);
                for (got, want) in dst.iter().zip(&expected) {
                    assert!((got - want).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn views_outside_their_storage_are_refused() {
        let storage = vec![0.0f32; 12];
        assert!(Matrix::in_storage(&storage, 0, [3, 4], [4, 1]).is_some());
        assert!(Matrix::in_storage(&storage, 1, [3, 4], [4, 1]).is_none());
        assert!(Matrix::in_storage(&storage, 0, [4, 3], [1, 4]).is_some());
        assert!(Matrix::in_storage(&storage, 0, [4, 4], [1, 4]).is_none());
        // A flipped view: row stride negative, starting from the last row.
        assert!(Matrix::in_storage(&storage, 8, [3, 4], [-4, 1]).is_some());
        assert!(Matrix::in_storage(&storage, 7, [3, 4], [-4, 1]).is_none());
        assert!(Matrix::in_storage(&storage, 0, [0, 4], [4, 1]).is_some());
    }
}
