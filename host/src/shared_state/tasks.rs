//! Tasks in memory (the MCP tasks extension, SEP-2663): calls of
//! long-running tools that answer at once with a handle, run on in their
//! sandbox, and are polled with `tasks/get` and stopped with
//! `tasks/cancel`.
//!
//! A task belongs to the principal that started it: only it can see or
//! cancel it, by an id of 128 random bits. Finished tasks are kept for
//! [`TTL`]; at most [`MAX_TASKS`] exist at once, [`MAX_TASKS_PER_OWNER`]
//! of them one principal's.

use super::{Outcome, TaskStore};
use rmcp::model::{DetailedTask, Task, TaskPayload, TaskStatus};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// How long a task (and its result) is kept after it was created.
pub const TTL: Duration = Duration::from_secs(60 * 60);

/// How often clients are asked to poll.
const POLL_INTERVAL_MS: u64 = 250;

/// Tasks kept at once; past this, long-running calls answer directly.
pub const MAX_TASKS: usize = 1024;

/// Tasks one principal may have kept at once: one user cannot take every
/// place in the table.
pub const MAX_TASKS_PER_OWNER: usize = 64;

struct Entry {
    /// The principal that started it.
    owner: String,
    task: Task,
    payload: TaskPayload,
    cancel: CancellationToken,
    created: Instant,
}

/// Every task of this host, in this process's memory.
#[derive(Default)]
pub struct MemoryTasks {
    entries: Mutex<HashMap<String, Entry>>,
}

impl TaskStore for MemoryTasks {
    /// A new working task of `owner`, and the token that stops its work;
    /// `None` when the store is full.
    fn create(&self, owner: &str) -> Option<(Task, CancellationToken)> {
        let mut entries = self.entries.lock().ok()?;
        entries.retain(|_, entry| entry.created.elapsed() < TTL);
        let owned = entries
            .values()
            .filter(|entry| entry.owner == owner)
            .count();
        if entries.len() >= MAX_TASKS || owned >= MAX_TASKS_PER_OWNER {
            return None;
        }
        let now = timestamp();
        let task = Task::new(new_id()?, TaskStatus::Working, now.clone(), now)
            .with_ttl_ms(TTL.as_millis() as u64)
            .with_poll_interval_ms(POLL_INTERVAL_MS);
        let cancel = CancellationToken::new();
        entries.insert(
            task.task_id.clone(),
            Entry {
                owner: owner.to_owned(),
                task: task.clone(),
                payload: TaskPayload::Working,
                cancel: cancel.clone(),
                created: Instant::now(),
            },
        );
        Some((task, cancel))
    }

    /// `owner`'s task `id` as `tasks/get` shows it.
    fn get(&self, id: &str, owner: &str) -> Option<DetailedTask> {
        let entries = self.entries.lock().ok()?;
        let entry = entries
            .get(id)
            .filter(|e| e.owner == owner && e.created.elapsed() < TTL)?;
        Some(DetailedTask::new(entry.task.clone(), entry.payload.clone()))
    }

    /// Asks `owner`'s task `id` to stop; whether it exists. A task that
    /// finished already keeps its outcome.
    fn cancel(&self, id: &str, owner: &str) -> bool {
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        match entries.get(id).filter(|e| e.owner == owner) {
            Some(entry) => {
                entry.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Shows `message` as the running task's status message.
    fn report(&self, id: &str, message: String) {
        self.update(id, |entry| {
            if !entry.task.status.is_terminal() {
                entry.task.status_message = Some(message);
            }
        });
    }

    /// Ends the task `id` with `outcome`; a task whose cancellation was
    /// asked for ends cancelled, whatever its work returned.
    fn finish(&self, id: &str, outcome: Outcome) {
        self.update(id, |entry| {
            let payload = if entry.cancel.is_cancelled() {
                TaskPayload::Cancelled
            } else {
                match outcome {
                    Outcome::Completed(result) => TaskPayload::Completed { result },
                    Outcome::Failed(error) => TaskPayload::Failed { error },
                }
            };
            entry.task.status = payload.status();
            entry.task.status_message = None;
            entry.payload = payload;
        });
    }
}

impl MemoryTasks {
    fn update(&self, id: &str, change: impl FnOnce(&mut Entry)) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(id)
        {
            change(entry);
            entry.task.last_updated_at = timestamp();
        }
    }
}

fn new_id() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::JsonObject;

    #[test]
    fn a_task_runs_then_completes() {
        let tasks = MemoryTasks::default();
        let (task, _) = tasks.create("alice").unwrap();
        assert_eq!(task.task_id.len(), 32);
        tasks.report(&task.task_id, "half way".into());
        let working = tasks.get(&task.task_id, "alice").unwrap();
        assert_eq!(working.status(), TaskStatus::Working);
        assert_eq!(working.task.status_message.as_deref(), Some("half way"));
        tasks.finish(&task.task_id, Outcome::Completed(JsonObject::new()));
        assert_eq!(
            tasks.get(&task.task_id, "alice").unwrap().status(),
            TaskStatus::Completed
        );
        assert!(tasks.get("0000", "alice").is_none());
        assert!(
            tasks.get(&task.task_id, "bob").is_none(),
            "another principal's task"
        );
    }

    #[test]
    fn a_cancelled_task_ends_cancelled_whatever_its_work_returned() {
        let tasks = MemoryTasks::default();
        let (task, token) = tasks.create("alice").unwrap();
        assert!(!tasks.cancel(&task.task_id, "bob"));
        assert!(!token.is_cancelled());
        assert!(tasks.cancel(&task.task_id, "alice"));
        assert!(token.is_cancelled());
        tasks.finish(&task.task_id, Outcome::Completed(JsonObject::new()));
        assert_eq!(
            tasks.get(&task.task_id, "alice").unwrap().status(),
            TaskStatus::Cancelled
        );
        assert!(!tasks.cancel("unknown", "alice"));
    }

    #[test]
    fn the_store_is_bounded_in_all_and_per_user() {
        let tasks = MemoryTasks::default();
        for _ in 0..MAX_TASKS_PER_OWNER {
            assert!(tasks.create("alice").is_some());
        }
        assert!(tasks.create("alice").is_none());
        assert!(tasks.create("bob").is_some());
        let users = MAX_TASKS / MAX_TASKS_PER_OWNER;
        for user in 0..users {
            while tasks.create(&format!("user{user}")).is_some() {}
        }
        assert!(tasks.create("carol").is_none());
    }
}
