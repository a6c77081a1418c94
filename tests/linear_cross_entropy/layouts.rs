//! The CPU backends' `gemm` products at sizes and layouts the small cases do not reach: `D`
//! and `V` not multiples of any vector width, products large enough to be split over threads
//! (the default chunk, all 600 rows here: `grad_hidden` as one product), chunks of 128 rows
//! not dividing `N` (`grad_hidden` through its transpose; the logits of chunks after the first
//! written over the last chunk's gradient, the short last chunk in a new buffer), no bias, and
//! `hidden` and `weight` handed over as views: `hidden` the transpose of a `[D, N]` leaf or
//! rows of a larger leaf, `weight` the transpose of a `[V, D]` leaf (a tied embedding),
//! `hidden` columns of a wider leaf (a view with gaps, which the products read through a
//! copy). Values and the leaves'
//! gradients against the definition in f64 (the parent module's `reference`), mean, sum and
//! per row, in f32 and f64, on ndarray and Flex.

use burn::tensor::Tensor;
use burn_xent::*;

use super::common::{TestBackend, values};
use super::{Data, Evaluation, MODES, Mode, PLAIN, Setup, assert_matches, reference};

/// How `hidden` reaches the loss.
#[derive(Clone, Copy, Debug)]
enum HiddenLayout {
    /// A `[N, D]` leaf.
    Plain,
    /// The transpose of a `[D, N]` leaf.
    Transposed,
    /// Rows `1..N + 1` of a `[N + 2, D]` leaf.
    RowsOfLarger,
    /// Columns `1..D + 1` of a `[N, D + 3]` leaf.
    ColumnsOfWider,
}

/// `rows × cols` row-major `values` transposed.
fn transposed(values: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols * rows)
        .map(|i| values[(i % rows) * cols + i / rows])
        .collect()
}

/// `linear_cross_entropy` with `hidden` as `layout` says and `weight` (when `tied`) the
/// transpose of a `[V, D]` leaf; the gradients read from the leaves and mapped back to
/// `hidden`'s `[N, D]` and `weight`'s `[D, V]`.
fn evaluate(
    data: &Data,
    setup: Setup,
    mode: Mode,
    layout: HiddenLayout,
    tied: bool,
    chunk: Option<usize>,
    b: &TestBackend,
) -> Evaluation {
    let (n, d, v) = (data.rows, data.width, data.classes);
    let hidden_leaf: Tensor<2> = match layout {
        HiddenLayout::Plain => b.float(&data.hidden, [n, d]),
        HiddenLayout::Transposed => b.float(&transposed(&data.hidden, n, d), [d, n]),
        HiddenLayout::RowsOfLarger => {
            let mut padded = vec![9.0; d];
            padded.extend_from_slice(&data.hidden);
            padded.extend(std::iter::repeat_n(-9.0, d));
            b.float(&padded, [n + 2, d])
        }
        HiddenLayout::ColumnsOfWider => {
            let wide: Vec<f64> = (0..n * (d + 3))
                .map(|i| match i % (d + 3) {
                    c if (1..=d).contains(&c) => data.hidden[(i / (d + 3)) * d + c - 1],
                    _ => 7.0,
                })
                .collect();
            b.float(&wide, [n, d + 3])
        }
    }
    .require_grad();
    let hidden = match layout {
        HiddenLayout::Plain => hidden_leaf.clone(),
        HiddenLayout::Transposed => hidden_leaf.clone().transpose(),
        HiddenLayout::RowsOfLarger => hidden_leaf.clone().slice([1..n + 1, 0..d]),
        HiddenLayout::ColumnsOfWider => hidden_leaf.clone().slice([0..n, 1..d + 1]),
    };
    let weight_leaf: Tensor<2> = if tied {
        b.float(&transposed(&data.weight, d, v), [v, d])
    } else {
        b.float(&data.weight, [d, v])
    }
    .require_grad();
    let weight = if tied {
        weight_leaf.clone().transpose()
    } else {
        weight_leaf.clone()
    };
    let bias = setup.bias.then(|| b.float(&data.bias, [v]).require_grad());
    let target = b.int(&data.target, [n]);
    let options = LinearCrossEntropyOptions {
        chunk_size: chunk,
        ..LinearCrossEntropyOptions::new().with_ignore_index(setup.ignore_index)
    };
    let loss = match mode {
        Mode::Reduced(reduction) => {
            linear_cross_entropy(hidden, weight, bias.clone(), target, reduction, &options)
        }
        Mode::PerRow => {
            linear_cross_entropy_no_reduction(hidden, weight, bias.clone(), target, &options)
        }
    };
    let value = values(loss.clone());
    let objective = match mode {
        Mode::Reduced(_) => loss,
        // The parent module's upstream gradient for per-row losses.
        Mode::PerRow => {
            let upstream: Vec<f64> = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
            (loss * b.float(&upstream, [n])).sum()
        }
    };
    let grads = objective.backward();
    let grad_hidden = hidden_leaf.grad(&grads).map(values).map(|g| match layout {
        HiddenLayout::Plain => g,
        HiddenLayout::Transposed => transposed(&g, d, n),
        HiddenLayout::RowsOfLarger => {
            assert!(
                g[..d].iter().chain(&g[(n + 1) * d..]).all(|&x| x == 0.0),
                "rows outside the view get no gradient"
            );
            g[d..(n + 1) * d].to_vec()
        }
        HiddenLayout::ColumnsOfWider => (0..n * (d + 3))
            .filter(|i| (1..=d).contains(&(i % (d + 3))))
            .map(|i| g[i])
            .collect(),
    });
    let grad_weight = weight_leaf
        .grad(&grads)
        .map(values)
        .map(|g| if tied { transposed(&g, v, d) } else { g });
    let grad_bias = bias.and_then(|bias| bias.grad(&grads).map(values));
    Evaluation {
        value,
        grads: [grad_hidden, grad_weight, grad_bias],
    }
}

