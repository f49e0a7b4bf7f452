//! The hub's counters, rendered in the Prometheus text exposition format (written by hand: a
//! dozen atomics do not need a metrics framework).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tidepool_core::wire::ErrorCode;

/// Every error code, in the order of [`code_index`].
pub const ERROR_CODES: [ErrorCode; 14] = [
    ErrorCode::Malformed,
    ErrorCode::UnsupportedVersion,
    ErrorCode::TooLarge,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::CorruptData,
    ErrorCode::TooManyDocs,
    ErrorCode::Overloaded,
    ErrorCode::ProtocolViolation,
    ErrorCode::IdleTimeout,
    ErrorCode::ShuttingDown,
    ErrorCode::Internal,
    ErrorCode::Foreign,
    ErrorCode::UnknownExport,
];

fn code_index(code: ErrorCode) -> usize {
    ERROR_CODES.iter().position(|c| *c == code).unwrap_or(ERROR_CODES.len() - 1)
}

/// The label an error code has in metrics and logs.
pub fn code_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Malformed => "malformed",
        ErrorCode::UnsupportedVersion => "unsupported_version",
        ErrorCode::TooLarge => "too_large",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::CorruptData => "corrupt_data",
        ErrorCode::TooManyDocs => "too_many_docs",
        ErrorCode::Overloaded => "overloaded",
        ErrorCode::ProtocolViolation => "protocol_violation",
        ErrorCode::IdleTimeout => "idle_timeout",
        ErrorCode::ShuttingDown => "shutting_down",
        ErrorCode::Internal => "internal",
        ErrorCode::Foreign => "foreign",
        ErrorCode::UnknownExport => "unknown_export",
    }
}

/// Upper bounds (seconds) of the commit latency buckets: from a page-cache hit to a slow disk.
const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// Shared by the connection tasks (frames, bytes) and the storage actor (commits, changes).
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicI64,
    /// Connections that have not said hello yet (also their limit's count).
    pub connections_unauthenticated: AtomicI64,
    pub connections_total: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub changes_applied: AtomicU64,
    pub log_entries: AtomicU64,
    pub batches: AtomicU64,
    pub storage_failures: AtomicU64,
    pub cached_docs: AtomicU64,
    pub doc_loads: AtomicU64,
    pub snapshots: AtomicU64,
    pub exports_open: AtomicU64,
    /// Databases this hub holds the lease of (several hubs on PostgreSQL).
    pub owned_databases: AtomicI64,
    pub leases_acquired: AtomicU64,
    pub leases_released: AtomicU64,
    pub leases_lost: AtomicU64,
    pub relayed_connections: AtomicU64,
    errors: [AtomicU64; ERROR_CODES.len()],
    commit_latency: Histogram,
}

impl Metrics {
    pub fn error(&self, code: ErrorCode) {
        self.errors[code_index(code)].fetch_add(1, Relaxed);
    }

    pub fn errors(&self, code: ErrorCode) -> u64 {
        self.errors[code_index(code)].load(Relaxed)
    }

    pub fn commit(&self, latency: Duration) {
        self.commit_latency.observe(latency);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        metric("tidepool_connections", "gauge", "Open WebSocket connections.", self.connections.load(Relaxed).to_string());
        metric(
            "tidepool_connections_unauthenticated",
            "gauge",
            "Open WebSocket connections that have not said hello yet.",
            self.connections_unauthenticated.load(Relaxed).to_string(),
        );
        let counters: [(&str, &str, &AtomicU64); 15] = [
            ("tidepool_connections_total", "WebSocket connections accepted.", &self.connections_total),
            ("tidepool_frames_in_total", "Frames received from clients.", &self.frames_in),
            ("tidepool_frames_out_total", "Frames sent to clients.", &self.frames_out),
            ("tidepool_bytes_in_total", "Frame bytes received.", &self.bytes_in),
            ("tidepool_bytes_out_total", "Frame bytes sent.", &self.bytes_out),
            ("tidepool_changes_applied_total", "Automerge changes applied and logged.", &self.changes_applied),
            ("tidepool_log_entries_total", "Change log rows written.", &self.log_entries),
            ("tidepool_batches_total", "Groups of frames processed with one commit.", &self.batches),
            ("tidepool_storage_failures_total", "Batches aborted by a storage error.", &self.storage_failures),
            ("tidepool_doc_loads_total", "Documents loaded from storage into the cache.", &self.doc_loads),
            ("tidepool_snapshots_total", "Document snapshots written.", &self.snapshots),
            ("tidepool_leases_acquired_total", "Database leases this hub acquired.", &self.leases_acquired),
            ("tidepool_leases_released_total", "Database leases this hub handed to another hub.", &self.leases_released),
            ("tidepool_leases_lost_total", "Database leases this hub found taken over (it was too slow to renew).", &self.leases_lost),
            ("tidepool_relayed_connections_total", "Connections relayed to the hub owning their database.", &self.relayed_connections),
        ];
        for (name, help, value) in counters {
            metric(name, "counter", help, value.load(Relaxed).to_string());
        }
        metric(
            "tidepool_owned_databases",
            "gauge",
            "Databases whose lease this hub holds.",
            self.owned_databases.load(Relaxed).to_string(),
        );
        metric("tidepool_cached_docs", "gauge", "Documents loaded in the cache.", self.cached_docs.load(Relaxed).to_string());
        metric(
            "tidepool_exports_open",
            "gauge",
            "Exports holding a read snapshot of storage.",
            self.exports_open.load(Relaxed).to_string(),
        );
        let _ = write!(
            out,
            "# HELP tidepool_errors_total Error frames sent, by code.\n# TYPE tidepool_errors_total counter\n"
        );
        for code in ERROR_CODES {
            let _ = writeln!(out, "tidepool_errors_total{{code=\"{}\"}} {}", code_label(code), self.errors(code));
        }
        let h = &self.commit_latency;
        let name = "tidepool_storage_commit_seconds";
        let _ = write!(out, "# HELP {name} Storage commit latency.\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = h.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", h.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_errors_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.frames_in.fetch_add(3, Relaxed);
        m.error(ErrorCode::Forbidden);
        m.commit(Duration::from_micros(300));
        m.commit(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("tidepool_frames_in_total 3\n"));
        assert!(text.contains("tidepool_errors_total{code=\"forbidden\"} 1\n"));
        assert!(text.contains("tidepool_storage_commit_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("tidepool_storage_commit_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("tidepool_storage_commit_seconds_count 2\n"));
    }
}
