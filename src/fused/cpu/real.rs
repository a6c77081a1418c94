//! The floating-point arithmetic of the CPU kernels, written once for `f32` and `f64`:
//! `exp` (for non-positive arguments), `ln`, `ln(1 - p)` and `log1p` (on `[0, 1]`) that the
//! compiler vectorises (no calls into libm, selects instead of branches), and lane-wise
//! reductions.
//!
//! Accuracy, measured against the standard library by the tests below: `exp` within 2 ulp on
//! `[-87, 0]` (`f32`) and `[-708, 0]` (`f64`), exactly 0 below and at `-inf`, NaN for NaN;
//! `ln` within 2 ulp (subnormals included; `-inf` at 0, NaN for negatives and NaN); `ln(1 - p)`
//! and `log1p` within 3 ulp, relative, also for the tiny arguments of the BCE tails.

use core::ops::{Add, Div, Mul, Neg, Sub};

/// Lanes of the reductions: independent accumulators the compiler keeps in vector registers.
pub(crate) const LANES: usize = 16;

/// `f32` or `f64`, as the CPU kernels need them.
#[allow(clippy::wrong_self_convention)]
pub(crate) trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Default
    + core::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f64(value: f64) -> Self;
    fn to_f64(self) -> f64;
    /// Neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// `e^x` for `x <= 0` (and NaN); not for positive arguments.
    fn exp_nonpositive(self) -> Self;
    /// `ln(1 + y)` for `y` in `[0, 1]`.
    fn log1p_unit(self) -> Self;
    /// The natural logarithm of `x >= 0` (`-inf` at 0, NaN for NaN and negative `x`), within
    /// 2 ulp, branch-free.
    fn ln(self) -> Self;
    /// `ln(1 - p)` for `p <= 1`, accurate also for tiny `p` (Goldberg's correction).
    #[inline(always)]
    fn ln_1m(self) -> Self {
        let u = Self::ONE - self;
        let value = u.ln() * (-self / (u - Self::ONE));
        // u == 1 when p is below half an ulp of 1: ln(1 - p) = -p to working precision.
        if u == Self::ONE { -self } else { value }
    }
}

/// Larger of two values; NaN in `a` is kept out (the NaN reaches the result through the sum
/// of exponentials instead).
#[inline(always)]
pub(crate) fn max<T: Real>(a: T, b: T) -> T {
    if b > a { b } else { a }
}

macro_rules! impl_real {
    ($t:ty, $bits:ty, $mantissa:expr, $bias:expr, $lowest:expr, $ln2_hi:expr, $ln2_lo:expr,
     $exp_coefficients:expr, $atanh_terms:expr, $ln_terms:expr) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;

            #[inline(always)]
            fn from_f64(value: f64) -> Self {
                value as $t
            }

            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }

            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }

            #[inline(always)]
            fn exp_nonpositive(self) -> Self {
                // x = k ln 2 + r, |r| <= ln 2 / 2 (Cody-Waite split of ln 2), e^r by its Taylor
                // polynomial, 2^k built in the exponent bits. Below the normal range: 0.
                // k is rounded by adding 1.5 · 2^mantissa, whose last bits then hold k as an
                // integer: plain adds and shifts, which vectorise without SSE4.1 or AVX-512.
                let x = self;
                let clamped = if x < $lowest { $lowest } else { x };
                let shifter: $t = 1.5 * (1u64 << $mantissa) as $t;
                let shifted = clamped * core::f64::consts::LOG2_E as $t + shifter;
                let k = shifted - shifter;
                let r = clamped - k * $ln2_hi - k * $ln2_lo;
                let coefficients: &[$t] = &$exp_coefficients;
                let mut p = coefficients[0];
                for &c in &coefficients[1..] {
                    p = p * r + c;
                }
                let k_bits = shifted.to_bits().wrapping_sub(shifter.to_bits());
                let scale = <$t>::from_bits(k_bits.wrapping_add($bias) << $mantissa);
                let value = p * scale;
                if x < $lowest { 0.0 } else { value }
            }

            #[inline(always)]
            fn log1p_unit(self) -> Self {
                // ln(1 + y) = 2 atanh(s), s = y / (2 + y) in [0, 1/3]: an odd series in s that
                // keeps the relative accuracy of tiny y.
                let s = self / (2.0 + self);
                let s2 = s * s;
                let mut p: $t = 1.0 / (2 * $atanh_terms - 1) as $t;
                let mut n = $atanh_terms - 1;
                while n > 0 {
                    p = p * s2 + 1.0 / (2 * n - 1) as $t;
                    n -= 1;
                }
                2.0 * s * p
            }

            #[inline(always)]
            fn ln(self) -> Self {
                // x = m 2^e with m in [√½, √2); ln x = e ln 2 + 2 atanh(s), s = (m - 1)/(m + 1),
                // |s| <= 0.1716: an odd series in s. Subnormals are scaled up first.
                let x = self;
                let subnormal = x < <$t>::MIN_POSITIVE;
                let scaled = if subnormal {
                    x * (1u64 << $mantissa) as $t
                } else {
                    x
                };
                let bits = scaled.to_bits();
                let mantissa_mask: $bits = (1 << $mantissa) - 1;
                let biased = (bits >> $mantissa) as i32 & (2 * $bias + 1);
                let m = <$t>::from_bits((bits & mantissa_mask) | (($bias as $bits) << $mantissa));
                let big = m > core::f64::consts::SQRT_2 as $t;
                let m = if big { m * 0.5 } else { m };
                let e =
                    biased - $bias as i32 + i32::from(big) - if subnormal { $mantissa } else { 0 };
                let e = e as $t;
                let s = (m - 1.0) / (m + 1.0);
                let s2 = s * s;
                let mut p: $t = 1.0 / (2 * $ln_terms - 1) as $t;
                let mut n = $ln_terms - 1;
                while n > 0 {
                    p = p * s2 + 1.0 / (2 * n - 1) as $t;
                    n -= 1;
                }
                let value = e * $ln2_hi + (2.0 * s * p + e * $ln2_lo);
                // 0 gives -inf, +inf gives +inf, NaN and negative inputs NaN.
                if x == 0.0 {
                    <$t>::NEG_INFINITY
                } else if x > 0.0 && x < <$t>::INFINITY {
                    value
                } else if x == <$t>::INFINITY {
                    x
                } else {
                    <$t>::NAN
                }
            }
        }
    };
}

