//! A strict reader of fixture files in the `xent-fixtures/1` format
//! (`docs/fixture-format.md`).
//!
//! Every field and value the format defines is read; anything else (an unknown field, an
//! unknown loss, dtype, reduction or target kind, a value of the wrong type, data whose length
//! does not match its shape, a field that does not apply to the case's loss holding a value
//! other than its default) is an error, never ignored. A field that does not apply but holds
//! its default (`ignore_index: -100` or `label_smoothing: 0` on a BCE case, `pos_weight: null`
//! on a cross-entropy case) is accepted: it asks for nothing the loss lacks. An error in the
//! file's envelope rejects the file; an error inside one case rejects that case only, so that
//! the other cases still run and the bad one is reported by name.
//!
//! Ranks are not limited here: a tensor of rank above 6 reads fine and is refused, with a
//! message, by the runner.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// The format this reader understands.
pub const FORMAT: &str = "xent-fixtures/1";

/// `ignore_index` when absent (PyTorch's default).
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

/// `label_smoothing` when absent.
pub const DEFAULT_LABEL_SMOOTHING: f64 = 0.0;

/// The loss a case exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `binary_cross_entropy`: probabilities against float targets.
    Bce,
    /// `binary_cross_entropy_with_logits`: logits against float targets.
    BceWithLogits,
    /// `cross_entropy`: logits against class indices or class probabilities.
    CrossEntropy,
    /// `nll_loss`: log-probabilities against class indices.
    Nll,
}

impl Loss {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "binary_cross_entropy" => Ok(Self::Bce),
            "binary_cross_entropy_with_logits" => Ok(Self::BceWithLogits),
            "cross_entropy" => Ok(Self::CrossEntropy),
            "nll_loss" => Ok(Self::Nll),
            other => Err(format!(
                "loss: unknown loss {other:?} (expected binary_cross_entropy, \
                 binary_cross_entropy_with_logits, cross_entropy or nll_loss)"
            )),
        }
    }
}

/// The float type a case's float tensors are loaded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

/// PyTorch's `reduction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// `mean`.
    Mean,
    /// `sum`.
    Sum,
    /// `none`: the per-element loss.
    None,
}

/// A float tensor: shape and row-major data (NaN and infinities included).
#[derive(Clone, Debug, PartialEq)]
pub struct FloatTensor {
    /// The shape; `[]` for a 0-dimensional tensor.
    pub shape: Vec<usize>,
    /// The values in row-major order, as many as the shape holds.
    pub data: Vec<f64>,
}

/// An integer tensor of class indices.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexTensor {
    /// The shape; `[]` for a 0-dimensional tensor.
    pub shape: Vec<usize>,
    /// The class indices in row-major order, as many as the shape holds.
    pub data: Vec<i64>,
}

/// A case's target: class indices or float values.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// `"kind": "index"`: class indices (cross-entropy, NLL).
    Index(IndexTensor),
    /// `"kind": "float"`: binary targets, or class probabilities for cross-entropy.
    Float(FloatTensor),
}

/// `abs(got - want) <= atol + rtol * abs(want)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// The relative part.
    pub rtol: f64,
    /// The absolute part.
    pub atol: f64,
}

/// The reference answer of a valid case.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    /// The loss; shape `[]` when reduced.
    pub loss: FloatTensor,
    /// `None`: the gradient is not compared.
    pub grad_input: Option<FloatTensor>,
    /// The gradient with respect to a float target (burn-xent's extension of the format,
    /// written by `tools/gen_nonfinite.py`); `None` when the case has none.
    pub grad_target: Option<FloatTensor>,
}

