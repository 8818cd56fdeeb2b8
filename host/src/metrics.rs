//! Metrics for `/metrics`, in the Prometheus (OpenMetrics) text format:
//! calls and their latency per tool, denials by rule, sandboxes in use,
//! reloads, and refused requests by reason. Labels never carry principals
//! or arguments.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    plugin: String,
    method: String,
    target: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    plugin: String,
    /// `read` or `write`.
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

type Latency = Family<TargetLabels, Histogram, fn() -> Histogram>;

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Latency,
    denials: Family<RuleLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    state_operations: Family<StateLabels, Counter>,
    keyvalue_bytes: Gauge,
    sandboxes: Gauge,
    plugins: Gauge,
    failed_plugins: Gauge,
    session_watchers: Gauge,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mcp_host");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Requests that ran plugin code, by plugin, method, target and outcome",
            calls.clone(),
        );
        let latency: Latency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "call_duration_seconds",
            "Time to answer requests that ran plugin code, by target",
            latency.clone(),
        );
        let denials = Family::<RuleLabels, Counter>::default();
        registry.register(
            "denials",
            "Attempts refused by a policy rule or guardrail, by rule",
            denials.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "HTTP requests refused before reaching MCP (401, 403, 429), by reason",
            auth_failures.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register("reloads", "Hot reloads, by result", reloads.clone());
        let state_operations = Family::<StateLabels, Counter>::default();
        registry.register(
            "keyvalue_operations",
            "Key-value bucket operations plugins made, by plugin and kind (read, write)",
            state_operations.clone(),
        );
        let keyvalue_bytes = Gauge::default();
        registry.register(
            "keyvalue_store_bytes",
            "The embedded key-value store's size on disk (0 until it is made, or with Redis)",
            keyvalue_bytes.clone(),
        );
        let sandboxes = Gauge::default();
        registry.register("sandboxes_in_use", "Sandboxes alive now", sandboxes.clone());
        let plugins = Gauge::default();
        registry.register("plugins_loaded", "Plugins being served", plugins.clone());
        let failed_plugins = Gauge::default();
        registry.register(
            "plugins_failed",
            "Plugin files that failed to load",
            failed_plugins.clone(),
        );
        let session_watchers = Gauge::default();
        registry.register(
            "session_watchers",
            "Sessions whose client is told of reloads (one task each)",
            session_watchers.clone(),
        );
        Metrics {
            registry,
            calls,
            latency,
            denials,
            auth_failures,
            reloads,
            state_operations,
            keyvalue_bytes,
            sandboxes,
            plugins,
            failed_plugins,
            session_watchers,
        }
    }
}

impl Metrics {
    /// A finished request that ran plugin code.
    pub fn call(&self, plugin: &str, method: &str, target: &str, outcome: &str, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels {
                plugin: plugin.to_owned(),
                method: method.to_owned(),
                target: target.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&TargetLabels {
                target: target.to_owned(),
            })
            .observe(seconds);
    }

    /// The key-value store's size on disk, when it is known.
    pub fn set_keyvalue_bytes(&self, bytes: Option<u64>) {
        self.keyvalue_bytes.set(bytes.unwrap_or(0) as i64);
    }

    /// `reads` and `writes` a call of `plugin` made in its buckets.
    pub fn state_operations(&self, plugin: &str, reads: u64, writes: u64) {
        for (kind, count) in [("read", reads), ("write", writes)] {
            if count > 0 {
                self.state_operations
                    .get_or_create(&StateLabels {
                        plugin: plugin.to_owned(),
                        kind: kind.to_owned(),
                    })
                    .inc_by(count);
            }
        }
    }

    /// `times` attempts refused by `rule` (`guardrail …` or `policy …`).
    pub fn denials(&self, rule: &str, times: u64) {
        // The rule's name, not the attempt: labels stay few.
        let rule = rule.split(':').next().unwrap_or(rule).trim();
        self.denials
            .get_or_create(&RuleLabels {
                rule: rule.to_owned(),
            })
            .inc_by(times);
    }

    /// An HTTP request refused before MCP, for `reason`.
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A reload that `succeeded` or not.
    pub fn reload(&self, succeeded: bool) {
        let result = if succeeded { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// One more session is watching for reloads, until the guard drops.
    pub fn session_watcher(&self) -> impl Drop + Send + 'static {
        struct Watching(Gauge);
        impl Drop for Watching {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        self.session_watchers.inc();
        Watching(self.session_watchers.clone())
    }

    /// The metrics as text, with the gauges read now.
    pub fn encode(&self, sandboxes: usize, plugins: usize, failed: usize) -> String {
        self.sandboxes.set(sandboxes as i64);
        self.plugins.set(plugins as i64);
        self.failed_plugins.set(failed as i64);
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_denials_and_gauges_are_encoded() {
        let metrics = Metrics::default();
        metrics.call(
            "market-data",
            "tools/call",
            "market-data__get_quote",
            "ok",
            0.002,
        );
        metrics.denials(
            "denied by guardrail no-order-execution: POST http://x/orders",
            1,
        );
        metrics.auth_failure("expired");
        let text = metrics.encode(3, 5, 1);
        assert!(text.contains(
            "mcp_host_calls_total{plugin=\"market-data\",method=\"tools/call\",target=\"market-data__get_quote\",outcome=\"ok\"} 1"
        ), "{text}");
        assert!(
            text.contains(
                "mcp_host_denials_total{rule=\"denied by guardrail no-order-execution\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("mcp_host_auth_failures_total{reason=\"expired\"} 1"));
        assert!(text.contains("mcp_host_sandboxes_in_use 3"));
        assert!(text.contains("mcp_host_call_duration_seconds_bucket{le=\"0.0032\",target=\"market-data__get_quote\"} 1")
            || text.contains("mcp_host_call_duration_seconds_count{target=\"market-data__get_quote\"} 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
