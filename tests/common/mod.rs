//! The backend matrix every integration test runs on, written once.
//!
//! `matrix_tests!(a, b, …)` takes test functions generic over `B: AutodiffBackend` with the
//! signature `fn a<B: AutodiffBackend>(device: &B::Device)` and instantiates each on:
//! - `ndarray`: `Autodiff<NdArray<f32>>`, always;
//! - `wgpu`: `Autodiff<Wgpu>` (the fusion backend, f32), when a wgpu adapter exists. When
//!   none does, each wgpu test prints a `SKIPPED` line with the reason and returns; with
//!   `BURN_XENT_REQUIRE_WGPU=1` it fails instead (CI sets it).
#![allow(dead_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};

pub use burn::tensor::{Int, Tensor, TensorData};

/// The CPU half of the matrix.
pub type NdArrayAd = burn_autodiff::Autodiff<burn_ndarray::NdArray<f32>>;
/// The CPU half in f64, for checks that want double precision.
pub type NdArrayAd64 = burn_autodiff::Autodiff<burn_ndarray::NdArray<f64>>;
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
            $crate::matrix_tests!(@path fused, burn_xent::LossPath::Fused, $($test),*);
            $crate::matrix_tests!(@path composite, burn_xent::LossPath::Composite, $($test),*);
        }
        mod wgpu {
            $crate::matrix_tests!(@wgpu fused, burn_xent::LossPath::Fused, $($test),*);
            $crate::matrix_tests!(@wgpu composite, burn_xent::LossPath::Composite, $($test),*);
        }
    };
    (@path $path:ident, $loss_path:expr, $($test:ident),*) => {
        mod $path {
            $(
                #[test]
                fn $test() {
                    burn_xent::with_loss_path($loss_path, || {
                        super::super::$test::<$crate::common::NdArrayAd>(&Default::default())
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

/// Runs `f`, which must panic with a message containing every one of `needles`.
pub fn assert_panics_with<R>(f: impl FnOnce() -> R, needles: &[&str]) {
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let panic = match outcome {
        Ok(_) => panic!("expected a panic mentioning {needles:?}, but the call returned"),
        Err(panic) => panic,
    };
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    for needle in needles {
        assert!(
            message.contains(needle),
            "panic message {message:?} does not mention {needle:?}"
        );
    }
}

/// The values of a float tensor as f64.
pub fn values<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

/// A deterministic pseudo-random stream (SplitMix64), so inputs are the same on every backend
/// and every run without a rand dependency.
pub struct Stream(u64);

impl Stream {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
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
}

/// A float tensor of `shape` from `values`.
pub fn float<B: burn::tensor::backend::Backend, const D: usize>(
    values: &[f64],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// An int tensor of `shape` from `values`.
pub fn int<B: burn::tensor::backend::Backend, const D: usize>(
    values: &[i64],
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}
