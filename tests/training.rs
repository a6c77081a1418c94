//! A few training steps of `examples/train_wine.rs`'s model with each loss: the loss goes down
//! and the parameters stay finite.
//!
//! The model is the example's MLP (11 -> 64 -> 32 -> outputs, ReLU), trained full-batch with
//! Burn's Adam on 256 wines of the red wine quality data set (`linfa-datasets`), standardized,
//! on `Autodiff<NdArray<f32>>`. Plain burn (`burn::optim`, `burn::nn`), so the test runs
//! without the `train` feature; with it, the `glue` module checks `burn_xent::train`.

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig as BurnCeConfig};
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::activation::{log_softmax, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use burn_xent::{
    BceLossConfig, BceWithLogitsLossConfig, CrossEntropyLossConfig, NllLossConfig, Reduction,
};

type Ad = burn_autodiff::Autodiff<burn_ndarray::NdArray<f32>>;

const FEATURES: usize = 11;
const CLASSES: usize = 6;
const SAMPLES: usize = 256;
const STEPS: usize = 25;
const LEARNING_RATE: f64 = 1e-2;

/// The example's MLP: 11 -> 64 -> 32 -> `outputs`, ReLU, raw scores.
#[derive(Module, Debug)]
struct Mlp<B: Backend> {
    hidden1: Linear<B>,
    hidden2: Linear<B>,
    output: Linear<B>,
    activation: Relu,
}

/// Burn's RNG is global; tests run in parallel, so seeding and initializing happen one at a
/// time to give every test the same initial weights.
static INIT: Mutex<()> = Mutex::new(());

impl Mlp<Ad> {
    fn new(outputs: usize) -> Self {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        let device = Default::default();
        Ad::seed(&device, 42);
        let model = Self {
            hidden1: LinearConfig::new(FEATURES, 64).init(&device),
            hidden2: LinearConfig::new(64, 32).init(&device),
            output: LinearConfig::new(32, outputs).init(&device),
            activation: Relu::new(),
        };
        // Parameters are initialized lazily, on first read: read them under the lock.
        let mut non_finite = NonFinite(0);
        model.visit(&mut non_finite);
        assert_eq!(non_finite.0, 0, "non-finite initial parameters");
        model
    }

    fn forward(&self, features: Tensor<Ad, 2>) -> Tensor<Ad, 2> {
        let x = self.activation.forward(self.hidden1.forward(features));
        let x = self.activation.forward(self.hidden2.forward(x));
        self.output.forward(x)
    }
}

/// Training data: standardized features `[256, 11]`, quality classes `[256]` (quality - 3)
/// and good-wine labels `[256, 1]` (quality 7 or more), every sixth wine of the data set.
struct Wines {
    features: Tensor<Ad, 2>,
    classes: Tensor<Ad, 1, Int>,
    good: Tensor<Ad, 2, Int>,
    class_counts: [usize; CLASSES],
    positives: usize,
}

fn wines() -> Wines {
    let dataset = linfa_datasets::winequality();
    let records = &dataset.records;
    let rows: Vec<usize> = (0..records.nrows()).step_by(6).take(SAMPLES).collect();
    assert_eq!(rows.len(), SAMPLES);
    let mut features = Vec::with_capacity(SAMPLES * FEATURES);
    for &r in &rows {
        for f in 0..FEATURES {
            let column = rows.iter().map(|&i| records[[i, f]]);
            let mean = column.clone().sum::<f64>() / SAMPLES as f64;
            let var = column.map(|v| (v - mean).powi(2)).sum::<f64>() / SAMPLES as f64;
            features.push(((records[[r, f]] - mean) / var.sqrt().max(1e-12)) as f32);
        }
    }
    let quality: Vec<usize> = rows.iter().map(|&r| dataset.targets[r]).collect();
    let mut class_counts = [0; CLASSES];
    for &q in &quality {
        class_counts[q - 3] += 1;
    }
    let positives = quality.iter().filter(|&&q| q >= 7).count();
    let device = Default::default();
    Wines {
        features: Tensor::from_data(TensorData::new(features, [SAMPLES, FEATURES]), &device),
        classes: Tensor::from_data(
            TensorData::new(
                quality.iter().map(|&q| q as i64 - 3).collect::<Vec<_>>(),
                [SAMPLES],
            ),
            &device,
        ),
        good: Tensor::from_data(
            TensorData::new(
                quality
                    .iter()
                    .map(|&q| i64::from(q >= 7))
                    .collect::<Vec<_>>(),
                [SAMPLES, 1],
            ),
            &device,
        ),
        class_counts,
        positives,
    }
}

/// Counts non-finite parameter values.
struct NonFinite(usize);

impl ModuleVisitor<Ad> for NonFinite {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Ad, D>>) {
        let values = param.val().into_data().convert::<f32>();
        self.0 += values
            .as_slice::<f32>()
            .expect("f32")
            .iter()
            .filter(|v| !v.is_finite())
            .count();
    }
}

