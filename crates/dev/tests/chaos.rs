//! `cargo dev chaos`, short, as CI runs it: signed webhooks from 100 customers with 10%
//! sent twice and 5% of sends failed by the platform, the gateway killed with SIGKILL every
//! 0.1–0.5 s and restarted, on SQLite and on Redis. Every column of the bar is zero: nothing
//! lost, nothing processed or sent twice, nothing answered out of order. The documented long
//! run (30,000 webhooks) is the same command with its defaults (RELIABILITY.md).
//!
//! A test binary of its own: cargo runs test binaries one after the other, so the gateway
//! being killed here does not share the machine with the end-to-end suite's own gateways.

#[allow(dead_code)]
#[path = "../../../tests/api/redis_server.rs"]
mod redis_server;
#[allow(dead_code)]
#[path = "../../../tests/api/skip.rs"]
mod skip;

use std::process::Command;

use serde_json::Value;

fn chaos(store: &str, env: &[(&str, &str)]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_concierge-dev"))
        .args([
            "chaos",
            "--store",
            store,
            "--webhooks",
            "2000",
            "--conversations",
            "100",
            "--faults-percent",
            "5",
            "--drain-secs",
            "240",
            "--json",
        ])
        .envs(env.iter().copied())
        .output()
        .expect("run concierge-dev chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row: Value = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no result line:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(stdout.contains("| store | webhooks |"), "{stdout}");
    for column in ["lost", "processed_twice", "sent_twice", "out_of_order"] {
        assert_eq!(row[column], 0, "{column}: {row}");
    }
    assert!(output.status.success(), "{stdout}");
    // The run did what it says: kills, duplicates, faults, every unique message accepted.
    assert_eq!(row["webhooks"], 2000, "{row}");
    assert_eq!(row["duplicates"], 200, "{row}");
    assert_eq!(row["accepted"], 1800, "{row}");
    assert!(row["kills"].as_u64() > Some(0), "{row}");
    assert!(row["faults"].as_u64() > Some(0), "{row}");
    // One message in five was a photo, each downloaded at least once (again after a kill).
    assert_eq!(row["photos"], 360, "{row}");
    assert!(row["photo_downloads"].as_u64() >= Some(360), "{row}");
    eprintln!("chaos {store}: {row}");
    row
}

/// One test for both stores, one after the other: two runs at once on a 2-core machine
/// would measure the machine, not the gateway.
#[test]
fn killed_again_and_again_nothing_is_lost_doubled_or_reordered_on_sqlite_and_redis() {
    chaos("sqlite", &[]);
    let Some(redis) = redis_server::redis(
        "killed_again_and_again_nothing_is_lost_doubled_or_reordered_on_sqlite_and_redis",
    ) else {
        return;
    };
    chaos("redis", &[("REDIS_URL", &redis.url)]);
}