// e^r on |r| <= ln2/2: Taylor terms 1/k! from the highest; degree 7 (f32) and 13 (f64) leave a
// truncation error below half an ulp.
impl_real!(
    f32,
    u32,
    23,
    127,
    -87.0f32,
    0.693_145_75_f32,
    1.428_606_8e-6_f32,
    [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0
    ],
    8,
    6
);
impl_real!(
    f64,
    u64,
    52,
    1023,
    -708.0f64,
    0.693_147_180_369_123_8_f64,
    1.908_214_929_270_587_7e-10_f64,
    [
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0
    ],
    17,
    11
);

/// Folds `values` into `LANES` independent accumulators (a loop the compiler vectorises), then
/// the remainder and the lanes into one: `step(accumulator, value)` per element, `merge` across
/// the lanes, remainder first.
#[inline(always)]
fn fold_lanes<T: Real>(
    values: &[T],
    init: T,
    step: impl Fn(T, T) -> T,
    merge: impl Fn(T, T) -> T,
) -> T {
    let mut lanes = [init; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = step(*lane, v);
        }
    }
    let tail = rest.iter().fold(init, |acc, &v| step(acc, v));
    lanes.iter().fold(tail, |acc, &lane| merge(acc, lane))
}

/// The largest element of `values` (`-inf` when empty); NaNs are skipped.
#[inline(always)]
pub(crate) fn max_of<T: Real>(values: &[T]) -> T {
    fold_lanes(values, T::NEG_INFINITY, max, max)
}

/// `Σ f(v)` over `values`, accumulated in lanes.
#[inline(always)]
pub(crate) fn sum_map<T: Real>(values: &[T], f: impl Fn(T) -> T) -> T {
    fold_lanes(values, T::ZERO, |acc, v| acc + f(v), |a, b| a + b)
}

/// `Σ f(a, b)` over pairs of `a` and `b` (equal lengths), accumulated in lanes.
#[inline(always)]
pub(crate) fn sum_map2<T: Real>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut lanes = [T::ZERO; LANES];
    let a_chunks = a.chunks_exact(LANES);
    let b_chunks = b.chunks_exact(LANES);
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            lanes[i] = lanes[i] + f(ca[i], cb[i]);
        }
    }
    let mut total = T::ZERO;
    for (&va, &vb) in a_rest.iter().zip(b_rest) {
        total = total + f(va, vb);
    }
    lanes.iter().fold(total, |acc, &lane| acc + lane)
}

