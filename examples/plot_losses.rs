//! Where BCE on probabilities saturates and BCE with logits stays exact, in f32.
//!
//! Draws `docs/bce_saturation.svg`: the loss (top) and its gradient with respect to the logit
//! `x` (bottom), for `x` from -30 to 30, target 1 (left) and target 0 (right), of
//!
//! - `binary_cross_entropy(sigmoid(x), t)` (PyTorch's `F.binary_cross_entropy`, `nn.BCELoss`),
//! - `binary_cross_entropy_with_logits(x, t)` (PyTorch's `F.binary_cross_entropy_with_logits`,
//!   `nn.BCEWithLogitsLoss`),
//!
//! both computed by burn-xent on ndarray in f32 (an autodiff device), gradients by Burn's autodiff, with
//! the exact values (`softplus`, `sigmoid`, in f64) underneath. In f32, `sigmoid(x)` rounds to
//! exactly 1 for `x` above about 16.6, so with target 0 the probability form takes
//! `log(1 - 1) = -inf`, which PyTorch (and burn-xent) clamp at -100: the loss jumps to 100 and
//! the gradient, `(p - t) / max(p (1 - p), 1e-12) * p (1 - p)`, is 0 where it should be 1. With
//! target 1 and `x` below about -27.6, `p (1 - p)` falls under PyTorch's 1e-12 floor and the
//! gradient shrinks towards 0 where it should be -1. The logits form follows the exact curves
//! across the range: within 6e-7 in loss and 4e-5 in gradient.
//!
//! Run with `cargo run --example plot_losses`; it prints a few values, where the probability
//! form breaks down and the largest errors of both forms, then writes the picture.

use burn::tensor::activation::sigmoid;
use burn::tensor::{DType, Tensor};
use burn_xent::{
    BceOptions, BceWithLogitsOptions, binary_cross_entropy_no_reduction,
    binary_cross_entropy_with_logits_no_reduction,
};
use plotters::prelude::*;

/// The tests' helpers, for the ndarray entry of their matrix, their tensor constructor and
/// read-back.
#[path = "../tests/common/mod.rs"]
mod common;

use common::{TestBackend, float_as, values};

const X_MIN: f64 = -30.0;
const X_MAX: f64 = 30.0;
const STEPS: usize = 1200;
/// The picture the README shows, in the crate's `docs/` whatever the working directory.
const OUTPUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/bce_saturation.svg");

/// One curve: per-element loss and gradient with respect to `x`, on the grid.
struct Curve {
    loss: Vec<f64>,
    grad: Vec<f64>,
}

/// The two losses for one target on the grid `xs`, in f32, with autodiff gradients.
fn curves(xs: &[f32], target: f32) -> (Curve, Curve) {
    let device = TestBackend::ndarray_f32().autodiff().device;
    let n = xs.len();
    let run = |with_logits: bool| {
        let x: Tensor<1> = float_as(xs.to_vec(), [n], &device, DType::F32);
        let x = x.require_grad();
        let t = float_as(vec![target; n], [n], &device, DType::F32);
        let loss = if with_logits {
            binary_cross_entropy_with_logits_no_reduction(
                x.clone(),
                t,
                &BceWithLogitsOptions::new(),
            )
        } else {
            binary_cross_entropy_no_reduction(sigmoid(x.clone()), t, &BceOptions::new())
        };
        // The elements are independent, so the gradient of the sum is each element's own.
        let grads = loss.clone().sum().backward();
        let grad = x.grad(&grads).expect("x is tracked");
        Curve {
            loss: values(loss),
            grad: values(grad),
        }
    };
    (run(false), run(true))
}

/// `log(1 + exp(z))` in f64, without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// The exact loss and gradient of BCE with logits at `x` for target `t` (0 or 1), in f64.
fn exact(x: f64, t: f64) -> (f64, f64) {
    let loss = t * softplus(-x) + (1.0 - t) * softplus(x);
    let grad = 1.0 / (1.0 + (-x).exp()) - t;
    (loss, grad)
}

type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// What one panel shows.
struct PanelSpec<'a> {
    caption: String,
    y_label: &'a str,
    y_range: std::ops::Range<f64>,
    y_decimals: usize,
    legend: SeriesLabelPosition,
    /// Red notes, one line each, from their top-left corner in data coordinates.
    notes: &'a [(f64, f64, &'a str)],
}

