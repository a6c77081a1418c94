//! The inputs of a computation: [`HostInputs`], the host data shared by every backend of a
//! check, and [`Inputs`], one backend's copies of them, made at their first use (gradient
//! leaves for the float inputs) and read back after the backward pass.

use std::any::Any;
use std::cell::RefCell;

use burn::tensor::{DType, Device, Gradients, Int, Tensor, TensorData};

/// How a host input enters a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A float tensor that requires a gradient; its gradient is compared.
    Float,
    /// A float tensor that does not require a gradient (a constant weight); not compared
    /// itself, only through the outputs it affects.
    Constant,
    /// An integer tensor (class indices), passed through.
    Int,
}

/// One named input, as host data.
#[derive(Clone, Debug)]
pub struct HostInput {
    /// The name [`Inputs::float`] and [`Inputs::int`] take, and the report shows.
    pub name: String,
    /// Whether it is a gradient leaf, a float constant or an integer tensor.
    pub kind: InputKind,
    /// The values and shape; converted to each backend's float or int dtype.
    pub data: TensorData,
}

/// The inputs of a [`Computation`](super::Computation) as host data ([`TensorData`], any
/// rank), shared by every backend of a check.
///
/// ```
/// use burn::tensor::TensorData;
/// use burn_xent::backend_check::HostInputs;
/// let inputs = HostInputs::new()
///     .float("logits", TensorData::new(vec![0.5f32; 12], [4, 3])) // gradient compared
///     .constant("weight", TensorData::new(vec![1.0f32, 2.0, 0.5], [3])) // no gradient
///     .int("target", TensorData::new(vec![0i64, 2, 1, 1], [4])); // passed through
/// assert_eq!(inputs.inputs().len(), 3);
/// ```
#[derive(Clone, Debug, Default)]
pub struct HostInputs {
    pub(super) inputs: Vec<HostInput>,
}

impl HostInputs {
    /// No inputs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a float input that requires a gradient: its gradient is compared across backends.
    ///
    /// # Panics
    /// If the name is taken, or `data` is not numeric.
    pub fn float(self, name: &str, data: impl Into<TensorData>) -> Self {
        self.push(name, InputKind::Float, data.into())
    }

    /// Adds a float input that does not require a gradient (PyTorch: `requires_grad=False`).
    ///
    /// # Panics
    /// If the name is taken, or `data` is not numeric.
    pub fn constant(self, name: &str, data: impl Into<TensorData>) -> Self {
        self.push(name, InputKind::Constant, data.into())
    }

    /// Adds an integer input (class indices), passed through to each backend in its int dtype.
    ///
    /// # Panics
    /// If the name is taken, or `data` is not of an integer dtype.
    pub fn int(self, name: &str, data: impl Into<TensorData>) -> Self {
        self.push(name, InputKind::Int, data.into())
    }

    /// Stores every float input (gradient leaf or constant) as `dtype` stores it, so that a
    /// backend computing in `dtype` and a more precise reference see the same numbers.
    pub fn round_floats_to(mut self, dtype: DType) -> Self {
        for input in &mut self.inputs {
            if input.kind != InputKind::Int {
                input.data = input.data.clone().convert_dtype(dtype);
            }
        }
        self
    }

    /// The inputs, in the order they were added.
    pub fn inputs(&self) -> &[HostInput] {
        &self.inputs
    }

    fn push(mut self, name: &str, kind: InputKind, data: TensorData) -> Self {
        assert!(
            self.inputs.iter().all(|input| input.name != name),
            "backend_check: HostInputs: input {name:?} is already taken"
        );
        let dtype = data.dtype();
        let numeric = dtype.is_float() || dtype.is_int() || dtype.is_uint();
        match kind {
            InputKind::Int => assert!(
                dtype.is_int() || dtype.is_uint(),
                "backend_check: HostInputs: int input {name:?}: expected integer data, got {dtype:?}",
            ),
            _ => assert!(
                numeric,
                "backend_check: HostInputs: float input {name:?}: expected numeric data, got {dtype:?}",
            ),
        }
        self.inputs.push(HostInput {
            name: name.to_string(),
            kind,
            data,
        });
        self
    }

    fn position(&self, name: &str) -> usize {
        self.inputs
            .iter()
            .position(|input| input.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                panic!("backend_check: no input named {name:?}; the inputs are {names:?}")
            })
    }
}