/// Trains `model` for `STEPS` full-batch Adam steps on `loss(model)` and returns the losses.
/// Checks that every loss and, at the end, every parameter is finite.
fn train(mut model: Mlp<Ad>, loss: impl Fn(&Mlp<Ad>) -> Tensor<Ad, 1>) -> Vec<f32> {
    let mut optim = AdamConfig::new().init::<Ad, Mlp<Ad>>();
    let mut losses = Vec::with_capacity(STEPS + 1);
    for _ in 0..STEPS {
        let value = loss(&model);
        losses.push(value.clone().into_scalar());
        let grads = GradientsParams::from_grads(value.backward(), &model);
        model = optim.step(LEARNING_RATE, model, grads);
    }
    losses.push(loss(&model).into_scalar());
    assert!(
        losses.iter().all(|l| l.is_finite()),
        "non-finite loss: {losses:?}"
    );
    let mut non_finite = NonFinite(0);
    model.visit(&mut non_finite);
    assert_eq!(non_finite.0, 0, "non-finite parameters after training");
    losses
}

/// The loss after training is below 85 % of the loss before (label smoothing keeps the
/// weighted cross-entropy highest, at about 72 %).
fn assert_goes_down(name: &str, losses: &[f32]) {
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(
        last < 0.85 * first,
        "{name}: loss {first} -> {last} did not go down by 15 % in {STEPS} steps: {losses:?}"
    );
}

/// `sqrt(n / (C n_c))`, the example's class weights.
fn sqrt_balanced(counts: &[usize; CLASSES]) -> Vec<f32> {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&c| (n as f32 / (CLASSES * c.max(1)) as f32).sqrt())
        .collect()
}

#[test]
fn cross_entropy_with_class_weights_and_label_smoothing() {
    let data = wines();
    let device = Default::default();
    // PyTorch: nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    let criterion = CrossEntropyLossConfig::new()
        .with_weight(Some(sqrt_balanced(&data.class_counts)))
        .with_label_smoothing(0.1)
        .init::<Ad>(&device);
    let losses = train(Mlp::new(CLASSES), |model| {
        criterion.forward(
            model.forward(data.features.clone()),
            data.classes.clone(),
            Reduction::Mean,
        )
    });
    assert_goes_down("CrossEntropyLoss(weight, label_smoothing)", &losses);
}

#[test]
fn cross_entropy_plain() {
    let data = wines();
    let criterion = CrossEntropyLossConfig::new().init::<Ad>(&Default::default());
    let losses = train(Mlp::new(CLASSES), |model| {
        criterion.forward(
            model.forward(data.features.clone()),
            data.classes.clone(),
            Reduction::Mean,
        )
    });
    assert_goes_down("CrossEntropyLoss()", &losses);
}

#[test]
fn nll_on_log_softmax() {
    let data = wines();
    let criterion = NllLossConfig::new().init::<Ad>(&Default::default());
    let losses = train(Mlp::new(CLASSES), |model| {
        criterion.forward(
            log_softmax(model.forward(data.features.clone()), 1),
            data.classes.clone(),
            Reduction::Mean,
        )
    });
    assert_goes_down("NLLLoss(log_softmax)", &losses);
}

#[test]
fn bce_with_logits_with_pos_weight() {
    let data = wines();
    let pos_weight = (SAMPLES - data.positives) as f32 / data.positives as f32;
    // PyTorch: nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pw]))
    let criterion = BceWithLogitsLossConfig::new()
        .with_pos_weight(Some(vec![pos_weight]))
        .init::<Ad>(&Default::default());
    let losses = train(Mlp::new(1), |model| {
        criterion.forward(
            model.forward(data.features.clone()),
            data.good.clone().float(),
            Reduction::Mean,
        )
    });
    assert_goes_down("BCEWithLogitsLoss(pos_weight)", &losses);
}

#[test]
fn bce_on_sigmoid() {
    let data = wines();
    let criterion = BceLossConfig::new().init::<Ad>(&Default::default());
    let losses = train(Mlp::new(1), |model| {
        criterion.forward(
            sigmoid(model.forward(data.features.clone())),
            data.good.clone().float(),
            Reduction::Mean,
        )
    });
    assert_goes_down("BCELoss(sigmoid)", &losses);
}