/// One case, with the format's defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Unique in its file.
    pub name: String,
    /// The loss function.
    pub loss: Loss,
    /// The float type the float tensors are loaded as.
    pub dtype: Dtype,
    /// Probabilities, logits or log-probabilities, by loss.
    pub input: FloatTensor,
    /// Class indices or float targets.
    pub target: Target,
    /// Broadcast weight (binary losses) or one weight per class (cross-entropy, NLL).
    pub weight: Option<FloatTensor>,
    /// `binary_cross_entropy_with_logits` only: broadcast against the input.
    pub pos_weight: Option<FloatTensor>,
    /// The class index that is ignored; -100 by default.
    pub ignore_index: i64,
    /// Cross-entropy's label smoothing; 0 by default.
    pub label_smoothing: f64,
    /// How the per-element loss is reduced.
    pub reduction: Reduction,
    /// The gradient flowing into the loss; `None` means ones.
    pub upstream: Option<FloatTensor>,
    /// The call is invalid and must be refused.
    pub expect_error: bool,
    /// `None` exactly when `expect_error`.
    pub expected: Option<Expected>,
    /// How close the computed values must be to `expected`.
    pub tolerance: Tolerance,
}

/// A case the reader could not accept; it counts as a failed case.
#[derive(Clone, Debug, PartialEq)]
pub struct BadCase {
    /// The case's name when it has one, otherwise `cases[i]`.
    pub label: String,
    pub reason: String,
}

/// The contents of one fixture file.
#[derive(Clone, Debug)]
pub struct Fixtures {
    /// What made the file (e.g. `torch 2.15.0`), when it says.
    pub generator: Option<String>,
    /// Every case in file order: read, or rejected with the reason.
    pub cases: Vec<Result<Case, BadCase>>,
}

const FILE_FIELDS: &[&str] = &["format", "generator", "cases"];
const CASE_FIELDS: &[&str] = &[
    "name",
    "loss",
    "dtype",
    "input",
    "target",
    "weight",
    "pos_weight",
    "ignore_index",
    "label_smoothing",
    "reduction",
    "upstream",
    "expected",
    "expect_error",
    "tolerance",
];
const TENSOR_FIELDS: &[&str] = &["shape", "data"];
const TARGET_FIELDS: &[&str] = &["shape", "data", "kind"];
const EXPECTED_FIELDS: &[&str] = &["loss", "grad_input", "grad_target"];
const TOLERANCE_FIELDS: &[&str] = &["rtol", "atol"];

/// Reads a fixture file's text. `Err` rejects the whole file; a bad case is returned as a
/// [`BadCase`] among the good ones.
pub fn parse(text: &str) -> Result<Fixtures, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let file = root
        .as_object()
        .ok_or_else(|| format!("expected a JSON object, got {}", kind_of(&root)))?;
    known_fields(file, FILE_FIELDS, "the file")?;
    match file.get("format") {
        Some(Value::String(format)) if format == FORMAT => {}
        Some(other) => return Err(format!("format: expected {FORMAT:?}, got {other}")),
        None => return Err(format!("format: missing (expected {FORMAT:?})")),
    }
    let generator = match file.get("generator") {
        None => None,
        Some(Value::String(generator)) => Some(generator.clone()),
        Some(other) => return Err(format!("generator: expected a string, got {other}")),
    };
    let cases = match file.get("cases") {
        Some(Value::Array(cases)) => cases,
        Some(other) => return Err(format!("cases: expected an array, got {}", kind_of(other))),
        None => return Err("cases: missing".to_string()),
    };
    let mut names = HashSet::new();
    let cases = cases
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let label = value
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("cases[{i}]"), str::to_string);
            let case = parse_case(value).map_err(|reason| BadCase {
                label: label.clone(),
                reason,
            })?;
            if !names.insert(case.name.clone()) {
                return Err(BadCase {
                    label,
                    reason: "name: not unique in the file".to_string(),
                });
            }
            Ok(case)
        })
        .collect();
    Ok(Fixtures { generator, cases })
}

