//! The network `train_wine` trains and the recipes it feeds it with, shared with
//! `tests/training.rs` (which trains this network a few steps with each loss, without the
//! `train` feature): the MLP, the data set's sizes and labels, the standardization of the
//! measurements and the balanced class weights. Plain `burn` only, no burn-train.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Device, Tensor};

/// Physico-chemical measurements per wine.
pub const FEATURES: usize = 11;
/// Quality scores 3..=8 become classes 0..=5.
pub const LOWEST_QUALITY: usize = 3;
pub const CLASSES: usize = 6;
/// "Good wine": a quality of 7 or more.
pub const GOOD_QUALITY: usize = 7;

/// The class of a quality score, `quality - 3`, in `0..6`.
pub fn quality_class(quality: usize) -> i64 {
    (quality - LOWEST_QUALITY) as i64
}

/// 1 for a good wine (a quality of 7 or more), else 0.
pub fn good_label(quality: usize) -> i64 {
    i64::from(quality >= GOOD_QUALITY)
}

/// 11 -> 64 -> 32 -> `outputs`, ReLU: raw scores (logits).
#[derive(Module, Debug)]
pub struct Mlp {
    hidden1: Linear,
    hidden2: Linear,
    output: Linear,
    activation: Relu,
}

impl Mlp {
    /// Burn's default initialization, from `device`'s random generator (seed it first).
    pub fn new(outputs: usize, device: &Device) -> Self {
        Self {
            hidden1: LinearConfig::new(FEATURES, 64).init(device),
            hidden2: LinearConfig::new(64, 32).init(device),
            output: LinearConfig::new(32, outputs).init(device),
            activation: Relu::new(),
        }
    }

    /// `[N, 11]` -> `[N, outputs]`.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let x = self.activation.forward(self.hidden1.forward(features));
        let x = self.activation.forward(self.hidden2.forward(x));
        self.output.forward(x)
    }
}

/// The mean and the standard deviation (population, at least 1e-12) of one measurement over
/// the wines it is standardized with.
pub fn mean_and_std(column: &[f64]) -> (f64, f64) {
    let n = column.len() as f64;
    let mean = column.iter().sum::<f64>() / n;
    let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt().max(1e-12))
}

/// The "balanced" class weights `n / (C n_c)` of the class counts `n_c` (PyTorch's usual
/// recipe, scikit-learn's `class_weight="balanced"`); a class without wines counts as one.
pub fn balanced_class_weights(counts: &[usize; CLASSES]) -> Vec<f32> {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&c| n as f32 / (CLASSES * c.max(1)) as f32)
        .collect()
}
