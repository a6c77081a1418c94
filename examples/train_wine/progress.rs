//! `train_wine`'s progress display when stdout is not a terminal: burn-train shows its
//! terminal UI when stdout is a terminal and otherwise prints every iteration; [`EpochLines`]
//! prints the validation metrics every `every` epochs instead.

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

/// One line of validation metrics every `every` epochs (and after the last).
pub struct EpochLines {
    every: usize,
    names: Vec<(MetricId, String)>,
    latest: Vec<(MetricId, String)>,
    /// The epoch running now, counted from 1, and the number of epochs.
    epoch: usize,
    epochs: usize,
    /// Whether the split running now is the validation split.
    in_valid: bool,
}

impl EpochLines {
    pub fn new(every: usize) -> Self {
        Self {
            every,
            names: Vec::new(),
            latest: Vec::new(),
            epoch: 1,
            epochs: 0,
            in_valid: false,
        }
    }

    fn remember(&mut self, state: MetricState) {
        let entry = match state {
            MetricState::Generic(entry) | MetricState::Numeric(entry, _) => entry,
        };
        // The formatted entry reads "epoch <running value> - batch <batch value>".
        let running = entry
            .serialized_entry
            .formatted
            .split(" - batch")
            .next()
            .unwrap_or_default()
            .trim_start_matches("epoch ")
            .to_string();
        match self
            .latest
            .iter_mut()
            .find(|(id, _)| *id == entry.metric_id)
        {
            Some(slot) => slot.1 = running,
            None => self.latest.push((entry.metric_id, running)),
        }
    }

    /// Prints the epoch's validation metrics, on the epochs that show them.
    fn print_valid(&self) {
        let (epoch, epochs) = (self.epoch, self.epochs);
        if epoch % self.every != 0 && epoch != epochs {
            return;
        }
        let metrics: Vec<String> = self
            .latest
            .iter()
            .map(|(id, value)| {
                let name = self
                    .names
                    .iter()
                    .find(|(known, _)| known == id)
                    .map_or("?", |(_, name)| name.as_str());
                format!("{name} {value}")
            })
            .collect();
        println!("  epoch {epoch:>3}/{epochs}  valid: {}", metrics.join(", "));
    }
}

impl MetricsRendererTraining for EpochLines {
    fn update_train(&mut self, _state: MetricState) {}

    fn update_valid(&mut self, state: MetricState) {
        self.remember(state);
    }
}

/// burn-train 0.22 reports progress through this trait: a split ends after its epoch-level
/// metrics have reached [`MetricsRendererTraining::update_valid`].
impl TrainingProgressLogger for EpochLines {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.epochs = total_epochs;
        self.epoch = starting_epoch;
    }

    fn update_epoch(&mut self, epoch: usize) {
        self.epoch = epoch + 1;
    }

    fn start_split(&mut self, split: &str, _total_items: usize) {
        self.in_valid = split == "valid";
    }

    fn update_split(&mut self, _items_processed: usize) {}

    fn end_split(&mut self) {
        if self.in_valid {
            self.print_valid();
        }
    }

    fn end(&mut self) {}

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for EpochLines {
    fn start_global_progress(&mut self, _total_tests: usize) {}

    fn start_test(&mut self, _name: &str, _total_items: usize) {}

    fn update_test_progress(&mut self, _items_processed: usize) {}

    fn end_test(&mut self) {}

    fn end_global_progress(&mut self) {}

    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRendererEvaluation for EpochLines {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
}

impl MetricsRenderer for EpochLines {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .push((definition.metric_id, definition.name.to_string()));
    }
}
