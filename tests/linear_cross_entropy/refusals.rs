//! `linear_cross_entropy`'s refusals of bad input, on both paths (and two of plain
//! `cross_entropy`'s, for its soft cap and z-loss).

use burn::tensor::Tensor;
use burn_xent::*;

use crate::common::{TestBackend, assert_panics_with};

crate::on_both_backends!(
    ndarray_bad_input_is_refused,
    wgpu_bad_input_is_refused,
    bad_input_is_refused
);

/// Every bad argument is refused with a message naming the function, the argument, what was
/// expected and what came, on both paths.
fn bad_input_is_refused(b: &TestBackend) {
    let f = (&b.device, b.dtype);
    let h = || Tensor::<2>::zeros([4, 3], f);
    let w = || Tensor::<2>::zeros([3, 5], f);
    let t = || b.int(&[0, 1, 2, 4], [4]);
    let o = LinearCrossEntropyOptions::new;
    let mean = Reduction::Mean;
    for path in [LossPath::Fused, LossPath::Composite] {
        with_loss_path(path, || {
            assert_panics_with(
                || linear_cross_entropy(h(), Tensor::<2>::zeros([4, 5], f), None, t(), mean, &o()),
                &[
                    "linear_cross_entropy: weight: expected shape [3, V]",
                    "got [4, 5]",
                ],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), Some(Tensor::zeros([4], f)), t(), mean, &o()),
                &["linear_cross_entropy: bias: expected shape [5]", "got [4]"],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, b.int(&[0, 1, 2], [3]), mean, &o()),
                &[
                    "linear_cross_entropy: target: expected shape [4]",
                    "got [3]",
                ],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, b.int(&[0, 1, 5, 2], [4]), mean, &o()),
                &[
                    "linear_cross_entropy: target: expected class indices in [0, 5)",
                    "got 5 at index [2]",
                ],
            );
            assert_panics_with(
                || {
                    linear_cross_entropy(
                        h(),
                        w(),
                        None,
                        t(),
                        mean,
                        &o().with_class_weight(Tensor::ones([4], f)),
                    )
                },
                &[
                    "linear_cross_entropy: class_weight: expected one weight per class, shape [5]",
                    "got shape [4]",
                ],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, t(), mean, &o().with_softcap(0.0)),
                &["linear_cross_entropy: softcap: expected a positive finite cap, got 0"],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, t(), mean, &o().with_z_loss(-1.0)),
                &["linear_cross_entropy: z_loss: expected a non-negative finite scale, got -1"],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, t(), mean, &o().with_label_smoothing(1.5)),
                &["linear_cross_entropy: label_smoothing: expected a value in [0, 1], got 1.5"],
            );
            assert_panics_with(
                || linear_cross_entropy(h(), w(), None, t(), mean, &o().with_chunk_size(0)),
                &["linear_cross_entropy: chunk_size: expected at least 1 row per chunk, got 0"],
            );
            assert_panics_with(
                || {
                    linear_cross_entropy(
                        Tensor::<3>::zeros([2, 2, 3], f),
                        w(),
                        None,
                        t(),
                        mean,
                        &o(),
                    )
                },
                &[
                    "linear_cross_entropy: target: expected shape [2, 2]",
                    "got [4]",
                ],
            );
        });
    }
    assert_panics_with(
        || {
            cross_entropy(
                h(),
                b.int(&[0, 1, 2, 0], [4]),
                mean,
                &CrossEntropyOptions::new().with_softcap(-1.0),
            )
        },
        &["cross_entropy: softcap: expected a positive finite cap, got -1"],
    );
    assert_panics_with(
        || {
            cross_entropy(
                h(),
                b.int(&[0, 1, 2, 0], [4]),
                mean,
                &CrossEntropyOptions::new().with_z_loss(f64::NAN),
            )
        },
        &["cross_entropy: z_loss: expected a non-negative finite scale, got NaN"],
    );
}
