//! How the class kernels walk `[N, C, S]` tensors in their own layout: as rows of `C`
//! classes, a task's rows at a time.
//!
//! A `[N, C]` input (`S = 1`) already is rows: a task gets its rows as they lie. A `[N, C, S]`
//! input (`S > 1`) holds its classes at stride `S` and its spatial positions contiguous; a task
//! owns one `n` (a contiguous `[C, S]` block) and walks it by runs of consecutive positions,
//! each run gathered into a small row-major `[run, C]` buffer that stays in cache, handed to
//! the kernel, and, where the kernel wrote a gradient, scattered back to the same positions.
//! Either way every element is read from memory once and written once, the gradient lands in
//! the input's own layout, and row `r = n S + s` has its per-row outputs at `r`.
//!
//! Cross-entropy with class indices walks `[N, C, S]` blocks as they lie instead
//! ([`Walk::blocks`]), its loops running over consecutive positions of one class.
//!
//! The gradient goes where [`Logits`] says: nowhere (the loss alone), over the logits
//! themselves (storage nothing else holds), or into a new buffer.

use rayon::prelude::*;

use super::{Element, TASK_ELEMENTS};

/// Elements of one gathered run of positions (`run × C`), at most (one run at least).
const RUN_ELEMENTS: usize = 4096;

/// Where a class kernel reads the logits and writes their gradient.
pub(super) enum Logits<'a, T> {
    /// Read only: the loss, no gradient.
    Read(&'a [T]),
    /// The gradient written over the logits (storage nothing else holds).
    InPlace(&'a mut [T]),
    /// The gradient written into `gradient` (zero-filled: a kernel may write only its
    /// non-zero elements), the logits read from `logits`.
    Into {
        logits: &'a [T],
        gradient: &'a mut [T],
    },
}

/// A task's rows of logits, `[count, C]` row-major: read only, to overwrite with their
/// gradient (after reading them), or read from the input with their gradient going to a
/// buffer of its own.
pub(super) enum Rows<'a, T> {
    Read(&'a [T]),
    Write(&'a mut [T]),
    Into(&'a [T], &'a mut [T]),
}

/// One row of [`Rows`].
pub(super) enum Row<'a, T> {
    Read(&'a [T]),
    Write(&'a mut [T]),
    Into(&'a [T], &'a mut [T]),
}

impl<'a, T: Copy> Row<'a, T> {
    /// The row's logits (before any gradient is written).
    #[inline(always)]
    pub(super) fn values(&self) -> &[T] {
        match self {
            Row::Read(values) => values,
            Row::Write(values) => values,
            Row::Into(values, _) => values,
        }
    }

    /// The row as one to overwrite: an `Into` row's logits copied to its gradient first, for
    /// kernels whose gradient pass reads each logit where it writes its gradient.
    #[inline(always)]
    pub(super) fn settled(self) -> Row<'a, T> {
        match self {
            Row::Into(values, gradient) => {
                gradient.copy_from_slice(values);
                Row::Write(gradient)
            }
            row => row,
        }
    }
}

impl<T> Rows<'_, T> {
    /// Calls `step(i, row)` for each row `i` of `classes` values.
    #[inline(always)]
    pub(super) fn each(self, classes: usize, mut step: impl FnMut(usize, Row<'_, T>)) {
        match self {
            Rows::Read(values) => {
                for (i, row) in values.chunks_exact(classes).enumerate() {
                    step(i, Row::Read(row));
                }
            }
            Rows::Write(values) => {
                for (i, row) in values.chunks_exact_mut(classes).enumerate() {
                    step(i, Row::Write(row));
                }
            }
            Rows::Into(values, gradient) => {
                let rows = values.chunks_exact(classes);
                for (i, (row, out)) in rows.zip(gradient.chunks_exact_mut(classes)).enumerate() {
                    step(i, Row::Into(row, out));
                }
            }
        }
    }
}

/// What a task's kernel gets: its first row `r`, its rows of logits, the matching rows of a
/// second input (probability targets) and of a second gradient (theirs), all `[count, C]`,
/// and its per-row outputs (`[count]`).
pub(super) struct Task<'a, T> {
    pub first: usize,
    pub logits: Rows<'a, T>,
    pub other: Option<&'a [T]>,
    pub other_grad: Option<&'a mut [T]>,
    pub per_row: &'a mut [T],
}

/// The shape of the walk: `C`, `S`.
#[derive(Clone, Copy)]
pub(super) struct Walk {
    pub classes: usize,
    pub spatial: usize,
}

/// A buffer cut into the chunks of the tasks (`tasks` empty chunks for an absent one).
fn chunks<T>(values: Option<&[T]>, tasks: usize, width: usize) -> Vec<Option<&[T]>> {
    match values {
        Some(values) => values.chunks(width).map(Some).collect(),
        None => (0..tasks).map(|_| None).collect(),
    }
}

/// The mutable form of [`chunks`].
fn chunks_mut<T>(values: Option<&mut [T]>, tasks: usize, width: usize) -> Vec<Option<&mut [T]>> {
    match values {
        Some(values) => values.chunks_mut(width).map(Some).collect(),
        None => (0..tasks).map(|_| None).collect(),
    }
}

/// A task's share of the logits and where their gradient goes.
pub(super) enum Share<'a, T> {
    Read(&'a [T]),
    InPlace(&'a mut [T]),
    Into(&'a [T], &'a mut [T]),
}

impl<'a, T> Logits<'a, T> {
    /// The logits cut into the shares of tasks of `width` elements.
    fn shares(self, width: usize) -> Vec<Share<'a, T>> {
        match self {
            Logits::Read(values) => values.chunks(width).map(Share::Read).collect(),
            Logits::InPlace(values) => values.chunks_mut(width).map(Share::InPlace).collect(),
            Logits::Into { logits, gradient } => logits
                .chunks(width)
                .zip(gradient.chunks_mut(width))
                .map(|(logits, gradient)| Share::Into(logits, gradient))
                .collect(),
        }
    }
}

impl<T> Share<'_, T> {
    /// Where the logits are read.
    pub(super) fn source(&self) -> &[T] {
        match self {
            Share::Read(values) => values,
            Share::InPlace(values) => values,
            Share::Into(logits, _) => logits,
        }
    }

    /// Where the gradient is written, if anywhere.
    pub(super) fn target(&mut self) -> Option<&mut [T]> {
        match self {
            Share::Read(_) => None,
            Share::InPlace(values) => Some(values),
            Share::Into(_, gradient) => Some(gradient),
        }
    }
}