#[cfg(test)]
mod tests {
    use super::Real;

    fn ulps32(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    fn ulps64(a: f64, b: f64) -> u64 {
        (a.to_bits() as i128 - b.to_bits() as i128).unsigned_abs() as u64
    }

    #[test]
    fn exp_f32_matches_std() {
        let mut worst = 0;
        for i in 0..=2_000_000u32 {
            let x = -87.0f32 * i as f32 / 2_000_000.0;
            worst = worst.max(ulps32(x.exp_nonpositive(), x.exp()));
        }
        assert!(worst <= 2, "exp f32 worst error {worst} ulp");
        assert_eq!((-87.5f32).exp_nonpositive(), 0.0);
        assert_eq!(f32::NEG_INFINITY.exp_nonpositive(), 0.0);
        assert!(f32::NAN.exp_nonpositive().is_nan());
        assert_eq!(0.0f32.exp_nonpositive(), 1.0);
    }

    #[test]
    fn exp_f64_matches_std() {
        let mut worst = 0;
        for i in 0..=2_000_000u32 {
            let x = -708.0f64 * i as f64 / 2_000_000.0;
            worst = worst.max(ulps64(x.exp_nonpositive(), x.exp()));
        }
        assert!(worst <= 2, "exp f64 worst error {worst} ulp");
        assert_eq!(f64::NEG_INFINITY.exp_nonpositive(), 0.0);
        assert!(f64::NAN.exp_nonpositive().is_nan());
    }

    #[test]
    fn log1p_matches_std() {
        let (mut worst32, mut worst64) = (0, 0);
        for i in 0..=1_000_000u32 {
            // From 1 down to ~1e-30, geometrically, to cover the tails' tiny arguments.
            let y = (-(i as f64) * 69.0 / 1_000_000.0).exp();
            worst64 = worst64.max(ulps64(y.log1p_unit(), y.ln_1p()));
            let y32 = y as f32;
            worst32 = worst32.max(ulps32(y32.log1p_unit(), y32.ln_1p()));
        }
        assert!(worst32 <= 3, "log1p f32 worst error {worst32} ulp");
        assert!(worst64 <= 3, "log1p f64 worst error {worst64} ulp");
        assert_eq!(0.0f32.log1p_unit(), 0.0);
    }

    #[test]
    fn ln_matches_std() {
        let (mut worst32, mut worst64) = (0, 0);
        let (mut worst1m32, mut worst1m64) = (0, 0);
        for i in 0..=1_000_000u32 {
            // From 1 down to ~1e-40 (f32 subnormals included), geometrically, and the same
            // values as 1 - p.
            let y = (-(i as f64) * 92.0 / 1_000_000.0).exp();
            worst64 = worst64.max(ulps64(y.ln(), f64::ln(y)));
            worst1m64 = worst1m64.max(ulps64(y.ln_1m(), (-y).ln_1p()));
            let y32 = y as f32;
            if y32 > 0.0 {
                worst32 = worst32.max(ulps32(Real::ln(y32), f32::ln(y32)));
                worst1m32 = worst1m32.max(ulps32(y32.ln_1m(), (-y32).ln_1p()));
            }
        }
        assert!(worst32 <= 2, "ln f32 worst error {worst32} ulp");
        assert!(worst64 <= 2, "ln f64 worst error {worst64} ulp");
        assert!(worst1m32 <= 3, "ln(1 - p) f32 worst error {worst1m32} ulp");
        assert!(worst1m64 <= 3, "ln(1 - p) f64 worst error {worst1m64} ulp");
        assert_eq!(Real::ln(0.0f32), f32::NEG_INFINITY);
        assert_eq!(1.0f64.ln_1m(), f64::NEG_INFINITY);
        assert!(Real::ln(-1.0f32).is_nan() && Real::ln(f64::NAN).is_nan());
        assert_eq!(Real::ln(1.0f32), 0.0);
    }

    #[test]
    fn reductions_cover_remainders() {
        let values: Vec<f64> = (0..37).map(|i| i as f64 - 20.0).collect();
        assert_eq!(super::max_of(&values), 16.0);
        assert_eq!(super::sum_map(&values, |v| v), values.iter().sum::<f64>());
        assert_eq!(
            super::sum_map2(&values, &values, |a, b| a * b),
            values.iter().map(|v| v * v).sum::<f64>()
        );
        assert_eq!(super::max_of::<f32>(&[]), f32::NEG_INFINITY);
    }
}
