//! The tolerance rule of a backend check: `|value - reference| <= atol + rtol * |reference|`
//! (`torch.testing.assert_close`'s), with defaults from the dtypes compared.

use burn::tensor::DType;

/// Absolute and relative tolerance: `|value - reference| <= atol + rtol * |reference|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative tolerance, relative to the reference value.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
}

impl Tolerance {
    /// The default tolerance for comparing values computed in `dtype`: f64 `rtol 1e-7`,
    /// `atol 1e-7`; f32 (and flex32) `rtol 1e-4`, `atol 1e-5`; f16 `rtol 1e-2`, `atol 1e-3`;
    /// bf16 `rtol 5e-2`, `atol 1e-2`; integers, booleans: exact (`0`, `0`).
    pub fn for_dtype(dtype: DType) -> Self {
        let (rtol, atol) = match dtype {
            DType::F64 => (1e-7, 1e-7),
            DType::F32 | DType::Flex32 => (1e-4, 1e-5),
            DType::F16 => (1e-2, 1e-3),
            DType::BF16 => (5e-2, 1e-2),
            DType::QFloat(_) => (5e-2, 1e-2),
            _ => (0.0, 0.0),
        };
        Self { rtol, atol }
    }

    /// The default tolerance of the less precise of two dtypes: an f32 tensor compared with an
    /// f64 reference gets f32's.
    pub fn for_dtypes(a: DType, b: DType) -> Self {
        let (ta, tb) = (Self::for_dtype(a), Self::for_dtype(b));
        if ta.rtol >= tb.rtol { ta } else { tb }
    }

    /// The allowed error at a reference value.
    pub fn allowed(&self, reference: f64) -> f64 {
        self.atol + self.rtol * reference.abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_follows_the_less_precise_dtype() {
        assert_eq!(
            Tolerance::for_dtypes(DType::F64, DType::F32),
            Tolerance::for_dtype(DType::F32)
        );
        assert_eq!(
            Tolerance::for_dtypes(DType::F32, DType::F64),
            Tolerance::for_dtype(DType::F32)
        );
        assert_eq!(
            Tolerance::for_dtypes(DType::F64, DType::F64),
            Tolerance::for_dtype(DType::F64)
        );
    }
}