impl Walk {
    /// Runs `kernel` on every row of `logits` (`[N, C, S]`), in parallel tasks; `other` and
    /// `other_grad` are `[N, C, S]` too, `per_row` is `[N S]`.
    pub(super) fn run<T: Element>(
        self,
        logits: Logits<'_, T>,
        other: Option<&[T]>,
        other_grad: Option<&mut [T]>,
        per_row: &mut [T],
        kernel: impl Fn(Task<'_, T>) + Sync,
    ) {
        let Walk { classes, spatial } = self;
        let rows = per_row.len();
        if rows == 0 || classes == 0 {
            return;
        }
        // A task: a run of rows (S = 1), or one `n` (S > 1).
        let rows_per_task = if spatial == 1 {
            (TASK_ELEMENTS / classes).max(1)
        } else {
            spatial
        };
        let width = rows_per_task * classes;
        let tasks = rows.div_ceil(rows_per_task);
        let shares = logits.shares(width);
        let others = chunks(other, tasks, width);
        let other_grads = chunks_mut(other_grad, tasks, width);
        let per_rows: Vec<&mut [T]> = per_row.chunks_mut(rows_per_task).collect();
        shares
            .into_par_iter()
            .zip(others)
            .zip(other_grads)
            .zip(per_rows)
            .enumerate()
            .for_each(|(task, (((share, other), other_grad), per_row))| {
                let first = task * rows_per_task;
                if spatial == 1 {
                    let logits = match share {
                        Share::Read(values) => Rows::Read(values),
                        Share::InPlace(values) => Rows::Write(values),
                        Share::Into(logits, gradient) => Rows::Into(logits, gradient),
                    };
                    kernel(Task {
                        first,
                        logits,
                        other,
                        other_grad,
                        per_row,
                    });
                } else {
                    self.gathered(first, share, other, other_grad, per_row, &kernel);
                }
            });
    }

    /// Runs `kernel(first_row, block, per_row)` on each `n`'s `[C, S]` block as it lies, in
    /// parallel (`S > 1`): for kernels that work on runs of positions directly, each class's
    /// run contiguous.
    pub(super) fn blocks<T: Element>(
        self,
        logits: Logits<'_, T>,
        per_row: &mut [T],
        kernel: impl Fn(usize, Share<'_, T>, &mut [T]) + Sync,
    ) {
        let Walk { classes, spatial } = self;
        logits
            .shares(classes * spatial)
            .into_par_iter()
            .zip(per_row.par_chunks_mut(spatial))
            .enumerate()
            .for_each(|(n, (block, per_row))| kernel(n * spatial, block, per_row));
    }

    /// One `n` of a `[N, C, S]` walk (`S > 1`), by gathered runs of positions.
    fn gathered<T: Element>(
        self,
        first: usize,
        share: Share<'_, T>,
        other: Option<&[T]>,
        mut other_grad: Option<&mut [T]>,
        per_row: &mut [T],
        kernel: &(impl Fn(Task<'_, T>) + Sync),
    ) {
        let Walk { classes, spatial } = self;
        let run = (RUN_ELEMENTS / classes).clamp(1, spatial);
        let mut rows = vec![T::ZERO; run * classes];
        let mut other_rows = other.map(|_| vec![T::ZERO; run * classes]);
        let mut other_grad_rows = other_grad.as_ref().map(|_| vec![T::ZERO; run * classes]);
        let mut share = share;
        let mut start = 0;
        while start < spatial {
            let count = run.min(spatial - start);
            let rows = &mut rows[..count * classes];
            gather(share.source(), rows, classes, spatial, start);
            if let (Some(other), Some(buffer)) = (other, other_rows.as_mut()) {
                gather(
                    other,
                    &mut buffer[..count * classes],
                    classes,
                    spatial,
                    start,
                );
            }
            let writes = !matches!(share, Share::Read(_));
            kernel(Task {
                first: first + start,
                logits: if writes {
                    Rows::Write(&mut rows[..])
                } else {
                    Rows::Read(&rows[..])
                },
                other: other_rows
                    .as_deref()
                    .map(|buffer| &buffer[..count * classes]),
                other_grad: other_grad_rows
                    .as_deref_mut()
                    .map(|buffer| &mut buffer[..count * classes]),
                per_row: &mut per_row[start..start + count],
            });
            if let Some(target) = share.target() {
                scatter(rows, target, classes, spatial, start);
            }
            if let (Some(out), Some(buffer)) = (other_grad.as_deref_mut(), other_grad_rows.as_ref())
            {
                scatter(&buffer[..count * classes], out, classes, spatial, start);
            }
            start += count;
        }
    }
}

/// Copies positions `start..start + count` of a `[C, S]` block into `count` rows of `C`.
#[inline(always)]
fn gather<T: Copy>(block: &[T], rows: &mut [T], classes: usize, spatial: usize, start: usize) {
    let count = rows.len() / classes;
    for c in 0..classes {
        let column = &block[c * spatial + start..][..count];
        for (j, &value) in column.iter().enumerate() {
            rows[j * classes + c] = value;
        }
    }
}

/// The inverse of [`gather`]: `count` rows of `C` back to their positions in `[C, S]`.
#[inline(always)]
fn scatter<T: Copy>(rows: &[T], block: &mut [T], classes: usize, spatial: usize, start: usize) {
    let count = rows.len() / classes;
    for c in 0..classes {
        let column = &mut block[c * spatial + start..][..count];
        for (j, value) in column.iter_mut().enumerate() {
            *value = rows[j * classes + c];
        }
    }
}