fn layouts_equal_definition(b: &TestBackend, rtol: f64) {
    // 600 rows: the CPU's default chunk takes them all (more rows than `grad_hidden`'s
    // transposed product takes), and its products (600 · 421 · 19 multiply-adds) run on
    // several threads; chunks of 128 rows leave a last one of 88.
    let (n, d, v) = (600, 19, 421);
    for (setup, seed) in [
        (PLAIN, 41),
        (
            Setup {
                bias: false,
                ..PLAIN
            },
            42,
        ),
    ] {
        let data = Data::new(n, d, v, setup.ignore_index, seed);
        for mode in MODES {
            let want = reference(&data, setup, mode);
            for layout in [
                HiddenLayout::Plain,
                HiddenLayout::Transposed,
                HiddenLayout::RowsOfLarger,
                HiddenLayout::ColumnsOfWider,
            ] {
                for (tied, chunk) in [
                    (false, None),
                    (true, None),
                    (false, Some(128)),
                    (true, Some(128)),
                ] {
                    let got = with_loss_path(LossPath::Fused, || {
                        evaluate(&data, setup, mode, layout, tied, chunk, b)
                    });
                    let context = format!(
                        "{} bias {}, {mode:?}, hidden {layout:?}, tied weight {tied}, chunk {chunk:?}",
                        b.label(),
                        setup.bias
                    );
                    assert_matches(&got, &want, rtol, &context);
                }
            }
        }
    }
}

#[test]
fn ndarray_layouts_equal_definition() {
    layouts_equal_definition(&TestBackend::ndarray_f32().autodiff(), 5e-5);
    layouts_equal_definition(&TestBackend::ndarray_f64().autodiff(), 1e-10);
}

#[test]
fn flex_layouts_equal_definition() {
    layouts_equal_definition(&TestBackend::flex_f32().autodiff(), 5e-5);
    layouts_equal_definition(&TestBackend::flex_f64().autodiff(), 1e-10);
}
