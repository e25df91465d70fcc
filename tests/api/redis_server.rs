//! A Redis server for the tests that need one: `REDIS_URL` when set, otherwise a private
//! `redis-server` on a free port (one per test binary), each test under its own key prefix.
//! Without either, the test says on stderr that it did not run (`SKIPPED: …`, see
//! `skip.rs`); with `CONCIERGE_REQUIRE_REDIS=1` (CI) that is a failure instead.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where a test's Redis is, and the key prefix that keeps its keys apart.
#[derive(Debug, Clone)]
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
    /// Deletes the prefix's keys when the last clone goes.
    _cleanup: std::sync::Arc<Cleanup>,
}

#[derive(Debug)]
struct Cleanup {
    url: String,
    prefix: String,
}

impl TestRedis {
    fn new(url: String) -> TestRedis {
        let prefix = fresh_prefix();
        TestRedis {
            _cleanup: std::sync::Arc::new(Cleanup {
                url: url.clone(),
                prefix: prefix.clone(),
            }),
            url,
            prefix,
        }
    }
}

/// Deletes the test's keys, so a shared server does not keep them.
impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = match redis::cmd("KEYS").arg(&pattern).query(&mut conn) {
            Ok(keys) => keys,
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
        }
    }
}

fn fresh_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// The variable that turns a skip for want of Redis into a failure (CI sets it).
const REQUIRE: &[&str] = &["CONCIERGE_REQUIRE_REDIS"];

/// The shared Redis for this test binary, with a fresh prefix; `None` (after saying so) when
/// there is no Redis to test against.
pub fn redis(test: &str) -> Option<TestRedis> {
    static SHARED: OnceLock<Option<String>> = OnceLock::new();
    let url = SHARED.get_or_init(|| {
        if let Ok(url) = std::env::var("REDIS_URL")
            && !url.is_empty()
        {
            return Some(url);
        }
        let server = RedisServer::start(false)?;
        let url = server.url();
        // Kept for the life of the test binary; the process ends with it.
        KEEP.lock().unwrap_or_else(|e| e.into_inner()).push(server);
        Some(url)
    });
    match url {
        Some(url) => Some(TestRedis::new(url.clone())),
        None => {
            crate::skip::skipped(
                test,
                REQUIRE,
                "no Redis: REDIS_URL is not set and redis-server is not installed",
            );
            None
        }
    }
}

static KEEP: Mutex<Vec<RedisServer>> = Mutex::new(Vec::new());

/// A private `redis-server` process, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    aof: bool,
}

impl RedisServer {
    /// Starts one on a free port; `aof` turns on the append-only file with fsync on every
    /// write. `None` when no redis-server is installed.
    pub fn start(aof: bool) -> Option<RedisServer> {
        let binary = redis_binary()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let dir = tempfile::tempdir().ok()?;
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            aof,
        };
        server.spawn(&binary);
        Some(server)
    }

    /// A private server for a test that must have one (restarts, kills).
    pub fn start_for(test: &str, aof: bool) -> Option<RedisServer> {
        let server = Self::start(aof);
        if server.is_none() {
            crate::skip::skipped(test, REQUIRE, "redis-server is not installed");
        }
        server
    }

    /// Runs redis-server under a small shell that kills it with SIGKILL as soon as its stdin
    /// closes: when this guard drops, and also when the test process dies, so no server
    /// outlives its tests.
    /// A server without AOF has nothing to read back, so the shell also removes its folder:
    /// the binary's shared server is never dropped (it lives in a static), and its folder
    /// would otherwise be left in /tmp.
    fn spawn(&mut self, binary: &PathBuf) {
        let _ = std::fs::create_dir_all(self.dir.path());
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("\"$0\" \"$@\" & r=$!; cat >/dev/null; kill -9 $r; wait $r 2>/dev/null; [ -z \"$REMOVE_DIR\" ] || rm -rf \"$REMOVE_DIR\"")
            .arg(binary)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
            command.env("REMOVE_DIR", self.dir.path());
        }
        let child = command.spawn().expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn with_prefix(&self) -> TestRedis {
        TestRedis::new(self.url())
    }

    /// Kills the server with SIGKILL (no chance to save anything beyond what its AOF holds).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and folder (its AOF is read back).
    pub fn restart(&mut self) {
        self.kill();
        let binary = redis_binary().expect("redis-server");
        self.spawn(&binary);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_binary() -> Option<PathBuf> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("redis-server"))
                    .find(|p| p.exists())
            })
        })
}
