//! Where the `concierge` binary the bench and the chaos run start is: `--gateway`, else
//! `CONCIERGE_BIN`, else beside this tool in the same target folder, built there first with
//! cargo (same profile) when it is missing.

use std::path::{Path, PathBuf};

/// The gateway binary to run, building it when it is not there yet.
pub fn binary(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CONCIERGE_BIN").map(PathBuf::from))
    {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("no gateway binary at {}", path.display()))
        };
    }
    let me = std::env::current_exe().map_err(|e| format!("cannot find this tool's path: {e}"))?;
    let folder = me
        .parent()
        .ok_or_else(|| format!("{} has no folder", me.display()))?;
    // A test binary lives in target/<profile>/deps; the tool itself in target/<profile>.
    let profile_dir = if folder.ends_with("deps") {
        folder.parent().unwrap_or(folder)
    } else {
        folder
    };
    let beside = profile_dir.join(format!("concierge{}", std::env::consts::EXE_SUFFIX));
    if !beside.is_file() {
        build(profile_dir)?;
    }
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!(
            "no gateway binary at {} after building it",
            beside.display()
        ))
    }
}

/// `cargo build --bin concierge` in the profile this tool was built with.
fn build(profile_dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "--quiet", "-p", "concierge", "--bin", "concierge"]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(other) => {
            command.args(["--profile", other]);
        }
    }
    eprintln!("building the gateway ({}) first…", profile_dir.display());
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build the gateway: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build of the gateway failed ({status})"))
    }
}
