//! `NdArray`'s tensors as the CPU kernels read them: one primitive, [`NdArrayTensor`], whose
//! variant says the dtype (`F32`, `F64`, …), each holding an `NdArrayStorage` (burn-ndarray
//! does not export the type; its methods are public).

// Burn 0.22 deprecates burn-ndarray in favour of Flex; its kernels stay here while Burn ships
// it (as `fused::kernels_for` says).
#![allow(deprecated)]

use std::borrow::Cow;

use burn::backend::{DType, TensorMetadata};
use burn_ndarray::{NdArray, NdArrayTensor};

use super::gemm::Matrix;
use super::{CpuTensors, Element, indices_from, reals_from};

/// The elements of a storage variant in row-major order, through `$from` (borrowed when the
/// storage is contiguous).
macro_rules! elements {
    ($storage:expr, $from:ident, $convert:expr) => {{
        let view = $storage.view();
        match view.to_slice() {
            Some(slice) => $from(slice),
            None => Cow::Owned(view.iter().map($convert).collect()),
        }
    }};
}

/// The elements of a storage variant as `T`s, when nothing else holds them (an owned,
/// unshared array: not borrowed from a file, not shared with a clone or a view) and they are
/// contiguous in row-major order. `NdArrayStorage::is_unique` is false for borrowed storage
/// and the `ArcArray`'s own uniqueness for owned storage.
macro_rules! unique {
    ($storage:expr) => {{
        let storage = $storage;
        if storage.is_owned() && storage.is_unique() {
            // Owned and unique: `ensure_owned` converts nothing, `as_slice_mut` copies nothing.
            storage
                .ensure_owned()
                .as_slice_mut()
                .map(|values| bytemuck::cast_slice_mut(values))
        } else {
            None
        }
    }};
}

/// A 2-D storage variant as a [`Matrix`] of its memory: the view's elements must fill one
/// slice (any order of the axes, so a transpose qualifies); a slice with gaps gives `None`.
macro_rules! matrix {
    ($storage:expr) => {{
        let view = $storage.view();
        let memory = view.to_slice_memory_order()?;
        let dims: [usize; 2] = view.shape().try_into().ok()?;
        let strides: [isize; 2] = view.strides().try_into().ok()?;
        // The first element's place in the memory (not its start when a stride is negative).
        let offset = (view.as_ptr() as usize - memory.as_ptr() as usize) / size_of_val(&memory[0]);
        Matrix::in_storage(bytemuck::cast_slice(memory), offset, dims, strides)
    }};
}

impl CpuTensors for NdArray {
    fn reals<T: Element>(tensor: &NdArrayTensor) -> Cow<'_, [T]> {
        match tensor {
            NdArrayTensor::F32(storage) => {
                elements!(storage, reals_from, |&v| T::from_f64(v as f64))
            }
            NdArrayTensor::F64(storage) => elements!(storage, reals_from, |&v| T::from_f64(v)),
            other => panic!(
                "fused kernels: expected a float tensor, got {:?}",
                other.dtype()
            ),
        }
    }

    fn indices(tensor: &NdArrayTensor) -> Cow<'_, [i64]> {
        match tensor {
            NdArrayTensor::I64(storage) => elements!(storage, indices_from, |&v| v),
            NdArrayTensor::I32(storage) => elements!(storage, indices_from, |&v| v as i64),
            NdArrayTensor::I16(storage) => elements!(storage, indices_from, |&v| v as i64),
            NdArrayTensor::I8(storage) => elements!(storage, indices_from, |&v| v as i64),
            NdArrayTensor::U64(storage) => elements!(storage, indices_from, |&v| v as i64),
            NdArrayTensor::U32(storage) => elements!(storage, indices_from, |&v| v as i64),
            NdArrayTensor::U16(storage) => elements!(storage, indices_from, |&v| v as i64),
            NdArrayTensor::U8(storage) => elements!(storage, indices_from, |&v| v as i64),
            other => panic!(
                "fused kernels: expected an integer tensor, got {:?}",
                other.dtype()
            ),
        }
    }

    fn unique_reals_mut<T: Element>(tensor: &mut NdArrayTensor) -> Option<&mut [T]> {
        match tensor {
            NdArrayTensor::F32(storage) if T::dtype() == DType::F32 => unique!(storage),
            NdArrayTensor::F64(storage) if T::dtype() == DType::F64 => unique!(storage),
            _ => None,
        }
    }

    fn matrix<T: Element>(tensor: &NdArrayTensor) -> Option<Matrix<'_, T>> {
        match tensor {
            NdArrayTensor::F32(storage) if T::dtype() == DType::F32 => matrix!(storage),
            NdArrayTensor::F64(storage) if T::dtype() == DType::F64 => matrix!(storage),
            _ => None,
        }
    }
}
