//! Tests of the cube kernels beside the kernel contract's suite (`contract_tests`, which
//! checks their values on `burn::backend::Cube`): where the gradients go, the cases left to the
//! composite path, and the custom node's order in the fusion stream. They run on
//! `burn::backend::Cube` (`Fusion<CubeBackend>`, the type that implements `Kernels`), on the
//! wgpu device, or print one `SKIPPED` line where it does not run.

use burn::backend::Cube;
use burn::backend::tensor::FloatTensor;
use burn_cubecl::CubeBackend;

use super::super::concrete::Concrete;
use super::super::contract_tests::{On, assert_close, float, int, read, ready};
use super::super::kernels::{
    BinaryArgs, BinaryKind, BinaryParams, ClassIndexArgs, ClassIndexKind, ClassIndexParams,
    ClassProbsParams, Kernels, Output, Periodic, Ran, Upstream,
};
use crate::reduction::Reduction;

/// The id of the memory of a fusion tensor's inner handle (from its `Debug` form: the id is not
/// public), read through a clone that is dropped before the tensor is used again.
fn memory_id(tensor: &FloatTensor<Cube>) -> String {
    let inner = tensor
        .client
        .resolve_tensor_float::<CubeBackend>(tensor.clone());
    let debug = format!("{:?}", inner.handle.memory);
    let start = debug.find("id:").expect("a memory id");
    let end = debug[start..].find('}').expect("the id's end");
    debug[start..start + end].to_string()
}

/// Every `*_with_grad` forward and `scale` write over their input exactly when it was the last
/// reference (`ReadWrite` in the stream, and a unique inner handle): the gradient then lives
/// in the input's memory; a shared input keeps its values and its gradient gets memory of its
/// own.
#[test]
fn gradients_over_the_input_exactly_when_last_reference() {
    if !ready("gradients_over_the_input_exactly_when_last_reference") {
        return;
    }
    let on = On::wgpu();
    let (n, c, s) = (2, 40, 16);
    let len = n * c * s;
    let values: Vec<f64> = (0..len).map(|i| (i as f64 * 0.37).sin()).collect();
    let targets: Vec<i64> = (0..n * s).map(|i| (i as i64 * 7) % c as i64).collect();
    let target = int::<Cube>(&targets, &[n, s], &on);
    let probs = float::<Cube>(&vec![1.0 / c as f64; len], &[n, c, s], &on);
    let binary_target = float::<Cube>(&vec![0.5; len], &[len], &on);
    let mean = Output::Reduced(Reduction::Mean);
    let class_params = |kind, label_smoothing| ClassIndexParams {
        kind,
        batch: n,
        classes: c,
        spatial: s,
        ignore_index: -100,
        label_smoothing,
        output: mean,
        check_values: false,
    };
    let probs_params = ClassProbsParams {
        batch: n,
        classes: c,
        spatial: s,
        label_smoothing: 0.0,
        output: mean,
    };
    let binary_params = BinaryParams {
        kind: BinaryKind::WithLogits,
        len,
        output: mean,
        check_values: false,
    };
    let class_index = |x, params: ClassIndexParams| match Cube::class_index_with_grad(
        x, &target, None, &params,
    ) {
        Ran::Done((_, grad)) => grad,
        _ => panic!("covered"),
    };
    // Each op: the shape of its input, and the gradient of a fresh input of `values`.
    type Op<'a> = Box<dyn Fn(FloatTensor<Cube>) -> FloatTensor<Cube> + 'a>;
    let ops: Vec<(&str, Vec<usize>, Op<'_>)> = vec![
        (
            "cross-entropy",
            vec![n, c, s],
            Box::new(|x| class_index(x, class_params(ClassIndexKind::CrossEntropy, 0.1))),
        ),
        (
            "nll",
            vec![n, c, s],
            Box::new(|x| class_index(x, class_params(ClassIndexKind::Nll, 0.0))),
        ),
        (
            "class probabilities",
            vec![n, c, s],
            Box::new(|x| {
                match Cube::class_probs_with_grad(x, &probs, None, &probs_params, [true; 2]) {
                    Ran::Done((_, [Some(grad), Some(_)])) => grad,
                    _ => panic!("covered"),
                }
            }),
        ),
        (
            "binary",
            vec![len],
            Box::new(|x| {
                let ran = Cube::binary_with_grad(
                    x,
                    &binary_target,
                    None,
                    None,
                    &binary_params,
                    [true, false],
                );
                match ran {
                    Ran::Done((_, [Some(grad), None])) => grad,
                    _ => panic!("covered"),
                }
            }),
        ),
        (
            "scale",
            vec![n, c, s],
            Box::new(|x| {
                let upstream = float::<Cube>(&[2.0], &[1], &on);
                Cube::scale(x, upstream, Upstream::Whole)
            }),
        ),
    ];
    for (what, shape, op) in ops {
        let unique = float::<Cube>(&values, &shape, &on);
        let id = memory_id(&unique);
        assert_eq!(memory_id(&op(unique)), id, "{what}: over a unique input");

        let shared = float::<Cube>(&values, &shape, &on);
        let keep = shared.clone();
        assert_ne!(
            memory_id(&op(shared)),
            memory_id(&keep),
            "{what}: a shared input's gradient"
        );
        assert_close(what, &read::<Cube>(keep).1, &values, 1e-6);
    }
}

