//! What the sandbox refused during one call: each refusal as a typed
//! [`Rule`] and the attempt it stopped, kept in a log whose size is bounded
//! whatever the plugin does.
//!
//! Every refusal is named: the log keeps each distinct one with how often it
//! was repeated, and the audit log gets a record of each. A plugin that keeps
//! getting refused is not counted past: once a call has made
//! [`MAX_REFUSALS`] refusals (repeats included) it is stopped, at its next
//! refused host call or within one epoch tick of running wasm, with a clear
//! error. So no flood of decoys can bury an attempt, and what one call can
//! write to the audit log is bounded. (Only refusals made in the moment
//! between the limit and the stop, past [`MAX_DISTINCT`], are counted with
//! the latest named.)

use super::network::orders::{self, OrderRoute};
use crate::printable::truncate;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many refusals (repeats included) one call may make before it is
/// stopped: far more than a plugin probing a few paths or hosts makes.
pub const MAX_REFUSALS: u64 = 256;

/// How many distinct refusals one call keeps by name: room for every
/// refusal up to the limit and those a plugin can make before it stops.
pub const MAX_DISTINCT: usize = 1024;

/// How many refusals the caller's error names; the rest are counted.
const NAMED_FOR_CALLER: usize = 20;

/// The longest attempt kept, in bytes: a refused URL can be megabytes.
const MAX_ATTEMPT_BYTES: usize = 512;

/// The rule that refused something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// A path outside every mount of the plugin.
    NoMount,
    /// Something in a mount that is not a regular file or folder (a FIFO, a
    /// device, a socket), and what it is.
    NotAFile(String),
    /// WASI itself: the path leaves its mount, or the mount is read-only.
    Sandbox,
    /// An environment variable the policy does not name.
    NoEnvGrant,
    /// A socket address no `[sockets]` grant names.
    NoSocketGrant,
    /// A host name lookup without the `[sockets]` grant for it.
    NoNameLookupGrant,
    /// An HTTP request from a plugin with no network grant at all.
    NoNetworkGrant,
    /// An HTTP request none of the plugin's rules allows.
    NoHttpRule,
    /// The host-wide order guardrail, and what in the request it matched.
    OrderGuardrail(OrderRoute),
    /// A URL with no single canonical form.
    AmbiguousUrl(String),
    /// A request something besides its method and URL could redirect.
    SecondMeaning(String),
    /// A checked request that could not be rebuilt in its checked form.
    CannotSendAsChecked(String),
    /// A response past `[network] max_response_kib`.
    ResponseTooLarge { max_kib: u64 },
    /// A change that would take a read-write mount past its quota.
    DiskQuota {
        mount: String,
        max_mib: u64,
        max_entries: u64,
    },
    /// A folder that would lie deeper below its mount than a measurement
    /// of the quota reaches.
    TooDeep { mount: String },
    /// A key-value bucket the policy does not grant.
    NoBucketGrant,
    /// A write to a bucket granted read-only (or narrowed to it: the tool
    /// does not declare `write-state`).
    ReadOnlyBucket(String),
    /// A per-user bucket opened with no user to hold it (stdio without a
    /// user, or the shared anonymous principal).
    NoUserForBucket(String),
    /// A write past a bucket's quota or size limits, and which.
    BucketLimit { bucket: String, why: String },
}

impl Rule {
    /// The quota of the mount `quota` refused a write.
    pub fn disk_quota(quota: &super::filesystem::quota::Quota) -> Rule {
        Rule::DiskQuota {
            mount: quota.guest.clone(),
            max_mib: quota.limits.max_bytes >> 20,
            max_entries: quota.limits.max_entries,
        }
    }