fn parse_case(value: &Value) -> Result<Case, String> {
    let case = value
        .as_object()
        .ok_or_else(|| format!("expected a JSON object, got {}", kind_of(value)))?;
    known_fields(case, CASE_FIELDS, "the case")?;

    let name = string(required(case, "name")?, "name")?.to_string();
    let loss = Loss::parse(string(required(case, "loss")?, "loss")?)?;
    let dtype = match string(required(case, "dtype")?, "dtype")? {
        "f32" => Dtype::F32,
        "f64" => Dtype::F64,
        other => {
            return Err(format!(
                "dtype: unknown dtype {other:?} (expected f32 or f64)"
            ));
        }
    };
    let reduction = match string(required(case, "reduction")?, "reduction")? {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        "none" => Reduction::None,
        other => {
            return Err(format!(
                "reduction: unknown reduction {other:?} (expected mean, sum or none)"
            ));
        }
    };
    let input = float_tensor(required(case, "input")?, "input", TENSOR_FIELDS)?;
    let target = target(required(case, "target")?)?;
    let weight = optional_tensor(case, "weight")?;
    let pos_weight = optional_tensor(case, "pos_weight")?;
    let upstream = optional_tensor(case, "upstream")?;
    let ignore_index = match case.get("ignore_index") {
        None => None,
        Some(value) => Some(
            value
                .as_i64()
                .ok_or_else(|| format!("ignore_index: expected an integer, got {value}"))?,
        ),
    };
    let label_smoothing = match case.get("label_smoothing") {
        None => None,
        Some(value) => Some(
            value
                .as_f64()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("label_smoothing: expected a number, got {value}"))?,
        ),
    };
    let expect_error = match case.get("expect_error") {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => return Err(format!("expect_error: expected true or false, got {other}")),
    };
    let expected = match (case.get("expected"), expect_error) {
        (None, true) => None,
        (Some(_), true) => {
            return Err("expected: must be absent when expect_error is true".to_string());
        }
        (None, false) => return Err("expected: missing (expect_error is false)".to_string()),
        (Some(value), false) => Some(parse_expected(value)?),
    };
    let tolerance = parse_tolerance(required(case, "tolerance")?)?;

    // A field that does not apply to the loss may be absent or hold its default; any other
    // value there is an error, not ignored.
    let class_loss = matches!(loss, Loss::CrossEntropy | Loss::Nll);
    if pos_weight.is_some() && loss != Loss::BceWithLogits {
        return Err(
            "pos_weight: only binary_cross_entropy_with_logits takes one (null or absent \
             elsewhere)"
                .to_string(),
        );
    }
    if let Some(value) = ignore_index.filter(|&v| v != DEFAULT_IGNORE_INDEX)
        && !class_loss
    {
        return Err(format!(
            "ignore_index: {value}, but only cross_entropy and nll_loss take one (absent or \
             {DEFAULT_IGNORE_INDEX} elsewhere)"
        ));
    }
    if let Some(value) = label_smoothing.filter(|&v| v != DEFAULT_LABEL_SMOOTHING)
        && loss != Loss::CrossEntropy
    {
        return Err(format!(
            "label_smoothing: {value}, but only cross_entropy takes one (absent or 0 elsewhere)"
        ));
    }
    match (&target, loss) {
        (Target::Index(_), Loss::Bce | Loss::BceWithLogits) => {
            return Err("target: kind \"index\" does not apply to a binary loss".to_string());
        }
        (Target::Float(_), Loss::Nll) => {
            return Err("target: nll_loss takes class indices (kind \"index\")".to_string());
        }
        _ => {}
    }

    Ok(Case {
        name,
        loss,
        dtype,
        input,
        target,
        weight,
        pos_weight,
        ignore_index: ignore_index.unwrap_or(DEFAULT_IGNORE_INDEX),
        label_smoothing: label_smoothing.unwrap_or(DEFAULT_LABEL_SMOOTHING),
        reduction,
        upstream,
        expect_error,
        expected,
        tolerance,
    })
}

fn parse_expected(value: &Value) -> Result<Expected, String> {
    let expected = value
        .as_object()
        .ok_or_else(|| format!("expected: expected a JSON object, got {}", kind_of(value)))?;
    known_fields(expected, EXPECTED_FIELDS, "expected")?;
    let loss = float_tensor(required(expected, "loss")?, "expected.loss", TENSOR_FIELDS)?;
    let grad_input = match required(expected, "grad_input")? {
        Value::Null => None,
        value => Some(float_tensor(value, "expected.grad_input", TENSOR_FIELDS)?),
    };
    let grad_target = match expected.get("grad_target") {
        None | Some(Value::Null) => None,
        Some(value) => Some(float_tensor(value, "expected.grad_target", TENSOR_FIELDS)?),
    };
    Ok(Expected {
        loss,
        grad_input,
        grad_target,
    })
}

