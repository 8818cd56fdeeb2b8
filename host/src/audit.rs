//! The audit log: one JSON line per decision and per call.
//!
//! Records are handed to a background writer through a bounded queue. When
//! the writer falls behind, recording waits for room: calls slow down to the
//! disk's pace rather than outrun the log. When the disk refuses writes, new
//! calls are refused until a write succeeds again. A record is lost only if
//! the writer stays stuck for [`MAX_WAIT`] or its write fails, and each loss
//! is counted and logged as an error: never silently.
//!
//! A call's refusals arrive already aggregated (see
//! [`crate::capability::denials`]): a plugin cannot flood the log, and the
//! latest attempt of a flood is the one named.
//!
//! Tool arguments are recorded as their SHA-256 digest unless the operator
//! opts in to recording them whole: identical calls stay recognisable
//! without their contents being kept.

use crate::digest;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// How many records may wait for the writer.
const QUEUE: usize = 8192;

/// How long a record waits for room in the queue before it is counted lost.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Who caused a record: the connection a request came on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Client {
    /// `stdio` or `http`.
    pub transport: &'static str,
    /// The HTTP session (`Mcp-Session-Id`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The client's own name for itself, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Who the request ran as: the authenticated user id, `anonymous`
    /// (public mode) or `local` (stdio, or HTTP without auth).
    pub principal: String,
}

/// What happened.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A plugin was loaded and is served.
    Loaded { plugin: String, tools: usize },
    /// A resource or template a plugin offers is not served.
    ResourceWithheld {
        plugin: String,
        uri: String,
        rule: String,
    },
    /// A plugin was removed and is no longer served.
    Unloaded { plugin: String },
    /// A plugin file could not be loaded.
    LoadFailed { file: String, reason: String },
    /// A tool a plugin offers is not served.
    Withheld {
        plugin: String,
        tool: String,
        rule: String,
    },
    /// A tool or prompt a plugin offers is not served: another plugin
    /// serves its name.
    NameWithheld {
        plugin: String,
        /// `tool` or `prompt`.
        kind: &'static str,
        name: String,
        rule: String,
    },
    /// What one call did in its key-value buckets: each bucket opened,
    /// with its reads and writes counted and the keys written named
    /// (never values).
    State {
        plugin: String,
        /// What the client asked for: the tool, resource URI or prompt.
        target: String,
        buckets: serde_json::Value,
        client: Client,
    },
    /// The sandbox, a guardrail or a policy refused something.
    Denied {
        plugin: String,
        /// What the client asked for: the tool, resource URI or prompt.
        target: String,
        rule: String,
        attempt: String,
        /// How many times the call made this attempt, when more than once.
        #[serde(skip_serializing_if = "is_once")]
        times: u64,
        client: Client,
    },
    /// Refusals of one call past the first distinct ones, counted, with
    /// the latest named.
    DeniedMore {
        plugin: String,
        target: String,
        count: u64,
        latest_rule: String,
        latest_attempt: String,
        client: Client,
    },
    /// An HTTP request on a session was refused: the session is another
    /// principal's. `client.session` is the session it named.
    SessionRefused {
        /// The HTTP method: `POST`, `GET` or `DELETE`.
        request: String,
        reason: &'static str,
        client: Client,
    },
    /// A call finished (or failed to start).
    Call {
        plugin: String,
        /// `tools/call`, `resources/read`, `prompts/get` or `completion/complete`.
        method: &'static str,
        /// The tool, resource URI or prompt.
        target: String,
        outcome: String,
        duration_ms: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        arguments: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        arguments_sha256: Option<String>,
        client: Client,
    },
}

