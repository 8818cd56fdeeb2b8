//! What the pipeline records: refusals of the caller, what the sandbox
//! refused during a call, and every finished call, in the audit log and
//! the metrics.

use super::{Audited, Pipeline, UNKNOWN_TOOL};
use crate::audit::{Client, Event};
use crate::capability::denials::Refusals;
use crate::plugin::LoadedPlugin;
use crate::policy::access;
use crate::principal::Principal;
use rmcp::ErrorData as McpError;

impl Pipeline<'_> {
    /// Refuses `principal` the use of `target` of `plugin` (a tool that
    /// `writes`, or not) when `access` says so, recording the refusal; and
    /// refuses every call while the audit log cannot record it.
    pub(super) async fn admit(
        &self,
        plugin: &LoadedPlugin,
        access: &access::AccessSpec,
        principal: &Principal,
        writes: bool,
        target: &str,
        client: &Client,
    ) -> Result<(), McpError> {
        if self.shared.audit.unwritable() {
            self.shared.metrics.denials("audit log unwritable", 1);
            // Recording the refusal is also how the writer learns that the
            // log can be written again: the next call after that is served.
            self.shared
                .audit
                .record(Event::Denied {
                    plugin: plugin.name.clone(),
                    target: target.to_owned(),
                    rule: "audit log unwritable".to_owned(),
                    attempt: format!("use {target}"),
                    times: 1,
                    client: client.clone(),
                })
                .await;
            let message = "the audit log cannot be written (see the host's log); calls are \
                           refused until it can";
            return Err(McpError::internal_error(message, None));
        }
        let Err(rule) = access::decide(access, principal, writes) else {
            return Ok(());
        };
        self.shared.metrics.denials(&rule, 1);
        let message = format!("{target} is not available to {}: {rule}", principal.id);
        self.shared
            .audit
            .record(Event::Denied {
                plugin: plugin.name.clone(),
                target: target.to_owned(),
                rule,
                attempt: format!("use {target}"),
                times: 1,
                client: client.clone(),
            })
            .await;
        Err(McpError::invalid_params(message, None))
    }

    /// Counts and records what one call did in its key-value buckets.
    pub(super) async fn record_state(
        &self,
        plugin: &LoadedPlugin,
        target: &str,
        state: &[crate::capability::keyvalue::BucketActivity],
        client: &Client,
    ) {
        if state.is_empty() {
            return;
        }
        let reads = state.iter().map(|b| b.reads).sum();
        let writes = state.iter().map(|b| b.writes).sum();
        if writes > 0 {
            for bucket in state.iter().filter(|b| b.writes > 0) {
                self.shared
                    .state
                    .changed(&plugin.name, bucket.user.as_deref());
            }
            // Watchers look for resources this changed; none listening is
            // fine.
            let _ = self.shared.state_changed.send(());
        }
        self.shared
            .metrics
            .state_operations(&plugin.name, reads, writes);
        self.shared
            .audit
            .record(Event::State {
                plugin: plugin.name.clone(),
                target: target.to_owned(),
                buckets: serde_json::to_value(state).unwrap_or_default(),
                client: client.clone(),
            })
            .await;
    }

    /// Counts and records what the sandbox refused during one call.
    pub(super) async fn record_denials(
        &self,
        plugin: &LoadedPlugin,
        target: &str,
        refusals: &Refusals,
        client: &Client,
    ) {
        let metrics = &self.shared.metrics;
        for refused in &refusals.distinct {
            metrics.denials(refused.denial.rule.label(), refused.times);
        }
        if let Some(beyond) = &refusals.beyond {
            metrics.denials(beyond.latest.rule.label(), beyond.count);
        }
        let audit = &self.shared.audit;
        for refused in &refusals.distinct {
            audit
                .record(Event::Denied {
                    plugin: plugin.name.clone(),
                    target: target.to_owned(),
                    rule: refused.denial.rule.to_string(),
                    attempt: refused.denial.attempt.clone(),
                    times: refused.times,
                    client: client.clone(),
                })
                .await;
        }
        if let Some(beyond) = &refusals.beyond {
            audit
                .record(Event::DeniedMore {
                    plugin: plugin.name.clone(),
                    target: target.to_owned(),
                    count: beyond.count,
                    latest_rule: beyond.latest.rule.to_string(),
                    latest_attempt: beyond.latest.attempt.clone(),
                    client: client.clone(),
                })
                .await;
        }
    }

    /// Records a finished request in the audit log.
    pub(super) async fn record_call(
        &self,
        plugin: &str,
        request: Audited<'_>,
        outcome: &str,
        client: &Client,
    ) {
        let seconds = request.started.elapsed().as_secs_f64();
        // Only served names label metrics: a name nothing serves would
        // otherwise become a label for good, one per typo or attack.
        // A resource is labelled by what serves it, never by the URI read.
        let registry = self.shared.registry.load();
        let (label_plugin, label_target) = match (outcome, request.method) {
            (UNKNOWN_TOOL, _) => ("unknown", "unknown"),
            (_, "resources/read") => (
                plugin,
                registry
                    .resource_served_as(request.target)
                    .unwrap_or("unknown"),
            ),
            _ => (plugin, request.target),
        };
        let metrics = &self.shared.metrics;
        metrics.call(label_plugin, request.method, label_target, outcome, seconds);
        if !self.shared.audit.enabled() {
            return;
        }
        let (arguments, arguments_sha256) = match request.arguments {
            Some(arguments) => self.shared.audit.arguments(arguments),
            None => (None, None),
        };
        self.shared
            .audit
            .record(Event::Call {
                plugin: plugin.to_owned(),
                method: request.method,
                target: request.target.to_owned(),
                outcome: outcome.to_owned(),
                duration_ms: seconds * 1000.0,
                arguments,
                arguments_sha256,
                client: client.clone(),
            })
            .await;
    }
}
