//! What a run measured, as a table for people and one JSON line for scripts.

use std::time::Duration;

use serde_json::json;

use super::load::{LoadResult, percentile};
use super::process::Memory;
use super::{Plan, Shape, StoreKind};

/// One side of the comparison: the gateway or the plain handler.
#[derive(Debug, Clone)]
pub struct Side {
    pub requests: usize,
    pub failed: usize,
    pub acks_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub peak_rss: u64,
}

impl Side {
    pub fn from_load(result: &LoadResult, memory: Memory) -> Side {
        let mut latencies = result.latencies();
        latencies.sort();
        Side {
            requests: result.sent.len(),
            failed: result.failed(),
            acks_per_second: result.acks_per_second(),
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            peak_rss: memory.peak,
        }
    }
}

/// The turns of a run that answers.
#[derive(Debug, Clone)]
pub struct Turns {
    /// Acknowledged messages, each owed one reply.
    pub expected: u64,
    pub answered: u64,
    /// Replies beyond one per message.
    pub extra: u64,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// From the first webhook to the last reply.
    pub span: Duration,
}

impl Turns {
    pub fn new(
        expected: u64,
        answered: u64,
        extra: u64,
        mut latencies: Vec<Duration>,
        span: Duration,
    ) -> Turns {
        latencies.sort();
        Turns {
            expected,
            answered,
            extra,
            per_second: answered.min(expected) as f64 / span.as_secs_f64().max(1e-9),
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            span,
        }
    }
}

/// Everything one scenario on one store gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub plan: Plan,
    pub sync: String,
    pub plain: Option<Side>,
    pub gateway: Side,
    pub idle_rss: u64,
    pub turns: Option<Turns>,
    pub llm_calls: u64,
    /// Read receipts and typing indicators the fake Graph API received.
    pub indicators: u64,
    /// Calls the fake Graph API could not read as a message or an indicator.
    pub unknown_graph_calls: u64,
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

/// The machine the figures come from.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!(
        "concierge bench {} · {cpus} CPUs ({model}) · {} build",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    )
}

impl Outcome {
    fn store_label(&self) -> String {
        match self.plan.store {
            StoreKind::Sqlite => format!("SQLite sync={}", self.sync),
            StoreKind::Redis => "Redis".to_string(),
        }
    }

    fn shape_label(&self) -> String {
        match self.plan.shape {
            Shape::Concurrency(n) => format!("{n} in flight"),
            Shape::Rate(r) => format!("{r}/s"),
        }
    }

    /// Gateway acks per second over the plain handler's.
    pub fn ratio(&self) -> Option<f64> {
        self.plain
            .as_ref()
            .map(|p| self.gateway.acks_per_second / p.acks_per_second.max(1e-9))
    }

    pub fn render(&self) -> String {
        let plan = &self.plan;
        let mut out = format!(
            "\n== {} · {} · {} webhooks from {} customers, {} · LLM {} ms · {} lanes\n",
            plan.scenario.name(),
            self.store_label(),
            plan.requests,
            plan.conversations,
            self.shape_label(),
            plan.llm_latency.as_millis(),
            plan.lanes,
        );
        out.push_str(&format!(
            "{:<12} {:>10} {:>9} {:>9} {:>9} {:>7} {:>11}\n",
            "", "acks/s", "p50 ms", "p99 ms", "max ms", "failed", "peak RSS"
        ));
        let mut row = |name: &str, side: &Side| {
            out.push_str(&format!(
                "{:<12} {:>10.0} {:>9} {:>9} {:>9} {:>7} {:>11}\n",
                name,
                side.acks_per_second,
                ms(side.p50),
                ms(side.p99),
                ms(side.max),
                side.failed,
                mb(side.peak_rss)
            ));
        };
        if let Some(plain) = &self.plain {
            row("plain axum", plain);
        }
        row("gateway", &self.gateway);
        if let Some(ratio) = self.ratio() {
            out.push_str(&format!("ack throughput, gateway / plain: {ratio:.2}\n"));
        }
        out.push_str(&format!("gateway idle RSS: {}\n", mb(self.idle_rss)));
        if let Some(turns) = &self.turns {
            out.push_str(&format!(
                "full turns: {} of {} answered in {:.2} s = {:.0} turns/s · reply after the webhook p50 {} ms, p99 {} ms, max {} ms · {} extra replies · {} LLM calls · {} read/typing indicators\n",
                turns.answered.min(turns.expected),
                turns.expected,
                turns.span.as_secs_f64(),
                turns.per_second,
                ms(turns.p50),
                ms(turns.p99),
                ms(turns.max),
                turns.extra,
                self.llm_calls,
                self.indicators,
            ));
        }
        if self.unknown_graph_calls > 0 {
            out.push_str(&format!(
                "the fake Graph API could not read {} calls\n",
                self.unknown_graph_calls
            ));
        }
        out
    }

    pub fn json(&self) -> String {
        let side = |s: &Side| {
            json!({
                "acks_per_second": s.acks_per_second, "p50_ms": s.p50.as_secs_f64() * 1e3,
                "p99_ms": s.p99.as_secs_f64() * 1e3, "max_ms": s.max.as_secs_f64() * 1e3,
                "failed": s.failed, "requests": s.requests, "peak_rss_bytes": s.peak_rss,
            })
        };
        json!({
            "scenario": self.plan.scenario.name(),
            "store": self.store_label(),
            "requests": self.plan.requests,
            "conversations": self.plan.conversations,
            "shape": self.shape_label(),
            "llm_latency_ms": self.plan.llm_latency.as_millis() as u64,
            "lanes": self.plan.lanes,
            "plain": self.plain.as_ref().map(side),
            "gateway": side(&self.gateway),
            "ratio": self.ratio(),
            "idle_rss_bytes": self.idle_rss,
            "turns": self.turns.as_ref().map(|t| json!({
                "expected": t.expected, "answered": t.answered, "extra": t.extra,
                "per_second": t.per_second, "p50_ms": t.p50.as_secs_f64() * 1e3,
                "p99_ms": t.p99.as_secs_f64() * 1e3, "max_ms": t.max.as_secs_f64() * 1e3,
            })),
            "llm_calls": self.llm_calls,
            "indicators": self.indicators,
        })
        .to_string()
    }
}
