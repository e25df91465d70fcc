//! An S3-compatible server for the tests of the bucket media store: moto's `moto_server`
//! (a Python package, pinned in `tests/requirements.txt`, installed into a venv by `.ci/run`),
//! found at `$CONCIERGE_MOTO_SERVER` or on the `PATH`, started on a free port once per test
//! binary; each test makes a bucket of its own. Moto keeps everything in memory and checks
//! no signature, so a test can make buckets with plain requests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The variable that turns a skip for want of moto into a failure (CI sets it).
pub const REQUIRE: &str = "CONCIERGE_REQUIRE_MOTO";

/// A bucket of its own on the shared moto server.
#[derive(Debug, Clone)]
pub struct TestBucket {
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub name: String,
}

impl TestBucket {
    /// `[media]` keys that keep media in this bucket under `prefix`, as environment overrides.
    pub fn overrides(&self, prefix: &str) -> Vec<(String, String)> {
        [
            (
                "CONCIERGE__MEDIA__STORE",
                format!("s3://{}/{prefix}", self.name),
            ),
            ("CONCIERGE__MEDIA__ENDPOINT", self.endpoint.clone()),
            ("CONCIERGE__MEDIA__REGION", "us-east-1".to_string()),
            ("CONCIERGE__MEDIA__ACCESS_KEY_ID", "testing".to_string()),
            ("CONCIERGE__MEDIA__SECRET_ACCESS_KEY", "testing".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The keys of every object under `prefix` (a plain, unsigned listing moto answers).
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let url = format!(
            "{}/{}?list-type=2&prefix={prefix}&max-keys=100000",
            self.endpoint, self.name
        );
        let body = match reqwest::get(&url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => return Vec::new(),
        };
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect()
    }
}

struct Server {
    endpoint: String,
    /// Its stdin held open: moto lives as long as this process.
    _child: Mutex<Child>,
}

/// The moto binary: `$CONCIERGE_MOTO_SERVER`, else `moto_server` on the `PATH`.
fn binary() -> Option<String> {
    if let Ok(path) = std::env::var("CONCIERGE_MOTO_SERVER")
        && !path.is_empty()
    {
        return Some(path);
    }
    let found = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then(|| "moto_server".to_string())
}

fn start() -> Result<Server, String> {
    let binary = binary().ok_or("no moto_server ($CONCIERGE_MOTO_SERVER, or on the PATH)")?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    // Under a small shell that kills moto as soon as its stdin closes: when the test process
    // ends, however it ends, no server outlives it.
    let child = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" \"$@\" & m=$!; cat >/dev/null; kill -9 $m; wait $m 2>/dev/null")
        .arg(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {binary}: {e}"))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Server {
                endpoint,
                _child: Mutex::new(child),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{binary} did not listen on {port} within 30 s"))
}

/// A fresh bucket on the shared moto server, or why there is none.
pub async fn bucket() -> Result<TestBucket, String> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    let server = SERVER.get_or_init(start).as_ref().map_err(Clone::clone)?;
    let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let made = reqwest::Client::new()
        .put(format!("{}/{name}", server.endpoint))
        .send()
        .await
        .map_err(|e| format!("moto did not make a bucket: {e}"))?;
    if !made.status().is_success() {
        return Err(format!(
            "moto refused to make a bucket: HTTP {}",
            made.status()
        ));
    }
    Ok(TestBucket {
        endpoint: server.endpoint.clone(),
        name,
    })
}
