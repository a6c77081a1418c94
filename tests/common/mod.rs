//! The one home of the helpers that tests, benches and examples share.
//!
//! - **The backend matrix.** A [`TestBackend`] is one entry of it: a device (plain, or with
//!   `.autodiff()`) and the float dtype every tensor of a test is created in. The entries are
//!   ndarray f32 and f64, Flex f32 and f64 (Flex tensors carry their dtype), and wgpu f32
//!   (Burn's wgpu backend with fusion, which has no f64), each plain and with autodiff: since
//!   Burn 0.22 a backend is chosen at run time by the device, and f64 is a dtype chosen at
//!   creation (`Tensor::from_data(data, (&device, DType::F64))`, never `Device::configure`).
//!   `matrix_tests!(a, b, …)` takes test functions `fn a(backend: &TestBackend)` and runs each
//!   on every entry, on both loss paths; `matrix_tests!(autodiff: a, b, …)` on the autodiff
//!   entries only (tests that need gradients). When no wgpu adapter exists, each wgpu test
//!   prints a `SKIPPED` line with the reason and returns; with `BURN_XENT_REQUIRE_WGPU=1` it
//!   fails instead (CI sets it).
//! - **Host data.** [`Stream`], the one seeded generator (SplitMix64), and
//!   [`normalised_over_classes`], class probabilities from raw positive values.
//! - **Tensors.** [`TestBackend::float`] and [`float_as`] create float tensors in a stated
//!   dtype, [`float`] in the device's default one (f32), [`int`] class indices, [`values`]
//!   reads any float tensor back as f64.
//! - **Comparisons.** [`close`] is the one tolerance rule, `|got - want| <= atol + rtol |want|`
//!   (NaN matches only NaN, an infinity only the same infinity); [`assert_close`] applies it
//!   element-wise. [`assert_panics_with`] checks a refusal's message.
//!
//! Tests include this file as `mod common`; `benches/common` and the examples include it with
//! `#[path]`.
#![allow(dead_code)]

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::{DType, Device, DeviceKind, Element, Shape};
pub use burn::tensor::{Int, Tensor, TensorData};

// ---------------------------------------------------------------- the backend matrix

pub use burn_xent::availability::REQUIRE_WGPU;

/// One entry of the backend matrix: where a test's tensors live and the float dtype they are
/// created in.
#[derive(Clone, Debug)]
pub struct TestBackend {
    /// `ndarray`, `flex` or `wgpu`.
    pub name: &'static str,
    /// The device: plain, or with autodiff.
    pub device: Device,
    /// The float dtype of every float tensor the test creates.
    pub dtype: DType,
}

impl TestBackend {
    /// Burn's ndarray backend (deprecated by Burn 0.22 in favour of Flex, still in the matrix
    /// while burn-xent has kernels for it), float tensors in `dtype`.
    pub fn ndarray(dtype: DType) -> Self {
        #[allow(deprecated)]
        let device = Device::ndarray();
        Self::new("ndarray", device, dtype)
    }

    /// Burn's Flex CPU backend, float tensors in `dtype`.
    pub fn flex(dtype: DType) -> Self {
        Self::new("flex", Device::flex(), dtype)
    }

    /// Burn's wgpu backend (with fusion) on its default adapter, f32.
    pub fn wgpu() -> Self {
        Self::new("wgpu", wgpu_device(), DType::F32)
    }

    pub fn ndarray_f32() -> Self {
        Self::ndarray(DType::F32)
    }

    pub fn ndarray_f64() -> Self {
        Self::ndarray(DType::F64)
    }

    pub fn flex_f32() -> Self {
        Self::flex(DType::F32)
    }

    pub fn flex_f64() -> Self {
        Self::flex(DType::F64)
    }

    pub fn wgpu_f32() -> Self {
        Self::wgpu()
    }

    fn new(name: &'static str, device: Device, dtype: DType) -> Self {
        Self {
            name,
            device,
            dtype,
        }
    }

    /// The same entry on the autodiff device.
    pub fn autodiff(self) -> Self {
        Self {
            device: self.device.autodiff(),
            ..self
        }
    }

    /// The same entry without autodiff (the matrix's name for the identity).
    pub fn plain(self) -> Self {
        Self {
            device: self.device.without_autodiff(),
            ..self
        }
    }

    /// Whether tensors created here are autodiff tensors (gradients can be asked for).
    pub fn is_autodiff(&self) -> bool {
        self.device.is_autodiff()
    }

    /// `ndarray f64 autodiff`, `wgpu f32 plain`, …
    pub fn label(&self) -> String {
        let mode = if self.is_autodiff() {
            "autodiff"
        } else {
            "plain"
        };
        format!("{} {} {mode}", self.name, dtype_name(self.dtype))
    }

    /// The machine epsilon of the entry's float dtype.
    pub fn epsilon(&self) -> f64 {
        match self.dtype {
            DType::F64 => f64::EPSILON,
            _ => f32::EPSILON as f64,
        }
    }