/// Draws one panel: the exact curve underneath, then the two f32 curves, then the notes.
fn panel(
    area: &Panel,
    spec: PanelSpec,
    xs: &[f64],
    series: [&[f64]; 3],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(&spec.caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(X_MIN..X_MAX, spec.y_range)?;
    chart
        .configure_mesh()
        .x_desc("logit x")
        .y_desc(spec.y_label)
        .x_labels(13)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            // A tick at 0 can come as -1e-17; print it as 0.
            let y = if y.abs() < 1e-9 { 0.0 } else { *y };
            format!("{y:.*}", spec.y_decimals)
        })
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 14))
        .draw()?;

    let [exact, probs, logits] = series;
    let points = |ys: &[f64]| {
        xs.iter()
            .copied()
            .zip(ys.iter().copied())
            .collect::<Vec<_>>()
    };
    chart
        .draw_series(LineSeries::new(
            points(exact),
            ShapeStyle::from(RGBColor(170, 170, 170)).stroke_width(7),
        ))?
        .label("exact (f64)")
        .legend(|(x, y)| {
            PathElement::new(
                vec![(x, y), (x + 24, y)],
                ShapeStyle::from(RGBColor(170, 170, 170)).stroke_width(7),
            )
        });
    let red = RGBColor(214, 39, 40);
    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(
            points(probs),
            ShapeStyle::from(red).stroke_width(2),
        ))?
        .label("BCE(sigmoid(x), t), f32")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], red.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            points(logits),
            ShapeStyle::from(blue).stroke_width(2),
        ))?
        .label("BCE with logits(x, t), f32")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], blue.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(spec.legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .draw()?;
    for &(x, y, text) in spec.notes {
        chart.draw_series(std::iter::once(Text::new(
            text.to_string(),
            (x, y),
            ("sans-serif", 15).into_font().color(&red),
        )))?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let xs: Vec<f32> = (0..=STEPS)
        .map(|i| (X_MIN + (X_MAX - X_MIN) * i as f64 / STEPS as f64) as f32)
        .collect();
    let xs64: Vec<f64> = xs.iter().map(|&x| f64::from(x)).collect();

    println!(
        "{:>6} {:>2} | {:>12} {:>12} {:>12} | {:>11} {:>11} {:>11}",
        "x", "t", "exact loss", "BCE(sig(x))", "with logits", "exact d/dx", "BCE(sig)", "logits"
    );
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/docs"))?;
    let root = SVGBackend::new(OUTPUT, (1200, 860)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.titled(
        "Binary cross-entropy in f32: on probabilities sigmoid(x) vs on logits x (burn-xent, ndarray, f32)",
        ("sans-serif", 20),
    )?;
    let panels = body.split_evenly((2, 2));

    for (column, target) in [1.0f32, 0.0].into_iter().enumerate() {
        let (probs, logits) = curves(&xs, target);
        let (exact_loss, exact_grad): (Vec<f64>, Vec<f64>) =
            xs64.iter().map(|&x| exact(x, f64::from(target))).unzip();

        for x in [-30.0f64, -28.0, -20.0, 0.0, 10.0, 17.0, 20.0, 30.0] {
            let i = ((x - X_MIN) / (X_MAX - X_MIN) * STEPS as f64).round() as usize;
            println!(
                "{:>6.1} {:>2} | {:>12.6e} {:>12.6e} {:>12.6e} | {:>11.4e} {:>11.4e} {:>11.4e}",
                xs64[i],
                target,
                exact_loss[i],
                probs.loss[i],
                logits.loss[i],
                exact_grad[i],
                probs.grad[i],
                logits.grad[i]
            );
        }

        if let Some(i) = probs.loss.iter().position(|&l| l >= 100.0) {
            println!(
                "target {target}: BCE(sigmoid(x)) is at the clamp, 100, from x = {:.2}",
                xs64[i]
            );
        }
        let off: Vec<f64> = (0..xs64.len())
            .filter(|&i| (probs.grad[i] - exact_grad[i]).abs() > 1e-3)
            .map(|i| xs64[i])
            .collect();
        if let (Some(first), Some(last)) = (off.first(), off.last()) {
            println!(
                "target {target}: BCE(sigmoid(x)) gradient off by more than 1e-3 for x in \
                 [{first:.2}, {last:.2}]"
            );
        }
        let worst = |ys: &[f64], exact: &[f64]| {
            ys.iter()
                .zip(exact)
                .map(|(y, e)| (y - e).abs())
                .fold(0.0f64, f64::max)
        };
        println!(
            "target {target}: largest |error| over the grid: BCE(sigmoid(x)) loss {:.3e}, \
             gradient {:.3e}; BCE with logits loss {:.3e}, gradient {:.3e}",
            worst(&probs.loss, &exact_loss),
            worst(&probs.grad, &exact_grad),
            worst(&logits.loss, &exact_loss),
            worst(&logits.grad, &exact_grad),
        );

        let (loss_notes, grad_notes, loss_legend, grad_legend): (&[_], &[_], _, _) =
            if target == 1.0 {
                (
                    &[],
                    &[
                        (
                            -26.5,
                            -0.25,
                            "x < -27.6: p (1 - p) < 1e-12, PyTorch's floor in",
                        ),
                        (
                            -26.5,
                            -0.37,
                            "the BCE gradient: -0.09 at x = -30 instead of -1",
                        ),
                    ],
                    SeriesLabelPosition::UpperRight,
                    SeriesLabelPosition::UpperLeft,
                )
            } else {
                (
                    &[
                        (-28.0, 72.0, "x > 16.6: sigmoid(x) rounds to 1 in f32, so"),
                        (-28.0, 64.0, "log(1 - p) = -inf is clamped at -100:"),
                        (-28.0, 56.0, "the loss jumps to 100"),
                    ],
                    &[
                        (1.5, -0.3, "x > 16.6: p (1 - p) = 0, gradient 0"),
                        (1.5, -0.42, "instead of 1: the sample stops learning"),
                    ],
                    SeriesLabelPosition::UpperLeft,
                    SeriesLabelPosition::LowerLeft,
                )
            };
        panel(
            &panels[column],
            PanelSpec {
                caption: format!("loss, target {target}"),
                y_label: "loss",
                y_range: -3.0..106.0,
                y_decimals: 0,
                legend: loss_legend,
                notes: loss_notes,
            },
            &xs64,
            [&exact_loss, &probs.loss, &logits.loss],
        )?;
        panel(
            &panels[2 + column],
            PanelSpec {
                caption: format!("gradient dloss/dx, target {target}"),
                y_label: "dloss/dx",
                y_range: -1.15..1.15,
                y_decimals: 1,
                legend: grad_legend,
                notes: grad_notes,
            },
            &xs64,
            [&exact_grad, &probs.grad, &logits.grad],
        )?;
    }
    root.present()?;
    println!("wrote {OUTPUT}");
    Ok(())
}