    /// A short, fixed name for metrics labels: never carries request data.
    pub fn label(&self) -> &'static str {
        match self {
            Rule::NoMount => "policy no-mount",
            Rule::NotAFile(_) => "policy not-a-file",
            Rule::Sandbox => "sandbox",
            Rule::NoEnvGrant => "policy no-env-grant",
            Rule::NoSocketGrant => "policy no-socket-grant",
            Rule::NoNameLookupGrant => "policy no-name-lookup-grant",
            Rule::NoNetworkGrant => "policy no-network-grant",
            Rule::NoHttpRule => "policy no-http-rule",
            Rule::OrderGuardrail(_) => "guardrail no-order-execution",
            Rule::AmbiguousUrl(_) => "policy ambiguous-url",
            Rule::SecondMeaning(_) => "policy second-meaning",
            Rule::CannotSendAsChecked(_) => "policy cannot-send-as-checked",
            Rule::ResponseTooLarge { .. } => "limit max-response-kib",
            Rule::DiskQuota { .. } => "limit disk-quota",
            Rule::TooDeep { .. } => "limit folder-depth",
            Rule::NoBucketGrant => "policy no-bucket-grant",
            Rule::ReadOnlyBucket(_) => "policy read-only-bucket",
            Rule::NoUserForBucket(_) => "policy no-user-for-bucket",
            Rule::BucketLimit { .. } => "limit bucket-quota",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::NoMount => f.write_str("policy (no mount holds this path)"),
            Rule::NotAFile(kind) => write!(
                f,
                "policy (only regular files and folders open in a mount; this is {kind})"
            ),
            Rule::Sandbox => {
                f.write_str("the sandbox (the path leaves its mount, or the mount is read-only)")
            }
            Rule::NoEnvGrant => f.write_str("policy (no [env] grant)"),
            Rule::NoSocketGrant => f.write_str("policy (no [sockets] grant names it)"),
            Rule::NoNameLookupGrant => f.write_str("policy (no [sockets] name_lookup grant)"),
            Rule::NoNetworkGrant => f.write_str("policy (the plugin has no network grant)"),
            Rule::NoHttpRule => f.write_str("policy (no network rule of the plugin allows it)"),
            Rule::OrderGuardrail(route) => write!(f, "guardrail {} ({route})", orders::NAME),
            Rule::AmbiguousUrl(why) | Rule::SecondMeaning(why) => write!(f, "policy ({why})"),
            Rule::CannotSendAsChecked(why) => {
                write!(f, "policy (the request cannot be sent as checked: {why})")
            }
            Rule::ResponseTooLarge { max_kib } => {
                write!(f, "limit ([network] max_response_kib = {max_kib})")
            }
            Rule::DiskQuota {
                mount,
                max_mib,
                max_entries,
            } => write!(
                f,
                "limit (the quota of {mount}: max_mib = {max_mib}, max_entries = {max_entries})"
            ),
            Rule::TooDeep { mount } => write!(
                f,
                "limit (folders in {mount} lie at most {} deep, so that its quota can be measured)",
                super::filesystem::quota::MAX_DEPTH
            ),
            Rule::NoBucketGrant => f.write_str("policy (no [keyvalue] grant names the bucket)"),
            Rule::ReadOnlyBucket(bucket) => write!(
                f,
                "policy (the bucket {bucket} is read-only here: granted read-only, or the tool does not declare write-state)"
            ),
            Rule::NoUserForBucket(bucket) => write!(
                f,
                "policy (the bucket {bucket} is per user, and the call runs for no user of its own)"
            ),
            Rule::BucketLimit { bucket, why } => write!(f, "limit (the bucket {bucket}: {why})"),
        }
    }
}

/// Something the sandbox refused, for the caller's error and the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub rule: Rule,
    /// What was attempted: `POST http://127.0.0.1:8787/orders`, cut to
    /// [`MAX_ATTEMPT_BYTES`].
    pub attempt: String,
}

impl Denial {
    pub fn new(rule: Rule, attempt: impl Into<String>) -> Denial {
        let mut attempt = attempt.into();
        truncate(&mut attempt, MAX_ATTEMPT_BYTES);
        Denial { rule, attempt }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied by {}: {}", self.rule, self.attempt)
    }
}

/// A refusal and how many times the call made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub denial: Denial,
    pub times: u64,
}

/// Refusals past the first [`MAX_DISTINCT`] distinct ones: how many, and
/// the latest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beyond {
    pub count: u64,
    pub latest: Denial,
}

/// What one call had refused, in the order first made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    pub distinct: Vec<Refused>,
    pub beyond: Option<Beyond>,
}

impl Refusals {
    pub fn is_empty(&self) -> bool {
        self.distinct.is_empty() && self.beyond.is_none()
    }

    /// One line per refusal for the caller, the first
    /// [`NAMED_FOR_CALLER`] by name and the rest counted, with the latest
    /// named.
    pub fn lines(&self) -> Vec<String> {
        let named = NAMED_FOR_CALLER;
        let mut lines: Vec<String> = self
            .distinct
            .iter()
            .take(named)
            .map(|refused| match refused.times {
                1 => refused.denial.to_string(),
                times => format!("{} ({times} times)", refused.denial),
            })
            .collect();
        let unnamed: u64 = self
            .distinct
            .iter()
            .skip(named)
            .map(|refused| refused.times)
            .sum::<u64>()
            + self.beyond.as_ref().map_or(0, |beyond| beyond.count);
        let latest = match &self.beyond {
            Some(beyond) => Some(&beyond.latest),
            None => self.distinct.iter().skip(named).last().map(|r| &r.denial),
        };
        if let Some(latest) = latest {
            lines.push(format!(
                "and {unnamed} more refusals, the latest {latest} (the audit log counts each)"
            ));
        }
        lines
    }
}