    /// True when this entry can run here. A CPU entry always can; a wgpu entry when an adapter
    /// exists, otherwise it prints `SKIPPED wgpu::<test>` with the reason and returns false (or
    /// panics when `BURN_XENT_REQUIRE_WGPU=1`).
    pub fn ready(&self, test: &str) -> bool {
        self.name != "wgpu" || wgpu_ready(test)
    }

    /// A float tensor of `shape` from `values`, in the entry's dtype on its device.
    pub fn float<const D: usize>(&self, values: &[f64], shape: [usize; D]) -> Tensor<D> {
        float_as(values.to_vec(), shape, &self.device, self.dtype)
    }

    /// An int tensor of `shape` from `values`, in the device's int dtype.
    pub fn int<const D: usize>(&self, values: &[i64], shape: [usize; D]) -> Tensor<D, Int> {
        int(values, shape, &self.device)
    }
}

/// `f32`, `f64`, … (`DType`'s `Debug` in lower case).
pub fn dtype_name(dtype: DType) -> String {
    format!("{dtype:?}").to_lowercase()
}

/// Burn's wgpu device on the default adapter (plain).
pub fn wgpu_device() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

/// Why wgpu cannot run here, or `None` when it can (probed once, quietly, by the library).
pub fn wgpu_unavailable() -> Option<String> {
    burn_xent::availability::backend_unavailable(&wgpu_device())
}

/// True when the wgpu half can run; otherwise prints `SKIPPED wgpu::<test>` with the reason (or
/// panics when `BURN_XENT_REQUIRE_WGPU=1`).
pub fn wgpu_ready(test: &str) -> bool {
    burn_xent::availability::run_or_skip(
        &format!("wgpu::{test}"),
        &wgpu_device(),
        burn_xent::availability::required_by_env(REQUIRE_WGPU),
    )
}

/// Runs one matrix test: `test` on `backend` under `path`, when the backend can run here.
pub fn run_matrix_test(
    backend: TestBackend,
    path: burn_xent::LossPath,
    name: &str,
    test: fn(&TestBackend),
) {
    if backend.ready(name) {
        burn_xent::with_loss_path(path, || test(&backend));
    }
}

/// Instantiates test functions `fn test(backend: &TestBackend)` on every entry of the matrix
/// (`mod <backend>_<dtype>::<plain|autodiff>::<fused|composite>::test`), or with `autodiff:`
/// first on the autodiff entries only.
#[macro_export]
macro_rules! matrix_tests {
    (@backends $modes:tt $tests:tt) => {
        $crate::matrix_tests!(@backend ndarray_f32, $modes, $tests);
        $crate::matrix_tests!(@backend ndarray_f64, $modes, $tests);
        $crate::matrix_tests!(@backend flex_f32, $modes, $tests);
        $crate::matrix_tests!(@backend flex_f64, $modes, $tests);
        $crate::matrix_tests!(@backend wgpu_f32, $modes, $tests);
    };
    (@backend $backend:ident, [$($mode:ident)*], $tests:tt) => {
        mod $backend {
            $(
                mod $mode {
                    $crate::matrix_tests!(@path $backend, $mode, fused, Fused, $tests);
                    $crate::matrix_tests!(@path $backend, $mode, composite, Composite, $tests);
                }
            )*
        }
    };
    (@path $backend:ident, $mode:ident, $path:ident, $variant:ident, ($($test:ident),*)) => {
        mod $path {
            $(
                #[test]
                fn $test() {
                    $crate::common::run_matrix_test(
                        $crate::common::TestBackend::$backend().$mode(),
                        burn_xent::LossPath::$variant,
                        stringify!($test),
                        super::super::super::$test,
                    );
                }
            )*
        }
    };
    (autodiff: $($test:ident),* $(,)?) => {
        $crate::matrix_tests!(@backends [autodiff] ($($test),*));
    };
    ($($test:ident),* $(,)?) => {
        $crate::matrix_tests!(@backends [plain autodiff] ($($test),*));
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

/// A float tensor of `shape` from host data, created in `dtype` on `device`.
///
/// Burn 0.22 chooses f64 at creation: `Tensor::from_data(data, &device)` converts to the
/// device's default float dtype (f32), so every tensor of an f64 test is created through this
/// function (or [`TestBackend::float`]) with its dtype stated.
pub fn float_as<const D: usize, E: Element>(
    values: Vec<E>,
    shape: impl Into<Shape>,
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, dtype))
}

/// A float tensor of `shape` from `values`, in the device's default float dtype (f32).
pub fn float<const D: usize>(values: &[f64], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// An int tensor of `shape` from `values`, in the device's int dtype.
pub fn int<const D: usize>(values: &[i64], shape: [usize; D], device: &Device) -> Tensor<D, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// The values of a float tensor as f64.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .try_into_vec_as::<f64>()
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