/// A backend's copy of an input, made at its first use.
pub(super) struct Leaf {
    /// The `Tensor<D>` or `Tensor<D, Int>` handed to the computation.
    tensor: Box<dyn Any>,
    /// For gradient leaves: reads the leaf's gradient after the backward pass.
    pub(super) gradient: Option<GradientReader>,
}

pub(super) type GradientReader = Box<dyn Fn(&Gradients) -> Option<TensorData>>;

/// The inputs of a [`Computation`](super::Computation) on one backend: the host inputs,
/// created on the backend's (autodiff) device, floats in the float dtype it was given with and
/// integers in the device's int dtype, at their first use, and the same tensor (the same
/// gradient leaf) at every later use.
pub struct Inputs {
    host: HostInputs,
    device: Device,
    float_dtype: DType,
    int_dtype: DType,
    pub(super) leaves: RefCell<Vec<Option<Leaf>>>,
}

impl Inputs {
    /// The inputs on `device` (an autodiff device), floats in `float_dtype`.
    pub(super) fn new(host: HostInputs, device: Device, float_dtype: DType) -> Self {
        let count = host.inputs.len();
        let int_dtype = device.settings().int_dtype.into();
        Self {
            host,
            device,
            float_dtype,
            int_dtype,
            leaves: RefCell::new((0..count).map(|_| None).collect()),
        }
    }

    /// The float input `name`, of rank `D`, in [`Inputs::float_dtype`]: a gradient leaf for an
    /// input added with [`HostInputs::float`], a plain tensor for one added with
    /// [`HostInputs::constant`].
    ///
    /// # Panics
    /// If there is no input `name`, it is an int input, its rank is not `D`, or it was taken
    /// before with another rank.
    pub fn float<const D: usize>(&self, name: &str) -> Tensor<D> {
        self.take(name, false, D, |input| {
            let dtype = self.float_dtype;
            let data = input.data.clone().convert_dtype(dtype);
            let tensor = Tensor::<D>::from_data(data, (&self.device, dtype));
            if input.kind == InputKind::Constant {
                return (tensor, None);
            }
            let leaf = tensor.require_grad();
            let handle = leaf.clone();
            let reader: GradientReader =
                Box::new(move |grads| handle.grad(grads).map(|g| g.into_data()));
            (leaf, Some(reader))
        })
    }

    /// The int input `name`, of rank `D`, in the device's int dtype.
    ///
    /// # Panics
    /// If there is no input `name`, it is a float input, or its rank is not `D`.
    pub fn int<const D: usize>(&self, name: &str) -> Tensor<D, Int> {
        self.take(name, true, D, |input| {
            let dtype = self.int_dtype;
            let data = input.data.clone().convert_dtype(dtype);
            (Tensor::from_data(data, (&self.device, dtype)), None)
        })
    }

    /// The device the inputs are on: the autodiff form of the backend's device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of the float inputs (the one the backend was given with): the dtype to create
    /// any other float tensor of the computation in (`Tensor::from_data(data, (device, dtype))`,
    /// `Tensor::ones(shape, (device, dtype))`).
    pub fn float_dtype(&self) -> DType {
        self.float_dtype
    }

    /// The input `name`, an int input when `int`, of rank `rank`, as the tensor `T` that
    /// `make` creates from its host data at its first use (with the reader of its gradient,
    /// for a gradient leaf) and that is remembered for every later use.
    fn take<T: Clone + 'static>(
        &self,
        name: &str,
        int: bool,
        rank: usize,
        make: impl FnOnce(&HostInput) -> (T, Option<GradientReader>),
    ) -> T {
        let i = self.host.position(name);
        let input = &self.host.inputs[i];
        match (int, input.kind == InputKind::Int) {
            (false, true) => {
                panic!("backend_check: input {name:?} is an int input; take it with Inputs::int")
            }
            (true, false) => {
                panic!("backend_check: input {name:?} is a float input; take it with Inputs::float")
            }
            _ => {}
        }
        let shape = input.data.shape();
        assert!(
            shape.num_dims() == rank,
            "backend_check: input {name:?} has shape {:?} (rank {}), taken as rank {rank}",
            shape.as_slice(),
            shape.num_dims()
        );
        let mut leaves = self.leaves.borrow_mut();
        if let Some(leaf) = &leaves[i] {
            return leaf
                .tensor
                .downcast_ref::<T>()
                .unwrap_or_else(|| panic!("backend_check: input {name:?}: taken as another kind"))
                .clone();
        }
        let (tensor, gradient) = make(input);
        leaves[i] = Some(Leaf {
            tensor: Box::new(tensor.clone()),
            gradient,
        });
        tensor
    }
}
