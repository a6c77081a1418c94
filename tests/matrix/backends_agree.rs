//! Every backend gives ndarray's numbers on the same inputs (on ndarray itself this is a
//! determinism check: two runs give the same numbers).

use burn::tensor::backend::AutodiffBackend;
use burn_xent::*;

use crate::common::{NdArrayAd, values};
use crate::support::*;

/// The losses of every kind on the shared inputs of backend `B`, flattened into evaluations.
fn all_losses<B: AutodiffBackend>(device: &B::Device) -> Vec<(String, Evaluated)> {
    let mut out = Vec::new();
    let (p, t) = (probabilities::<B>(device), soft_targets::<B>(device));
    let (x, idx) = (logits::<B>(device), classes::<B>(device));
    let (xk, tk) = k_dim::<B>(device);
    let q = class_probabilities::<B>(device);
    let ce = CrossEntropyOptions::new()
        .with_weight(class_weight::<B>(device))
        .with_ignore_index(1)
        .with_label_smoothing(0.1);
    for reduction in [Reduction::Mean, Reduction::Sum] {
        let r = format!("{reduction:?}");
        out.push((
            format!("bce {r}"),
            evaluate(p.clone(), |p| {
                binary_cross_entropy(
                    p,
                    t.clone(),
                    reduction,
                    &BceOptions::new().with_weight(class_weight::<B>(device)),
                )
            }),
        ));
        out.push((
            format!("bce_with_logits {r}"),
            evaluate(x.clone(), |x| {
                binary_cross_entropy_with_logits(
                    x,
                    t.clone(),
                    reduction,
                    &BceWithLogitsOptions::new().with_pos_weight(class_weight::<B>(device)),
                )
            }),
        ));
        out.push((
            format!("cross_entropy {r}"),
            evaluate(x.clone(), |x| cross_entropy(x, idx.clone(), reduction, &ce)),
        ));
        out.push((
            format!("cross_entropy K-dim {r}"),
            evaluate(xk.clone(), |x| cross_entropy(x, tk.clone(), reduction, &ce)),
        ));
        out.push((
            format!("cross_entropy probs {r}"),
            evaluate(x.clone(), |x| {
                cross_entropy_with_probs(
                    x,
                    q.clone(),
                    reduction,
                    &CrossEntropyOptions::new().with_label_smoothing(0.1),
                )
            }),
        ));
        out.push((
            format!("nll {r}"),
            evaluate(x.clone(), |x| {
                nll_loss(
                    x,
                    idx.clone(),
                    reduction,
                    &NllLossOptions::new().with_ignore_index(2),
                )
            }),
        ));
    }
    out
}

fn backend_agrees_with_ndarray<B: AutodiffBackend>(device: &B::Device) {
    let reference = all_losses::<NdArrayAd>(&Default::default());
    let got = all_losses::<B>(device);
    for ((name, got), (_, want)) in got.iter().zip(&reference) {
        assert_evaluations_close(got, want, name);
    }
    // The inputs themselves agree, so the comparison above compares like with like.
    let inputs = values(logits::<B>(device));
    assert_eq!(inputs, values(logits::<NdArrayAd>(&Default::default())));
}

crate::matrix_tests!(backend_agrees_with_ndarray);
