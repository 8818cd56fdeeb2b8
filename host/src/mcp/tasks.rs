//! A task's call observer: what a plugin reports while it runs as a task.

use crate::runtime::{CallObserver, LogLevel, Notify};
use crate::shared_state::TaskStore;
use std::sync::Arc;

/// Keeps a task's latest progress report as its status message. (Its
/// request has been answered with the task handle, so there is no request
/// to send progress notifications or logs for.)
pub struct TaskObserver {
    tasks: Arc<dyn TaskStore>,
    id: String,
}

impl TaskObserver {
    pub fn new(tasks: Arc<dyn TaskStore>, id: String) -> Self {
        TaskObserver { tasks, id }
    }
}

impl CallObserver for TaskObserver {
    fn log(&self, level: LogLevel, message: String) -> Notify<'_> {
        tracing::debug!(task = %self.id, ?level, "{message}");
        Box::pin(std::future::ready(()))
    }

    fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) -> Notify<'_> {
        let done = match total {
            Some(total) => format!("{progress} of {total}"),
            None => progress.to_string(),
        };
        let status = match message {
            Some(message) => format!("{message} ({done})"),
            None => done,
        };
        self.tasks.report(&self.id, status);
        Box::pin(std::future::ready(()))
    }
}