fn parse_tolerance(value: &Value) -> Result<Tolerance, String> {
    let tolerance = value
        .as_object()
        .ok_or_else(|| format!("tolerance: expected a JSON object, got {}", kind_of(value)))?;
    known_fields(tolerance, TOLERANCE_FIELDS, "tolerance")?;
    let number = |field: &str| -> Result<f64, String> {
        let value = required(tolerance, field)?;
        value
            .as_f64()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("tolerance.{field}: expected a number >= 0, got {value}"))
    };
    Ok(Tolerance {
        rtol: number("rtol")?,
        atol: number("atol")?,
    })
}

fn target(value: &Value) -> Result<Target, String> {
    let kind = value
        .get("kind")
        .ok_or("target: missing \"kind\" (expected \"index\" or \"float\")")?;
    match kind.as_str() {
        Some("float") => Ok(Target::Float(float_tensor(value, "target", TARGET_FIELDS)?)),
        Some("index") => {
            let (shape, data) = tensor_parts(value, "target", TARGET_FIELDS)?;
            let data = data
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64().ok_or_else(|| {
                        format!("target.data[{i}]: expected an integer class index, got {v}")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Target::Index(IndexTensor { shape, data }))
        }
        _ => Err(format!(
            "target.kind: unknown kind {kind} (expected \"index\" or \"float\")"
        )),
    }
}

/// A tensor-or-null field that may be absent.
fn optional_tensor(case: &Map<String, Value>, field: &str) -> Result<Option<FloatTensor>, String> {
    match case.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => float_tensor(value, field, TENSOR_FIELDS).map(Some),
    }
}

fn float_tensor(value: &Value, what: &str, fields: &[&str]) -> Result<FloatTensor, String> {
    let (shape, data) = tensor_parts(value, what, fields)?;
    let data = data
        .iter()
        .enumerate()
        .map(|(i, v)| float_value(v).map_err(|e| format!("{what}.data[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FloatTensor { shape, data })
}

/// One float: a JSON number, or `"nan"`, `"inf"`, `"-inf"`.
pub fn float_value(value: &Value) -> Result<f64, String> {
    match value {
        Value::Number(number) => number
            .as_f64()
            .ok_or_else(|| format!("unrepresentable number {number}")),
        Value::String(text) => match text.as_str() {
            "nan" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(format!(
                "unknown value {other:?} (expected a number, \"nan\", \"inf\" or \"-inf\")"
            )),
        },
        other => Err(format!("expected a number, got {other}")),
    }
}

/// The shape and the raw data of a tensor object, checked for consistency.
fn tensor_parts<'a>(
    value: &'a Value,
    what: &str,
    fields: &[&str],
) -> Result<(Vec<usize>, &'a [Value]), String> {
    let tensor = value
        .as_object()
        .ok_or_else(|| format!("{what}: expected a tensor object, got {}", kind_of(value)))?;
    known_fields(tensor, fields, what)?;
    let shape = match required(tensor, "shape").map_err(|e| format!("{what}.{e}"))? {
        Value::Array(dims) => dims
            .iter()
            .map(|d| {
                d.as_u64()
                    .and_then(|d| usize::try_from(d).ok())
                    .ok_or_else(|| format!("{what}.shape: expected sizes >= 0, got {d}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(format!("{what}.shape: expected an array, got {other}")),
    };
    let data = match required(tensor, "data").map_err(|e| format!("{what}.{e}"))? {
        Value::Array(data) => data.as_slice(),
        other => {
            return Err(format!(
                "{what}.data: expected an array, got {}",
                kind_of(other)
            ));
        }
    };
    let count: usize = shape.iter().product();
    if data.len() != count {
        return Err(format!(
            "{what}: shape {shape:?} holds {count} values but data has {}",
            data.len()
        ));
    }
    Ok((shape, data))
}

fn known_fields(object: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), String> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(format!(
            "{what}: unknown field {unknown:?} (known: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

fn required<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a Value, String> {
    object.get(field).ok_or_else(|| format!("{field}: missing"))
}

fn string<'a>(value: &'a Value, field: &str) -> Result<&'a str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{field}: expected a string, got {value}"))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
