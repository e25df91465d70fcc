//! What a test does when something it needs is missing (Redis, Chromium): by default it
//! says so on stderr (`SKIPPED: <test> — <why>`, written past libtest's capture, so `cargo
//! test` shows it even for a passing test) and passes; with one of its `CONCIERGE_REQUIRE_…=1` variables set (CI) it fails.

/// Whether any of `vars` is set to `1`.
pub fn required(vars: &[&str]) -> bool {
    vars.iter()
        .any(|var| std::env::var(var).is_ok_and(|v| v == "1"))
}

/// Says that `test` did not run and why; panics instead when one of `vars` is `1`.
pub fn skipped(test: &str, vars: &[&str], why: &str) {
    if required(vars) {
        panic!("{test}: {why}, and {}=1 requires it", vars.join("/"));
    }
    let var = vars.first().copied().unwrap_or("CONCIERGE_REQUIRE_…");
    // Written to the stderr handle itself: libtest captures `eprintln!` of a passing test
    // as it does `println!`, and a skip nobody sees is the problem this module solves.
    let line =
        format!("SKIPPED: {test} — {why}; this test did not run (set {var}=1 to fail instead)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// Only `1` requires: an unset or other value lets the test say SKIPPED and pass. (The
/// message itself is not printed here: a SKIPPED line in a full run would look like a skip.)
#[test]
fn only_a_variable_set_to_1_requires() {
    assert!(!required(&["CONCIERGE_REQUIRE_NOTHING_THIS_TEST_KNOWS"]));
    assert!(!required(&[]));
}
