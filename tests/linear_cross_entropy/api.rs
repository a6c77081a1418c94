//! The module form and the `Linear` helper, plain `cross_entropy`'s soft cap and z-loss,
//! `mean_denominator`, and one training step with a 32,000-class head.

use burn::module::Module;
use burn::nn::Linear;
use burn::optim::{GradientsParams, SgdConfig};
use burn_xent::*;

use crate::common::{Stream, TestBackend, assert_close, values};
use crate::{D, Data, N, V, linear_layer};

/// The module and the `Linear` helper give the function's numbers.
#[test]
fn module_and_layer_helper_equal_the_function() {
    let b = TestBackend::ndarray_f32().autodiff();
    let layer: Linear = linear_layer(D, V, 41, &b);
    let data = Data::new(N, D, V, -100, 13);
    let hidden = b.float(&data.hidden, [N, D]);
    let target = b.int(&data.target, [N]);
    let module = LinearCrossEntropyLossConfig::new()
        .with_label_smoothing(0.1)
        .with_z_loss(1e-3)
        .with_chunk_size(Some(5))
        .init(&b.device);
    let options = module.options();
    let function = linear_cross_entropy(
        hidden.clone(),
        layer.weight.val(),
        layer.bias.as_ref().map(|bias| bias.val()),
        target.clone(),
        Reduction::Mean,
        &options,
    );
    let from_module = module.forward_layer(&layer, hidden.clone(), target.clone(), Reduction::Mean);
    let helper = linear_layer_cross_entropy(
        &layer,
        hidden.clone(),
        target.clone(),
        Reduction::Mean,
        &options,
    );
    let with_z = module.forward_with_z_loss(
        hidden.clone(),
        layer.weight.val(),
        layer.bias.as_ref().map(|bias| bias.val()),
        target.clone(),
        Reduction::Mean,
    );
    let want = values(function);
    assert_eq!(values(from_module), want);
    assert_eq!(values(helper), want);
    assert_eq!(values(with_z.loss), want);
    assert!(values(with_z.z_loss)[0] > 0.0);
    // The composite path's z-loss term is the same number.
    let composite = with_loss_path(LossPath::Composite, || {
        module.forward_with_z_loss(
            hidden,
            layer.weight.val(),
            layer.bias.as_ref().map(|bias| bias.val()),
            target,
            Reduction::Mean,
        )
    });
    let fused_z = values(
        module
            .forward_with_z_loss(
                b.float(&data.hidden, [N, D]),
                layer.weight.val(),
                layer.bias.as_ref().map(|bias| bias.val()),
                b.int(&data.target, [N]),
                Reduction::Mean,
            )
            .z_loss,
    );
    assert_close(
        &fused_z,
        &values(composite.z_loss),
        1e-5,
        1e-7,
        "z-loss term",
    );
}

/// Plain `cross_entropy`'s soft cap and z-loss against their formulas written with Burn's
/// operations (f64, both paths): `cap · tanh(x / cap)` first, then `scale · w[t] · lse²` per
/// element, reduced with the loss.
#[test]
fn cross_entropy_softcap_and_z_loss_follow_their_formulas() {
    let b = TestBackend::ndarray_f64().autodiff();
    let data = Data::new(N, D, V, 3, 17);
    let (cap, scale) = (2.0, 0.03);
    let x = || b.float(&data.hidden[..N * 8], [N, 8]).mul_scalar(3.0);
    let t = || b.int(&data.target, [N]).clamp(0, 7);
    let w = b.float(&data.class_weight[..8], [8]);
    let base = CrossEntropyOptions::new().with_weight(w.clone());
    for path in [LossPath::Fused, LossPath::Composite] {
        with_loss_path(path, || {
            for reduction in [Reduction::Mean, Reduction::Sum] {
                let capped = x().mul_scalar(1.0 / cap).tanh().mul_scalar(cap);
                let lse = capped.clone().exp().sum_dim(1).log().reshape([N]);
                let tw = w.clone().select(0, t());
                let plain = cross_entropy(capped, t(), reduction, &base);
                let z_sum = (lse.powi_scalar(2) * tw.clone()).sum().mul_scalar(scale);
                let z = match reduction {
                    Reduction::Mean => z_sum / tw.sum(),
                    Reduction::Sum => z_sum,
                };
                let want = values(plain + z.clone());
                let got = cross_entropy_with_z_loss(
                    x(),
                    t(),
                    reduction,
                    &base.clone().with_softcap(cap).with_z_loss(scale),
                );
                assert_close(
                    &values(got.loss),
                    &want,
                    1e-12,
                    0.0,
                    &format!("{path:?} {reduction:?}"),
                );
                assert_close(&values(got.z_loss), &values(z), 1e-12, 0.0, "z term");
            }
        });
    }
}