/// The refusal log of one call; clones share it, so every enforcement point
/// of the call writes to the same log.
#[derive(Clone, Debug, Default)]
pub struct Denials(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    log: Mutex<Refusals>,
    /// Every refusal made, repeats included: read at every epoch tick.
    total: AtomicU64,
}

/// The error that stops a call which made too many refusals.
pub fn limit_message() -> String {
    format!(
        "the plugin was stopped after {MAX_REFUSALS} refused attempts (every one is named in \
         the audit log)"
    )
}

impl Denials {
    /// Records that `rule` refused `attempt`; an error (which traps the
    /// guest) once the call has made more refusals than it may.
    pub fn refuse(&self, rule: Rule, attempt: String) -> wasmtime::Result<()> {
        match self.record(Denial::new(rule, attempt)) {
            true => Err(wasmtime::format_err!("{}", limit_message())),
            false => Ok(()),
        }
    }

    /// Records `denial`, and logs it the first time it is made. Returns
    /// whether the call has now made more than [`MAX_REFUSALS`] refusals
    /// and must be stopped.
    pub fn record(&self, denial: Denial) -> bool {
        let total = self.0.total.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut log) = self.0.log.lock() {
            if let Some(seen) = log.distinct.iter_mut().find(|r| r.denial == denial) {
                seen.times += 1;
            } else if log.distinct.len() < MAX_DISTINCT {
                tracing::info!(rule = %denial.rule, attempt = %denial.attempt, "denied");
                log.distinct.push(Refused { denial, times: 1 });
            } else {
                let count = log.beyond.as_ref().map_or(0, |b| b.count) + 1;
                log.beyond = Some(Beyond {
                    count,
                    latest: denial,
                });
            }
        }
        total > MAX_REFUSALS
    }

    /// Whether the call has made more than [`MAX_REFUSALS`] refusals.
    pub fn over_limit(&self) -> bool {
        self.0.total.load(Ordering::Relaxed) > MAX_REFUSALS
    }

    /// What was refused so far.
    pub fn snapshot(&self) -> Refusals {
        self.0.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_up_to_the_limit_is_named_and_the_limit_stops_the_call() {
        let denials = Denials::default();
        for _ in 0..100 {
            assert!(!denials.record(Denial::new(Rule::NoEnvGrant, "read SECRET")));
        }
        for i in 0..(MAX_REFUSALS - 101) {
            assert!(!denials.record(Denial::new(Rule::NoHttpRule, format!("GET http://x/{i}"))));
        }
        assert!(!denials.record(Denial::new(Rule::NoEnvGrant, "read OTHER")));
        assert!(!denials.over_limit());
        assert!(denials.record(Denial::new(Rule::NoMount, "open /decoy")));
        assert!(denials.over_limit());
        let refusals = denials.snapshot();
        assert_eq!(refusals.distinct.len() as u64, MAX_REFUSALS - 100 + 2);
        assert_eq!(refusals.distinct[0].times, 100);
        assert!(
            refusals
                .distinct
                .iter()
                .any(|r| r.denial.attempt == "read OTHER")
        );
        assert!(
            refusals
                .distinct
                .iter()
                .any(|r| r.denial.attempt == "open /decoy")
        );
        assert!(refusals.beyond.is_none());
    }

    #[test]
    fn past_the_names_room_refusals_are_counted_with_the_latest_named() {
        let denials = Denials::default();
        for i in 0..MAX_DISTINCT + 10 {
            denials.record(Denial::new(Rule::NoMount, format!("open /{i}")));
        }
        let refusals = denials.snapshot();
        assert_eq!(refusals.distinct.len(), MAX_DISTINCT);
        let beyond = refusals.beyond.unwrap();
        assert_eq!(beyond.count, 10);
        assert_eq!(beyond.latest.attempt, format!("open /{}", MAX_DISTINCT + 9));
    }

    #[test]
    fn attempts_are_cut_on_a_character_boundary() {
        let denial = Denial::new(Rule::NoMount, "é".repeat(1000));
        assert!(denial.attempt.len() <= MAX_ATTEMPT_BYTES + '…'.len_utf8());
        assert!(denial.attempt.ends_with('…'));
    }

    #[test]
    fn labels_carry_no_request_data() {
        let rule = Rule::AmbiguousUrl("the path /secret has a ; parameter".into());
        assert_eq!(rule.label(), "policy ambiguous-url");
        assert!(rule.to_string().contains("/secret"));
    }
}