fn is_once(times: &u64) -> bool {
    *times == 1
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// Where records go. Cloning shares the writer.
#[derive(Clone)]
pub struct AuditLog {
    queue: Option<mpsc::Sender<Event>>,
    lost: Arc<AtomicU64>,
    /// Set while the writer's latest write failed.
    failing: Arc<AtomicBool>,
    record_arguments: bool,
}

impl AuditLog {
    /// A log that records nothing.
    pub fn disabled() -> AuditLog {
        AuditLog {
            queue: None,
            lost: Arc::default(),
            failing: Arc::default(),
            record_arguments: false,
        }
    }

    /// Appends to `path` (created if missing); with `record_arguments`, tool
    /// arguments are recorded whole instead of as a digest.
    pub async fn open(path: &Path, record_arguments: bool) -> anyhow::Result<(AuditLog, Writer)> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the audit log's folder {}: {e}",
                    parent.display()
                )
            })?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the audit log {}: {e}", path.display()))?;
        let (queue, records) = mpsc::channel(QUEUE);
        let lost = Arc::new(AtomicU64::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(write(
            records,
            file,
            path.to_owned(),
            lost.clone(),
            failing.clone(),
        ));
        let writer = Writer {
            task,
            lost: lost.clone(),
        };
        let log = AuditLog {
            queue: Some(queue),
            lost,
            failing,
            record_arguments,
        };
        Ok((log, writer))
    }

    /// Whether records are kept at all (callers skip building them if not).
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Whether the log cannot be written (its latest write failed): calls
    /// are refused while it is, since they could not be audited.
    pub fn unwritable(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Records `event`, waiting for room while the writer is behind.
    pub async fn record(&self, event: Event) {
        let Some(queue) = &self.queue else {
            return;
        };
        if queue.send_timeout(event, MAX_WAIT).await.is_err() {
            let lost = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                lost,
                "the audit log writer has been stuck for {} s; a record was lost",
                MAX_WAIT.as_secs()
            );
        }
    }

    /// How `arguments` appear in a call record: whole if the operator asked
    /// for that, else as a digest.
    pub fn arguments(
        &self,
        arguments: &serde_json::Value,
    ) -> (Option<serde_json::Value>, Option<String>) {
        if self.record_arguments {
            return (Some(arguments.clone()), None);
        }
        let digest = digest::sha256(arguments.to_string().as_bytes());
        (None, Some(hex::encode(digest)))
    }
}

/// The background writer; [`Writer::finish`] waits until every queued
/// record is on disk.
pub struct Writer {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicU64>,
}

impl Writer {
    /// Waits for the writer to drain once every [`AuditLog`] is dropped, and
    /// says how many records were lost in all.
    pub async fn finish(self) -> u64 {
        let _ = self.task.await;
        self.lost.load(Ordering::Relaxed)
    }
}

async fn write(
    mut records: mpsc::Receiver<Event>,
    file: tokio::fs::File,
    path: PathBuf,
    lost: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
) {
    let mut out = tokio::io::BufWriter::new(file);
    while let Some(event) = records.recv().await {
        let mut batch = vec![event];
        while let Ok(event) = records.try_recv() {
            batch.push(event);
        }
        let mut text = Vec::new();
        for event in &batch {
            let line = Line {
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                event,
            };
            if serde_json::to_writer(&mut text, &line).is_ok() {
                text.push(b'\n');
            }
        }
        let written = async {
            out.write_all(&text).await?;
            out.flush().await
        };
        match written.await {
            Ok(()) => {
                if failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(path = %path.display(), "the audit log can be written again");
                }
            }
            Err(e) => {
                let total =
                    lost.fetch_add(batch.len() as u64, Ordering::Relaxed) + batch.len() as u64;
                if !failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        path = %path.display(),
                        lost = total,
                        "cannot write the audit log, calls are refused until it can: {e}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_json_lines_with_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/log.jsonl");
        let (log, writer) = AuditLog::open(&path, false).await.unwrap();
        log.record(Event::Denied {
            plugin: "broker".into(),
            target: "broker__place_order".into(),
            rule: "guardrail no-order-execution".into(),
            attempt: "POST http://127.0.0.1:1/orders".into(),
            times: 1,
            client: Client {
                transport: "stdio",
                ..Client::default()
            },
        })
        .await;
        drop(log);
        assert_eq!(writer.finish().await, 0);
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["event"], "denied");
        assert_eq!(line["rule"], "guardrail no-order-execution");
        assert_eq!(line["client"]["transport"], "stdio");
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
    }

    fn unloaded(n: usize) -> Event {
        Event::Unloaded {
            plugin: format!("plugin-{n}"),
        }
    }

    #[tokio::test]
    async fn a_writer_behind_slows_recording_down_instead_of_losing_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let (log, writer) = AuditLog::open(&path, false).await.unwrap();
        let records = QUEUE * 3;
        for n in 0..records {
            log.record(unloaded(n)).await;
        }
        drop(log);
        assert_eq!(writer.finish().await, 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), records);
        assert!(
            text.lines()
                .last()
                .unwrap()
                .contains(&format!("plugin-{}", records - 1))
        );
    }

    #[tokio::test]
    async fn a_log_the_disk_refuses_says_so_and_counts_what_it_lost() {
        let (log, writer) = AuditLog::open(Path::new("/dev/full"), false).await.unwrap();
        assert!(!log.unwritable());
        log.record(unloaded(1)).await;
        for _ in 0..100 {
            if log.unwritable() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(log.unwritable());
        drop(log);
        assert_eq!(writer.finish().await, 1);
    }

    #[test]
    fn arguments_are_digested_unless_asked_for() {
        let args = serde_json::json!({"symbol": "AAPL"});
        let mut log = AuditLog::disabled();
        let (whole, digest) = log.arguments(&args);
        assert!(whole.is_none());
        assert_eq!(digest.unwrap().len(), 64);
        log.record_arguments = true;
        assert_eq!(log.arguments(&args).0, Some(args));
    }
}