/// `mean_denominator` is the weight sum of the non-ignored targets, and micro-batch sums over
/// the global total give the whole batch's mean (value and gradient).
#[test]
fn mean_denominator_makes_accumulation_exact() {
    let b = TestBackend::ndarray_f64().autodiff();
    let data = Data::new(N, D, V, -100, 19);
    let w = b.float(&data.class_weight, [V]);
    let t = b.int(&data.target, [N]);
    let want: f64 = data
        .target
        .iter()
        .filter(|&&t| t != -100)
        .map(|&t| data.class_weight[t as usize])
        .sum();
    let got = values(mean_denominator(t.clone(), Some(w.clone()), -100))[0];
    assert!((got - want).abs() < 1e-12, "{got} {want}");
    assert_eq!(values(mean_denominator(t.clone(), None, -100))[0], 9.0);

    // Unequal micro-batches (rows 0..3 and 3..12), with the linear loss.
    let hidden = b.float(&data.hidden, [N, D]).require_grad();
    let weight = b.float(&data.weight, [D, V]).require_grad();
    let options = LinearCrossEntropyOptions::new()
        .with_class_weight(w.clone())
        .with_chunk_size(4);
    let whole = linear_cross_entropy(
        hidden.clone(),
        weight.clone(),
        None,
        t.clone(),
        Reduction::Mean,
        &options,
    );
    let whole_grad = values(weight.grad(&whole.backward()).unwrap());
    let total = mean_denominator(t.clone(), Some(w.clone()), -100);
    let mut sum = 0.0;
    let mut grad = vec![0.0; D * V];
    for rows in [0..3, 3..N] {
        let loss = linear_cross_entropy(
            hidden.clone().slice([rows.clone()]),
            weight.clone(),
            None,
            t.clone().slice([rows]),
            Reduction::Sum,
            &options,
        ) / total.clone();
        let g = values(weight.grad(&loss.backward()).unwrap());
        grad.iter_mut().zip(g).for_each(|(a, b)| *a += b);
        sum += values(loss)[0];
    }
    assert_close(&[sum], &values(whole), 1e-12, 0.0, "accumulated loss");
    assert_close(&grad, &whole_grad, 1e-10, 1e-14, "accumulated gradient");
}

#[derive(Module, Debug)]
struct Model {
    body: Linear,
    head: Linear,
}

crate::on_both_backends!(
    ndarray_training_step_with_32k_vocabulary_matches_composite,
    wgpu_training_step_with_32k_vocabulary_matches_composite,
    training_step_with_32k_vocabulary_matches_composite
);

/// A two-layer model with a `Linear` head of V = 32,000 classes: one SGD step with the fused
/// loss moves every parameter as the composite loss does.
fn training_step_with_32k_vocabulary_matches_composite(b: &TestBackend) {
    let (rows, input, width, classes) = (48, 16, 32, 32_000);
    let model = Model {
        body: linear_layer(input, width, 42, b),
        head: linear_layer(width, classes, 43, b),
    };
    let mut s = Stream::new(23);
    let features = b.float(&s.normals(rows * input, 1.0), [rows, input]);
    let mut target = s.classes(rows, classes);
    target[5] = -100;
    let target = b.int(&target, [rows]);
    let options = LinearCrossEntropyOptions::new()
        .with_label_smoothing(0.1)
        .with_z_loss(1e-4);
    let before = values(model.head.weight.val());
    let step = |path: LossPath| {
        with_loss_path(path, || {
            let model = model.clone();
            let hidden = burn::tensor::activation::relu(model.body.forward(features.clone()));
            let loss = linear_layer_cross_entropy(
                &model.head,
                hidden,
                target.clone(),
                Reduction::Mean,
                &options,
            );
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let mut optim = SgdConfig::new().init();
            optim.step(0.5, model, grads)
        })
    };
    let (fused, composite) = (step(LossPath::Fused), step(LossPath::Composite));
    let params = |m: &Model| {
        [
            ("head.weight", values(m.head.weight.val())),
            ("head.bias", values(m.head.bias.as_ref().unwrap().val())),
            ("body.weight", values(m.body.weight.val())),
            ("body.bias", values(m.body.bias.as_ref().unwrap().val())),
        ]
    };
    let start = params(&model);
    assert_eq!(start[0].1, before);
    // The updates (new - old) agree within f32 round-off of each update's scale.
    for ((name, old), ((_, f), (_, c))) in start
        .iter()
        .zip(params(&fused).into_iter().zip(params(&composite)))
    {
        let delta = |new: &[f64]| new.iter().zip(old).map(|(n, o)| n - o).collect::<Vec<_>>();
        let (df, dc) = (delta(&f), delta(&c));
        let scale = dc.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: the step moved nothing");
        assert_close(&df, &dc, 1e-4, 1e-4 * scale, name);
    }
}
