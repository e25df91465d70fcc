//! `cargo dev bench` run as a user runs it, small: every scenario answers every message once,
//! the baseline runs beside the gateway, and the JSON lines carry what BENCHMARKS.md quotes.
//! Figures are not checked against any time: the machines are shared.

#[allow(dead_code)]
#[path = "../../../tests/api/redis_server.rs"]
mod redis_server;

#[allow(dead_code)]
#[path = "../../../tests/api/skip.rs"]
mod skip;

use std::process::Command;

use serde_json::Value;

/// Runs the bench with `args` and returns its JSON lines.
fn bench(args: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_concierge-dev"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .envs(env.iter().copied())
        .output()
        .expect("run concierge-dev bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "concierge bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ack throughput, gateway / plain"),
        "{stdout}"
    );
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON result line"))
        .collect()
}

fn check_side(side: &Value, requests: u64) {
    assert_eq!(side["requests"], requests, "{side}");
    assert_eq!(side["failed"], 0, "{side}");
    assert!(
        side["acks_per_second"].as_f64().unwrap_or(0.0) > 0.0,
        "{side}"
    );
    assert!(side["p50_ms"].as_f64() <= side["p99_ms"].as_f64(), "{side}");
    assert!(side["p99_ms"].as_f64() <= side["max_ms"].as_f64(), "{side}");
}

#[test]
fn every_scenario_answers_every_message_once_beside_the_baseline() {
    let results = bench(
        &[
            "--scenario",
            "ingest",
            "--scenario",
            "turns",
            "--scenario",
            "slow-llm",
            "--scenario",
            "faq",
            "--requests",
            "120",
            "--conversations",
            "12",
            "--concurrency",
            "8",
            "--llm-latency-ms",
            "0",
        ],
        &[],
    );
    let names: Vec<&str> = results
        .iter()
        .filter_map(|r| r["scenario"].as_str())
        .collect();
    assert_eq!(names, ["ingest", "turns", "slow-llm", "faq"]);
    for result in &results {
        check_side(&result["plain"], 120);
        check_side(&result["gateway"], 120);
        assert!(result["ratio"].as_f64().unwrap_or(0.0) > 0.0, "{result}");
        let idle = result["idle_rss_bytes"].as_u64().unwrap_or(0);
        let peak = result["gateway"]["peak_rss_bytes"].as_u64().unwrap_or(0);
        assert!(idle > 0 && peak >= idle, "{result}");
        match result["scenario"].as_str() {
            Some("ingest") => {
                // Processing is paused: nothing is answered, the LLM is never asked.
                assert!(result["turns"].is_null(), "{result}");
                assert_eq!(result["llm_calls"], 0);
            }
            Some(scenario) => {
                let turns = &result["turns"];
                assert_eq!(turns["expected"], 120, "{result}");
                assert_eq!(turns["answered"], 120, "{result}");
                assert_eq!(turns["extra"], 0, "{result}");
                assert!(turns["per_second"].as_f64().unwrap_or(0.0) > 0.0);
                // A read receipt with the typing indicator for each message.
                assert_eq!(result["indicators"], 120, "{result}");
                let llm_calls = result["llm_calls"].as_u64().unwrap_or(0);
                if scenario == "faq" {
                    assert_eq!(llm_calls, 0, "the FAQ answers alone: {result}");
                } else {
                    assert!(llm_calls >= 120, "{result}");
                }
            }
            None => panic!("no scenario name: {result}"),
        }
    }
}

#[test]
fn the_redis_store_is_benched_and_its_keys_removed() {
    let Some(redis) = crate::redis_server::redis("the_redis_store_is_benched_and_its_keys_removed")
    else {
        return;
    };
    let results = bench(
        &[
            "--scenario",
            "turns",
            "--store",
            "redis",
            "--requests",
            "60",
            "--conversations",
            "6",
            "--rate",
            "200",
        ],
        &[("REDIS_URL", &redis.url)],
    );
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["store"], "Redis");
    assert_eq!(results[0]["shape"], "200/s");
    assert_eq!(results[0]["turns"]["answered"], 60, "{}", results[0]);
    assert_eq!(results[0]["turns"]["extra"], 0);
    // The run's keys are gone: no prefix of a bench run is left behind.
    let client = redis::Client::open(redis.url.as_str()).expect("a Redis URL");
    let mut conn = client.get_connection().expect("connect to Redis");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("bench-*")
        .query(&mut conn)
        .expect("KEYS");
    assert!(
        left.is_empty(),
        "left behind: {:?}",
        &left[..left.len().min(5)]
    );
}
