//! The README's commands, run with the real binary against a copy of the shipped
//! configuration (concierge.toml, channels/, prompts/ and the demo shop's data), as a
//! newcomer runs them from a fresh clone: every `concierge …` example that works offline
//! (placeholders filled in, optional parts left out) exits 0 and `serve` prints its
//! addresses (`cargo dev demo-shop` is crates/dev's test).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::helpers::PATIENCE;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped deployment in a temporary folder, so its store (`data/`) is made there.
fn shipped() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        root().join("concierge.toml"),
        dir.path().join("concierge.toml"),
    )
    .expect("concierge.toml");
    for folder in ["channels", "prompts"] {
        std::fs::create_dir_all(dir.path().join(folder)).expect("folder");
        for entry in std::fs::read_dir(root().join(folder)).expect("shipped folder") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                let name = path.file_name().expect("a file name");
                std::fs::copy(&path, dir.path().join(folder).join(name)).expect("copy");
            }
        }
    }
    std::fs::create_dir_all(dir.path().join("examples")).expect("examples");
    std::fs::copy(
        root().join("examples/demo-shop.json"),
        dir.path().join("examples/demo-shop.json"),
    )
    .expect("the demo shop's data");
    dir
}

/// The binary, run in `dir` as from the repository root, with no override from this
/// process's environment.
fn concierge(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_concierge"));
    command.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("CONCIERGE__") {
            command.env_remove(name);
        }
    }
    command
}

/// Every `` `concierge …` `` example of the README, with its optional `[…]` parts left out.
fn examples() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut found = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        let Some(rest) = span.strip_prefix("concierge ") else {
            continue;
        };
        let mut words = Vec::new();
        let mut depth = 0usize;
        for word in rest.split_whitespace() {
            depth += word.matches('[').count();
            if depth == 0 {
                words.push(word.to_string());
            }
            depth = depth.saturating_sub(word.matches(']').count());
        }
        if !words.is_empty() {
            found.push(words);
        }
    }
    found
}

/// Placeholders filled in: `NAME` is a concierge of the shipped file, `FILE` an export,
/// `URL` a port nothing listens on (with `--dry-run`, nothing is sent).
fn filled(words: &[String], export: &Path) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for word in words {
        out.push(match word.as_str() {
            "NAME" => "ana".to_string(),
            "FILE" => export.display().to_string(),
            "URL" => "http://127.0.0.1:9".to_string(),
            w if w.chars().any(|c| c == '<' || c == '>') => return None,
            w if w.len() > 1 && w.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
                return None;
            }
            w => w.to_string(),
        });
    }
    if out.first().is_some_and(|w| w == "replay") {
        out.push("--dry-run".to_string());
    }
    Some(out)
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_readmes_token_create_example_works_on_the_shipped_config() {
    let dir = shipped();
    let all = examples();
    assert!(
        all.iter().any(|w| w.join(" ") == "token create ana"),
        "the README shows `concierge token create ana`: {all:?}"
    );
    let output = concierge(dir.path())
        .args(["token", "create", "ana"])
        .output()
        .expect("run concierge token create ana");
    assert!(output.status.success(), "{}", text(&output));
    let token = String::from_utf8_lossy(&output.stdout);
    assert!(token.trim().len() > 20, "a token: {}", text(&output));
}

#[test]
fn every_offline_readme_command_works_on_the_shipped_config() {
    let dir = shipped();
    let export = dir.path().join("export.jsonl");
    std::fs::write(&export, "").expect("an empty export");
    let mut ran = Vec::new();
    for words in examples() {
        // Those that talk to another server or run for long are run below or elsewhere.
        let offline = ["check", "token", "inbox", "replay"];
        if !words.first().is_some_and(|w| offline.contains(&w.as_str())) {
            continue;
        }
        let Some(args) = filled(&words, &export) else {
            continue;
        };
        let output = concierge(dir.path())
            .args(&args)
            .output()
            .expect("run concierge");
        assert!(
            output.status.success(),
            "`concierge {}` failed on the shipped config:\n{}",
            args.join(" "),
            text(&output)
        );
        ran.push(args.join(" "));
    }
    for expected in ["check", "token create ana", "token revoke ana"] {
        assert!(ran.iter().any(|r| r == expected), "{expected} in {ran:?}");
    }
}

/// Starts a long-running command and waits for a line of its output holding `wanted`.
fn starts(mut command: Command, wanted: &str) -> Vec<String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let (tx, rx) = std::sync::mpsc::channel();
    let streams: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("stdout")),
        Box::new(child.stderr.take().expect("stderr")),
    ];
    for stream in streams {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(wanted);
                lines.push(line);
                if found {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains(wanted)),
        "no `{wanted}` in {lines:#?}"
    );
    lines
}

#[test]
fn serve_starts_on_the_shipped_config() {
    let dir = shipped();
    // The shipped port may be taken on a shared machine: the same config on any free port.
    let mut serve = concierge(dir.path());
    serve
        .arg("serve")
        .env("CONCIERGE__SERVER__BIND", "127.0.0.1:0");
    let lines = starts(serve, "metrics:");
    assert!(lines.iter().any(|l| l.contains("/chat")), "{lines:#?}");
}

#[test]
fn the_shipped_config_passes_with_the_readmes_llm_variables() {
    let dir = shipped();
    for vars in [
        &[
            ("CONCIERGE__LLM__PROVIDER", "openai"),
            ("CONCIERGE__LLM__MODEL", "gpt-4o-mini"),
            ("CONCIERGE__LLM__API_KEY", "placeholder-llm-key"),
        ][..],
        &[
            ("CONCIERGE__LLM__PROVIDER", "ollama"),
            ("CONCIERGE__LLM__MODEL", "llama3.1"),
        ][..],
    ] {
        let output = concierge(dir.path())
            .arg("check")
            .envs(vars.iter().copied())
            .output()
            .expect("run concierge check");
        assert!(output.status.success(), "{vars:?}: {}", text(&output));
    }
}
