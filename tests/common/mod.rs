//! The one home of the helpers that tests, benches and examples share.
//!
//! - **The backend matrix.** `matrix_tests!(a, b, …)` takes test functions generic over
//!   `B: AutodiffBackend` with the signature `fn a<B: AutodiffBackend>(device: &B::Device)`
//!   and instantiates each on:
//!   - `ndarray`: `Autodiff<NdArray<f32>>`, always;
//!   - `wgpu`: `Autodiff<Wgpu>` (the fusion backend, f32), when a wgpu adapter exists. When
//!     none does, each wgpu test prints a `SKIPPED` line with the reason and returns; with
//!     `BURN_XENT_REQUIRE_WGPU=1` it fails instead (CI sets it).
//! - **Host data.** [`Stream`], the one seeded generator (SplitMix64), and
//!   [`normalised_over_classes`], class probabilities from raw positive values.
//! - **Tensors.** [`float`] and [`float_as`] create float tensors in a stated dtype (the
//!   backend's own, or the one given), [`int`] class indices, [`values`] reads any tensor back
//!   as f64.
//! - **Comparisons.** [`close`] is the one tolerance rule, `|got - want| <= atol + rtol |want|`
//!   (NaN matches only NaN, an infinity only the same infinity); [`assert_close`] applies it
//!   element-wise. [`assert_panics_with`] checks a refusal's message.
//!
//! Tests include this file as `mod common`; `benches/common` and the examples include it with
//! `#[path]`.
#![allow(dead_code)]

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Element, Shape};
pub use burn::tensor::{Int, Tensor, TensorData};

// ---------------------------------------------------------------- the backend matrix

/// The CPU half of the matrix.
pub type NdArrayAd = burn_autodiff::Autodiff<burn_ndarray::NdArray<f32>>;
/// The CPU half in f64, for checks that want double precision.
pub type NdArrayAd64 = burn_autodiff::Autodiff<burn_ndarray::NdArray<f64>>;
/// Burn's Flex CPU backend (f32; f64 tensors by dtype).
pub type FlexAd = burn_autodiff::Autodiff<burn_flex::Flex>;
/// The GPU half of the matrix: Burn's default wgpu backend (with fusion).
pub type WgpuAd = burn_autodiff::Autodiff<burn_wgpu::Wgpu>;

pub use burn_xent::availability::REQUIRE_WGPU;

/// Why wgpu cannot run here, or `None` when it can (probed once, quietly, by the library).
pub fn wgpu_unavailable() -> Option<String> {
    burn_xent::availability::backend_unavailable::<burn_wgpu::Wgpu>(&Default::default())
}

/// True when the wgpu half can run; otherwise prints `SKIPPED wgpu::<test>` with the reason (or
/// panics when `BURN_XENT_REQUIRE_WGPU=1`).
pub fn wgpu_ready(test: &str) -> bool {
    burn_xent::availability::run_or_skip::<burn_wgpu::Wgpu>(
        &format!("wgpu::{test}"),
        &Default::default(),
        burn_xent::availability::required_by_env(REQUIRE_WGPU),
    )
}

/// Instantiates generic test functions on every backend of the matrix.
#[macro_export]
macro_rules! matrix_tests {
    ($($test:ident),* $(,)?) => {
        mod ndarray {
            $crate::matrix_tests!(@cpu NdArrayAd, fused, burn_xent::LossPath::Fused, $($test),*);
            $crate::matrix_tests!(@cpu NdArrayAd, composite, burn_xent::LossPath::Composite, $($test),*);
        }
        mod flex {
            $crate::matrix_tests!(@cpu FlexAd, fused, burn_xent::LossPath::Fused, $($test),*);
            $crate::matrix_tests!(@cpu FlexAd, composite, burn_xent::LossPath::Composite, $($test),*);
        }
        mod wgpu {
            $crate::matrix_tests!(@wgpu fused, burn_xent::LossPath::Fused, $($test),*);
            $crate::matrix_tests!(@wgpu composite, burn_xent::LossPath::Composite, $($test),*);
        }
    };
    (@cpu $backend:ident, $path:ident, $loss_path:expr, $($test:ident),*) => {
        mod $path {
            $(
                #[test]
                fn $test() {
                    burn_xent::with_loss_path($loss_path, || {
                        super::super::$test::<$crate::common::$backend>(&Default::default())
                    });
                }
            )*
        }
    };
    (@wgpu $path:ident, $loss_path:expr, $($test:ident),*) => {
        mod $path {
            $(
                #[test]
                fn $test() {
                    if $crate::common::wgpu_ready(stringify!($test)) {
                        burn_xent::with_loss_path($loss_path, || {
                            super::super::$test::<$crate::common::WgpuAd>(&Default::default())
                        });
                    }
                }
            )*
        }
    };
}

// ---------------------------------------------------------------- panics

