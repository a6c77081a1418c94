// The training steps, included once per backend by `tests/training.rs`, in a module that
// defines `backend()`, the autodiff device and the float dtype (f32) the steps run in.

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig as BurnCeConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::{log_softmax, sigmoid};
use burn::tensor::{Device, Int, Tensor};
use burn_xent::{
    BceLossConfig, BceWithLogitsLossConfig, CrossEntropyLossConfig, NllLossConfig, Reduction,
};

use crate::common::assert_close;
use crate::model::{
    CLASSES, FEATURES, Mlp, balanced_class_weights, good_label, mean_and_std, quality_class,
};

const SAMPLES: usize = 256;
const STEPS: usize = 25;
const LEARNING_RATE: f64 = 1e-2;

/// Burn's RNG is global; tests run in parallel, so seeding and initializing happen one at a
/// time to give every test the same initial weights.
static INIT: Mutex<()> = Mutex::new(());

/// The autodiff device the steps run on.
fn device() -> Device {
    backend().device
}

/// The example's MLP with `outputs` outputs, initialized from seed 42 (the example's default).
fn mlp(outputs: usize) -> Mlp {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = device();
    device.seed(42);
    let model = Mlp::new(outputs, &device);
    // Parameters are initialized lazily, on first read: read them under the lock.
    let mut non_finite = NonFinite(0);
    model.visit(&mut non_finite);
    assert_eq!(non_finite.0, 0, "non-finite initial parameters");
    model
}

/// Training data: standardized features `[256, 11]`, quality classes `[256]` (quality - 3)
/// and good-wine labels `[256, 1]` (quality 7 or more), every sixth wine of the data set.
struct Wines {
    features: Tensor<2>,
    classes: Tensor<1, Int>,
    good: Tensor<2, Int>,
    class_counts: [usize; CLASSES],
    positives: usize,
}

fn wines() -> Wines {
    let dataset = linfa_datasets::winequality();
    let records = &dataset.records;
    let rows: Vec<usize> = (0..records.nrows()).step_by(6).take(SAMPLES).collect();
    assert_eq!(rows.len(), SAMPLES);
    let stats: Vec<(f64, f64)> = (0..FEATURES)
        .map(|f| mean_and_std(&rows.iter().map(|&i| records[[i, f]]).collect::<Vec<_>>()))
        .collect();
    let mut features = Vec::with_capacity(SAMPLES * FEATURES);
    for &r in &rows {
        for (f, &(mean, std)) in stats.iter().enumerate() {
            // Rounded to f32 as the example's batches are.
            features.push(((records[[r, f]] - mean) / std) as f32 as f64);
        }
    }
    let quality: Vec<usize> = rows.iter().map(|&r| dataset.targets[r]).collect();
    let classes: Vec<i64> = quality.iter().map(|&q| quality_class(q)).collect();
    let good: Vec<i64> = quality.iter().map(|&q| good_label(q)).collect();
    let mut class_counts = [0; CLASSES];
    for &c in &classes {
        class_counts[c as usize] += 1;
    }
    let backend = backend();
    Wines {
        features: backend.float(&features, [SAMPLES, FEATURES]),
        classes: backend.int(&classes, [SAMPLES]),
        good: backend.int(&good, [SAMPLES, 1]),
        class_counts,
        positives: good.iter().filter(|&&g| g == 1).count(),
    }
}

/// Counts non-finite parameter values.
struct NonFinite(usize);

impl ModuleVisitor for NonFinite {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
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
fn train(mut model: Mlp, loss: impl Fn(&Mlp) -> Tensor<1>) -> Vec<f32> {
    let mut optim = AdamConfig::new().init();
    let mut losses = Vec::with_capacity(STEPS + 1);
    for _ in 0..STEPS {
        let value = loss(&model);
        losses.push(value.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(value.backward(), &model);
        model = optim.step(LEARNING_RATE, model, grads);
    }
    losses.push(loss(&model).into_scalar::<f32>());
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

/// `sqrt(n / (C n_c))`, the example's default class weights (`--class-weights sqrt`).
fn sqrt_balanced(counts: &[usize; CLASSES]) -> Vec<f32> {
    balanced_class_weights(counts)
        .into_iter()
        .map(f32::sqrt)
        .collect()
}

#[test]
fn cross_entropy_with_class_weights_and_label_smoothing() {
    let data = wines();
    let device = device();
    // PyTorch: nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    let criterion = CrossEntropyLossConfig::new()
        .with_weight(Some(sqrt_balanced(&data.class_counts)))
        .with_label_smoothing(0.1)
        .init(&device);
    let losses = train(mlp(CLASSES), |model| {
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
    let criterion = CrossEntropyLossConfig::new().init(&device());
    let losses = train(mlp(CLASSES), |model| {
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
    let criterion = NllLossConfig::new().init(&device());
    let losses = train(mlp(CLASSES), |model| {
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
        .init(&device());
    let losses = train(mlp(1), |model| {
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
    let criterion = BceLossConfig::new().init(&device());
    let losses = train(mlp(1), |model| {
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
    let device = device();
    // Step by step, within f32 round-off accumulated over the steps.
    let same = |name: &str, burn: &[f32], xent: &[f32]| {
        let as_f64 = |v: &[f32]| v.iter().map(|&l| f64::from(l)).collect::<Vec<_>>();
        let context = format!("{name}: burn-xent's losses (got) against burn::nn's (want)");
        assert_close(&as_f64(xent), &as_f64(burn), 5e-5, 5e-5, &context);
    };

    let burn_ce = BurnCeConfig::new().init(&device);
    let burn = train(mlp(CLASSES), |model| {
        burn_ce.forward(model.forward(data.features.clone()), data.classes.clone())
    });
    assert_goes_down("burn::nn CrossEntropyLoss", &burn);
    let xent_ce = CrossEntropyLossConfig::new().init(&device);
    let xent = train(mlp(CLASSES), |model| {
        xent_ce.forward(
            model.forward(data.features.clone()),
            data.classes.clone(),
            Reduction::Mean,
        )
    });
    same("cross-entropy", &burn, &xent);

    let burn_bce = BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(&device);
    let burn = train(mlp(1), |model| {
        burn_bce.forward(model.forward(data.features.clone()), data.good.clone())
    });
    assert_goes_down("burn::nn BinaryCrossEntropyLoss", &burn);
    let xent_bce = BceWithLogitsLossConfig::new().init(&device);
    let xent = train(mlp(1), |model| {
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
            .init(&device());
        let logits = mlp(CLASSES).forward(data.features.clone());
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
        let criterion = NllLossConfig::new().init(&device());
        let log_probs = log_softmax(mlp(CLASSES).forward(data.features.clone()), 1);
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
            .init(&device());
        let model = mlp(1);
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
        let criterion = BceLossConfig::new().init(&device());
        let probs = sigmoid(mlp(1).forward(data.features.clone()));
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