/// The example's baselines, Burn's own losses, train the same model, step for step as
/// burn-xent's losses without options.
#[test]
fn burn_nn_losses_train_like_burn_xent() {
    let data = wines();
    let device = Default::default();
    let same = |name: &str, burn: &[f32], xent: &[f32]| {
        for (step, (b, x)) in burn.iter().zip(xent).enumerate() {
            assert!(
                (b - x).abs() <= 1e-4 * b.abs().max(1.0),
                "{name}, step {step}: burn::nn {b}, burn-xent {x}"
            );
        }
    };

    let burn_ce = BurnCeConfig::new().init::<Ad>(&device);
    let burn = train(Mlp::new(CLASSES), |model| {
        burn_ce.forward(model.forward(data.features.clone()), data.classes.clone())
    });
    assert_goes_down("burn::nn CrossEntropyLoss", &burn);
    let xent_ce = CrossEntropyLossConfig::new().init::<Ad>(&device);
    let xent = train(Mlp::new(CLASSES), |model| {
        xent_ce.forward(
            model.forward(data.features.clone()),
            data.classes.clone(),
            Reduction::Mean,
        )
    });
    same("cross-entropy", &burn, &xent);

    let burn_bce = BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init::<Ad>(&device);
    let burn = train(Mlp::new(1), |model| {
        burn_bce.forward(model.forward(data.features.clone()), data.good.clone())
    });
    assert_goes_down("burn::nn BinaryCrossEntropyLoss", &burn);
    let xent_bce = BceWithLogitsLossConfig::new().init::<Ad>(&device);
    let xent = train(Mlp::new(1), |model| {
        xent_bce.forward(
            model.forward(data.features.clone()),
            data.good.clone().float(),
            Reduction::Mean,
        )
    });
    same("binary cross-entropy with logits", &burn, &xent);
}

/// `burn_xent::train` (feature `train`): the outputs burn-train's metrics read.
#[cfg(feature = "train")]
mod glue {
    use super::*;
    use burn::tensor::Tolerance;

    #[test]
    fn cross_entropy_classification_output() {
        let data = wines();
        let criterion = CrossEntropyLossConfig::new()
            .with_weight(Some(sqrt_balanced(&data.class_counts)))
            .with_label_smoothing(0.1)
            .init::<Ad>(&Default::default());
        let logits = Mlp::new(CLASSES).forward(data.features.clone());
        let item = criterion.classification_output(logits.clone(), data.classes.clone());
        let expected = criterion.forward(logits.clone(), data.classes.clone(), Reduction::Mean);
        assert_eq!(item.loss.dims(), [1]);
        item.loss.to_data().assert_eq(&expected.to_data(), true);
        item.output.to_data().assert_eq(&logits.to_data(), true);
        item.targets
            .to_data()
            .assert_eq(&data.classes.to_data(), true);
    }

    #[test]
    fn nll_classification_output() {
        let data = wines();
        let criterion = NllLossConfig::new().init::<Ad>(&Default::default());
        let log_probs = log_softmax(Mlp::new(CLASSES).forward(data.features.clone()), 1);
        let item = criterion.classification_output(log_probs.clone(), data.classes.clone());
        let expected = criterion.forward(log_probs.clone(), data.classes.clone(), Reduction::Mean);
        item.loss.to_data().assert_eq(&expected.to_data(), true);
        item.output.to_data().assert_eq(&log_probs.to_data(), true);
    }

    #[test]
    fn bce_with_logits_outputs_hold_probabilities() {
        let data = wines();
        let criterion = BceWithLogitsLossConfig::new()
            .with_pos_weight(Some(vec![6.0]))
            .init::<Ad>(&Default::default());
        let model = Mlp::new(1);
        let logits = model.forward(data.features.clone());
        let item = criterion.multi_label_output(logits.clone(), data.good.clone());
        let expected =
            criterion.forward(logits.clone(), data.good.clone().float(), Reduction::Mean);
        item.loss.to_data().assert_eq(&expected.to_data(), true);
        assert_eq!(item.output.dims(), [SAMPLES, 1]);
        item.output
            .to_data()
            .assert_approx_eq::<f32>(&sigmoid(logits.clone()).to_data(), Tolerance::default());
        item.targets.to_data().assert_eq(&data.good.to_data(), true);

        // The [N] form gives the same, as [N, 1].
        let flat = criterion.binary_output(
            logits.clone().squeeze_dim::<1>(1),
            data.good.clone().squeeze_dim::<1>(1),
        );
        flat.loss.to_data().assert_eq(&item.loss.to_data(), true);
        flat.output
            .to_data()
            .assert_eq(&item.output.to_data(), true);
        flat.targets
            .to_data()
            .assert_eq(&item.targets.to_data(), true);

        // The loss reaches every parameter: 3 weights, 3 biases.
        let grads = GradientsParams::from_grads(item.loss.backward(), &model);
        assert_eq!(grads.len(), 6);
    }

    #[test]
    fn bce_outputs_hold_the_probabilities() {
        let data = wines();
        let criterion = BceLossConfig::new().init::<Ad>(&Default::default());
        let probs = sigmoid(Mlp::new(1).forward(data.features.clone()));
        let item = criterion.multi_label_output(probs.clone(), data.good.clone());
        let expected = criterion.forward(probs.clone(), data.good.clone().float(), Reduction::Mean);
        item.loss.to_data().assert_eq(&expected.to_data(), true);
        item.output.to_data().assert_eq(&probs.to_data(), true);
        let flat = criterion.binary_output(
            probs.clone().squeeze_dim::<1>(1),
            data.good.clone().squeeze_dim::<1>(1),
        );
        flat.loss.to_data().assert_eq(&item.loss.to_data(), true);
        assert_eq!(flat.targets.dims(), [SAMPLES, 1]);
    }
}