/// The message of a caught panic (`panic!` with a format string or a literal), if it has one.
pub fn panic_message(panic: &(dyn Any + Send)) -> Option<String> {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
}

/// Runs `f`, which must panic with a message containing every one of `needles`.
#[track_caller]
pub fn assert_panics_with<R>(f: impl FnOnce() -> R, needles: &[&str]) {
    let panic = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic mentioning {needles:?}, but the call returned"),
        Err(panic) => panic,
    };
    let message = panic_message(&*panic).unwrap_or_default();
    for needle in needles {
        assert!(
            message.contains(needle),
            "panic message {message:?} does not mention {needle:?}"
        );
    }
}

// ---------------------------------------------------------------- host data

/// A deterministic pseudo-random stream (SplitMix64), so inputs are the same on every backend
/// and every run without a rand dependency.
pub struct Stream(u64);

impl Stream {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-12);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// `n` normal values scaled by `scale`.
    pub fn normals(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.normal() * scale).collect()
    }

    /// `n` uniform values in `[lo, hi)`.
    pub fn uniforms(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| lo + (hi - lo) * self.uniform()).collect()
    }

    /// `n` integers in `[0, k)`.
    pub fn classes(&mut self, n: usize, k: usize) -> Vec<i64> {
        (0..n)
            .map(|_| (self.next_u64() % k as u64) as i64)
            .collect()
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Class probabilities: `raw` (positive, of shape `[N, C, d1, …]`, row-major) divided by its
/// sum over the class dimension 1, so each `[n, :, d…]` sums to 1.
pub fn normalised_over_classes(raw: &[f64], shape: &[usize]) -> Vec<f64> {
    assert_eq!(raw.len(), shape.iter().product::<usize>(), "{shape:?}");
    let classes = shape[1];
    let inner: usize = shape[2..].iter().product();
    let mut out = raw.to_vec();
    for n in 0..shape[0] {
        for s in 0..inner {
            let at = |c: usize| (n * classes + c) * inner + s;
            let total: f64 = (0..classes).map(|c| raw[at(c)]).sum();
            for c in 0..classes {
                out[at(c)] = raw[at(c)] / total;
            }
        }
    }
    out
}

// ---------------------------------------------------------------- tensors

/// `B`'s own float dtype (f32 for `NdArray<f32>` and wgpu, f64 for `NdArray<f64>`).
pub fn float_dtype<B: Backend>() -> DType {
    <B::FloatElem as Element>::dtype()
}

/// A float tensor of `shape` from host data, created in `dtype`.
///
/// The dtype is always stated: Burn 0.21 fixes a device type's default float dtype when the
/// first tensor is created on it, and `NdArray<f32>` and `NdArray<f64>` share `NdArrayDevice`,
/// so in a process that runs both, `Tensor::from_data(data, &device)` on `NdArray<f64>` may
/// silently give f32 tensors (or the reverse).
pub fn float_as<B: Backend, const D: usize, E: Element>(
    values: Vec<E>,
    shape: impl Into<Shape>,
    device: &B::Device,
    dtype: DType,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), (device, dtype))
}

/// A float tensor of `shape` from `values`, in `B`'s own float dtype ([`float_as`]).
pub fn float<B: Backend, const D: usize>(
    values: &[f64],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    float_as(values.to_vec(), shape, device, float_dtype::<B>())
}

/// An int tensor of `shape` from `values`, in the device's int dtype.
pub fn int<B: Backend, const D: usize>(
    values: &[i64],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// The values of a float tensor as f64.
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .expect("a float tensor's data converts to f64")
}

// ---------------------------------------------------------------- comparisons

/// The tolerance rule of every comparison here (PyTorch's `torch.testing.assert_close` and
/// `numpy.isclose`): `|got - want| <= atol + rtol |want|`. NaN matches only NaN, an infinity
/// only the same infinity.
///
/// A tolerance relative to a result's scale rather than to each element is this rule with
/// `rtol = 0` and `atol = k × scale`.
pub fn close(got: f64, want: f64, rtol: f64, atol: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= atol + rtol * want.abs()
}

/// Asserts [`close`] element-wise, and equal lengths; a failure names the first element out of
/// tolerance (and prints both vectors when they are short).
#[track_caller]
pub fn assert_close(got: &[f64], want: &[f64], rtol: f64, atol: f64, context: &str) {
    assert_eq!(got.len(), want.len(), "{context}: lengths differ");
    if let Some(i) = (0..got.len()).find(|&i| !close(got[i], want[i], rtol, atol)) {
        let both = if got.len() <= 64 {
            format!("\n got {got:?}\nwant {want:?}")
        } else {
            String::new()
        };
        panic!(
            "{context}: element {i}: got {}, want {} (rtol {rtol:e}, atol {atol:e}){both}",
            got[i], want[i]
        );
    }
}
