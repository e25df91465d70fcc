//! The invariants of ARCHITECTURE.md, checked: the crate graph is the layering it shows, the
//! engine never names a platform, only the channels know the platforms' wire types, nothing
//! but the binary sees the configuration, and every module says what it is for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer crate and the layer crates it may depend on (ARCHITECTURE.md's table). The
/// binary (`concierge`) sits on all of them; the test kit and the developer's tools on it.
const LAYERS: &[(&str, &[&str])] = &[
    ("concierge-domain", &[]),
    ("concierge-faq", &[]),
    ("concierge-media", &["concierge-domain"]),
    ("concierge-telemetry", &[]),
    ("concierge-store", &["concierge-domain"]),
    (
        "concierge-store-sqlite",
        &["concierge-domain", "concierge-store"],
    ),
    (
        "concierge-store-redis",
        &["concierge-domain", "concierge-store"],
    ),
    (
        "concierge-channels",
        &["concierge-domain", "concierge-store"],
    ),
    (
        "concierge-agents",
        &[
            "concierge-domain",
            "concierge-telemetry",
            "concierge-channels",
        ],
    ),
    (
        "concierge-engine",
        &[
            "concierge-domain",
            "concierge-faq",
            "concierge-media",
            "concierge-telemetry",
            "concierge-store",
            "concierge-channels",
            "concierge-agents",
        ],
    ),
    (
        "concierge-http",
        &[
            "concierge-domain",
            "concierge-media",
            "concierge-telemetry",
            "concierge-store",
            "concierge-channels",
            "concierge-engine",
        ],
    ),
];

/// The platforms, as their modules in `concierge-channels` are named.
const PLATFORMS: &[&str] = &["webchat", "whatsapp", "twilio", "bluebubbles", "telegram"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every workspace package and the workspace packages it depends on (all kinds).
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| names.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn the_crate_graph_is_the_layering_and_has_no_cycle() {
    let graph = workspace_graph();
    for (name, allowed) in LAYERS {
        let deps = graph
            .get(*name)
            .unwrap_or_else(|| panic!("{name} is not in the workspace"));
        let forbidden: Vec<&String> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(
            forbidden.is_empty(),
            "{name} depends on {forbidden:?}, which ARCHITECTURE.md's layering does not allow"
        );
    }
    // A new crate takes its place in the table (and in ARCHITECTURE.md) before it is used.
    let layered: BTreeSet<&str> = LAYERS.iter().map(|(n, _)| *n).collect();
    for (name, deps) in &graph {
        if matches!(
            name.as_str(),
            "concierge" | "concierge-testkit" | "concierge-dev"
        ) {
            continue;
        }
        assert!(layered.contains(name.as_str()), "{name} has no layer");
        assert!(
            !deps.contains("concierge"),
            "{name} depends on the binary's crate (its configuration)"
        );
    }
    // No cycle: taking away crates with no dependency left, layer by layer, empties the graph.
    let mut left = graph.clone();
    while !left.is_empty() {
        let free: Vec<String> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
            .map(|(n, _)| n.clone())
            .collect();
        assert!(
            !free.is_empty(),
            "a dependency cycle among {:?}",
            left.keys()
        );
        for n in free {
            left.remove(&n);
        }
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The lines of a source file that are code, not comments.
fn code_lines(source: &str) -> impl Iterator<Item = (usize, &str)> {
    source
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

#[test]
fn the_engine_agents_and_stores_never_name_a_platform() {
    let mut found = Vec::new();
    for krate in ["engine", "agents", "store", "store-sqlite", "store-redis"] {
        for file in rust_files(&root().join("crates").join(krate).join("src")) {
            let source = std::fs::read_to_string(&file).unwrap();
            for (n, line) in code_lines(&source) {
                let names_platform = line.contains("ChannelKind")
                    || PLATFORMS
                        .iter()
                        .any(|p| line.contains(&format!("concierge_channels::{p}")));
                if names_platform {
                    found.push(format!("{}:{n}: {}", file.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "these see a platform, not the adapter trait:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_channels_know_the_platforms_wire_types() {
    let mut found = Vec::new();
    let mut dirs = vec![root().join("src")];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let path = entry.unwrap().path();
        if !path.ends_with("channels") {
            dirs.push(path.join("src"));
        }
    }
    for dir in dirs {
        for file in rust_files(&dir) {
            let source = std::fs::read_to_string(&file).unwrap();
            for (n, line) in code_lines(&source) {
                if PLATFORMS
                    .iter()
                    .any(|p| line.contains(&format!("{p}::wire")))
                {
                    found.push(format!("{}:{n}: {}", file.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "platform wire types outside crates/channels:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_module_says_what_it_is_for() {
    let mut dirs = vec![
        root().join("src"),
        root().join("tests"),
        root().join("benches"),
    ];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let path = entry.unwrap().path();
        dirs.push(path.join("src"));
        if path.join("tests").is_dir() {
            dirs.push(path.join("tests"));
        }
    }
    let mut silent = Vec::new();
    for dir in dirs {
        for file in rust_files(&dir) {
            let source = std::fs::read_to_string(&file).unwrap();
            let first = source.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                silent.push(file.display().to_string());
            }
        }
    }
    assert!(
        silent.is_empty(),
        "modules without a `//!` line: {silent:?}"
    );
}

/// The image's dependency layer is built from every crate's manifest, one `COPY` line each:
/// a crate left out there breaks `docker build` (no engine runs here to catch it otherwise).
#[test]
fn the_dockerfile_copies_every_crates_manifest() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let line = format!("COPY crates/{name}/Cargo.toml crates/{name}/");
        assert!(dockerfile.contains(&line), "the Dockerfile lacks `{line}`");
    }
}

/// `cargo tree` of the product, as `name vX.Y.Z` lines.
fn product_tree(extra: &[&str]) -> Vec<String> {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-e",
            "normal",
            "-p",
            "concierge",
            "-f",
            "{p}",
            "--offline",
        ])
        .args(extra)
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What the housekeeping took out stays out: teloxide-core with its second reqwest and its
/// chrono, and the `time` crate (jiff is the one time library); tower-http is reached only
/// through reqwest, which uses it for redirects, never declared by us.
#[test]
fn the_product_depends_on_none_of_the_crates_taken_out() {
    let tree = product_tree(&["--prefix", "none"]);
    let taken_out = [
        "teloxide-core ",
        "teloxide ",
        "chrono ",
        "time ",
        "reqwest v0.12",
    ];
    for line in &tree {
        assert!(
            !taken_out.iter().any(|name| line.starts_with(name)),
            "`{line}` is back in the product's dependencies"
        );
    }
    let users = product_tree(&["--prefix", "depth", "-i", "tower-http"]);
    for line in users.iter().filter(|l| l.starts_with('1')) {
        assert!(
            line.starts_with("1reqwest "),
            "tower-http is used by `{line}`, not only by reqwest"
        );
    }
}
