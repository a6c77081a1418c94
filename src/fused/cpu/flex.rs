//! `Flex`'s tensors as the CPU kernels read them.

use std::borrow::Cow;

use burn::backend::DType;
use burn_flex::{Flex, FlexTensor};

use super::gemm::Matrix;
use super::{CpuTensors, Element, indices_from, reals_from};

/// The elements of `tensor` as `S`s through `$from`: borrowed when the tensor is contiguous,
/// from a contiguous copy otherwise.
macro_rules! elements {
    ($tensor:expr, $s:ty, $from:ident) => {
        match $tensor.as_slice::<$s>() {
            Some(slice) => $from(slice),
            None => Cow::Owned(
                $from(
                    $tensor
                        .to_contiguous()
                        .as_slice::<$s>()
                        .expect("a contiguous copy"),
                )
                .into_owned(),
            ),
        }
    };
}

impl CpuTensors for Flex {
    fn reals<T: Element>(tensor: &FlexTensor) -> Cow<'_, [T]> {
        match tensor.dtype() {
            DType::F32 => elements!(tensor, f32, reals_from),
            DType::F64 => elements!(tensor, f64, reals_from),
            other => panic!("fused kernels: expected an f32 or f64 tensor, got {other:?}"),
        }
    }

    fn indices(tensor: &FlexTensor) -> Cow<'_, [i64]> {
        match tensor.dtype() {
            DType::I64 => elements!(tensor, i64, indices_from),
            DType::I32 => elements!(tensor, i32, indices_from),
            DType::I16 => elements!(tensor, i16, indices_from),
            DType::I8 => elements!(tensor, i8, indices_from),
            DType::U64 => elements!(tensor, u64, indices_from),
            DType::U32 => elements!(tensor, u32, indices_from),
            DType::U16 => elements!(tensor, u16, indices_from),
            DType::U8 => elements!(tensor, u8, indices_from),
            other => panic!("fused kernels: expected an integer tensor, got {other:?}"),
        }
    }

    fn unique_reals_mut<T: Element>(tensor: &mut FlexTensor) -> Option<&mut [T]> {
        if tensor.dtype() != T::dtype() || !tensor.is_unique() {
            return None;
        }
        // The tensor's elements within its storage, when they lie contiguous in row-major
        // order (a view may cover part of it).
        let (start, end) = tensor.layout().contiguous_offsets()?;
        let values = tensor.try_storage_mut::<T>()?;
        Some(&mut values[start..end])
    }

    fn matrix<T: Element>(tensor: &FlexTensor) -> Option<Matrix<'_, T>> {
        let layout = tensor.layout();
        if tensor.dtype() != T::dtype() {
            return None;
        }
        let dims: [usize; 2] = layout.shape().to_vec().try_into().ok()?;
        let strides: [isize; 2] = layout.strides().try_into().ok()?;
        Matrix::in_storage(tensor.storage::<T>(), layout.start_offset(), dims, strides)
    }
}
