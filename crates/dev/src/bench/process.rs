//! The processes under load: the gateway (`concierge serve` on a folder the bench writes) and
//! the plain axum baseline (`concierge bench-plain`), each started from this same binary,
//! waited for until ready, measured (resident memory, from /proc) and stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;

/// A child process serving HTTP on `base`; killed when dropped.
pub struct Served {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

/// A free loopback port (bound, read, released: another process could take it in between,
/// which a benchmark on a quiet machine can live with).
pub fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::Io("find a free port".into(), e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::Io("find a free port".into(), e))
}

impl Served {
    /// Starts `binary args…` with its stderr in `log` and the given environment, and waits
    /// until `ready_path` answers 200 on `port`.
    pub async fn start(
        binary: &Path,
        args: &[&str],
        env: &[(String, String)],
        port: u16,
        ready_path: &str,
        log: PathBuf,
    ) -> Result<Served, BenchError> {
        let file = std::fs::File::create(&log)
            .map_err(|e| BenchError::Io(format!("create {}", log.display()), e))?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .map_err(|e| BenchError::Io(format!("start {}", binary.display()), e))?;
        let mut served = Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = super::load::client(1);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = served.child.try_wait() {
                return Err(BenchError::NotReady(format!(
                    "{} exited ({status}); its log {}:\n{}",
                    binary.display(),
                    served.log.display(),
                    tail(&served.log, 15)
                )));
            }
            let answer = client
                .get(format!("{}{ready_path}", served.base))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return Ok(served);
            }
            if Instant::now() > deadline {
                let _ = served.child.kill();
                return Err(BenchError::NotReady(format!(
                    "{} did not answer {ready_path} within 60 s; its log {}:\n{}",
                    binary.display(),
                    served.log.display(),
                    tail(&served.log, 15)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now and at its peak (VmRSS and VmHWM), in bytes.
    pub fn memory(&self) -> Memory {
        memory(self.pid())
    }

    /// Kills the process with SIGKILL (no chance to finish anything) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop (SIGTERM) and waits for it a while, then kills it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

/// Reads VmRSS and VmHWM from /proc/PID/status (zero where the system has no /proc).
pub fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Memory {
        rss: field("VmRSS:"),
        peak: field("VmHWM:"),
    }
}

/// The last lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory() {
        let own = memory(std::process::id());
        if Path::new("/proc/self/status").exists() {
            assert!(own.rss > 0);
            assert!(own.peak >= own.rss);
        }
    }
}