/// The cases the cube kernels leave to the composite path: a positive weight for BCE on
/// probabilities, an `ignore_index` beyond `i32`.
#[test]
fn uncovered_cases_return_none() {
    if !ready("uncovered_cases_return_none") {
        return;
    }
    let on = On::wgpu();
    let input = float::<Cube>(&[0.5; 4], &[4], &on);
    let pos_weight = Periodic::<Cube> {
        values: float::<Cube>(&[2.0], &[1], &on),
        period: 1,
    };
    let params = BinaryParams {
        kind: BinaryKind::Probabilities,
        len: 4,
        output: Output::PerElement,
        check_values: false,
    };
    let binary = Cube::binary_forward(BinaryArgs {
        input: &input,
        target: &input,
        weight: None,
        pos_weight: Some(&pos_weight),
        params: &params,
    });
    assert!(
        binary.is_none(),
        "BCE on probabilities with a positive weight"
    );
    let class_params = ClassIndexParams {
        kind: ClassIndexKind::CrossEntropy,
        batch: 2,
        classes: 2,
        spatial: 1,
        ignore_index: i64::from(i32::MAX) + 1,
        label_smoothing: 0.0,
        output: Output::PerElement,
        check_values: false,
    };
    let target = int::<Cube>(&[0, 1], &[2, 1], &on);
    let class_index = Cube::class_index_forward(ClassIndexArgs {
        input: &input,
        target: &target,
        weight: None,
        params: &class_params,
    });
    assert!(class_index.is_none(), "an ignore_index beyond i32");
}

/// The custom node reads inputs that fused ops still hold pending, and later fused ops read
/// its outputs: `(2x)` → loss → `loss + 1`, read once at the end.
#[test]
fn orders_with_pending_fused_ops() {
    if !ready("orders_with_pending_fused_ops") {
        return;
    }
    let on = On::wgpu();
    let x: Vec<f64> = (0..6).map(|i| i as f64 * 0.7 - 2.0).collect();
    let t = [1.0, 0.0, 0.5, 1.0, 0.25, 0.0];
    let doubled = Cube::tensor::<1>(float::<Cube>(&x, &[6], &on)).mul_scalar(2.0);
    let target = float::<Cube>(&t, &[6], &on);
    let params = BinaryParams {
        kind: BinaryKind::WithLogits,
        len: 6,
        output: Output::PerElement,
        check_values: false,
    };
    let loss = Cube::binary_forward(BinaryArgs {
        input: &Cube::primitive(doubled),
        target: &target,
        weight: None,
        pos_weight: None,
        params: &params,
    })
    .expect("covered")
    .expect("no bad value");
    let shifted = Cube::tensor::<1>(loss).add_scalar(1.0);
    let want: Vec<f64> = x
        .iter()
        .zip(t)
        .map(|(&x, t)| {
            let x = 2.0 * x;
            let softplus = |v: f64| v.max(0.0) + (-v.abs()).exp().ln_1p();
            (1.0 - t) * softplus(x) + t * softplus(-x) + 1.0
        })
        .collect();
    assert_close(
        "loss + 1",
        &read::<Cube>(Cube::primitive(shifted)).1,
        &want,
        2e-5,
    );
}
