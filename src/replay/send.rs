//! `concierge replay`: posts exported webhooks to a gateway, in order, each signed by the
//! target channel's adapter. The whole file is read, checked and signed before the first
//! request leaves: a bad line or a channel the target lacks stops it with nothing sent.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use super::Record;
use crate::channels::{Registry, WebhookRequest};
use crate::config::Config;

/// Headers that belong to the recorded connection, not to the webhook: the client sets its
/// own.
const CONNECTION_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "expect",
];

/// The options of `concierge replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayOptions {
    /// The JSON lines printed by `concierge inbox export`.
    pub file: PathBuf,
    /// The target gateway's base URL, e.g. http://127.0.0.1:8080 (each webhook goes to
    /// URL/webhooks/<channel>).
    #[arg(long)]
    pub to: String,
    /// The target's concierge.toml: its channels (channels/<id>.toml) sign each request.
    #[arg(long, default_value = "concierge.toml")]
    pub config: PathBuf,
    /// At most this many requests a second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Read, check and sign every line, print what would be sent, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests made.
    pub sent: usize,
    /// Answered 2xx.
    pub accepted: usize,
    /// Answered 401 or 403: the signature (or secret) was not the target's.
    pub refused: usize,
    /// Any other answer, or none.
    pub errors: usize,
}

impl Summary {
    /// Whether every request was accepted.
    pub fn all_accepted(&self) -> bool {
        self.refused == 0 && self.errors == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, 2xx {}, refused {}, errors {}",
            self.sent, self.accepted, self.refused, self.errors
        )
    }
}

/// A request ready to go: signed for the target.
struct Prepared {
    line: usize,
    channel: String,
    request: WebhookRequest,
}

/// Replays `options.file` to `options.to`, signing with the channels of `config`, and
/// writes one line per request and the summary to `out`. An error is a problem found before
/// anything was sent (an option, a line of the file, a channel of the target).
pub async fn replay(
    options: &ReplayOptions,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let base = options.to.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        anyhow::bail!("--to `{}` is not an http(s) URL", options.to);
    }
    let pace = match options.rate {
        Some(rate) if rate.is_finite() && rate > 0.0 => Some(Duration::from_secs_f64(1.0 / rate)),
        Some(rate) => anyhow::bail!("--rate {rate} is not a positive number of requests a second"),
        None => None,
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let prepared = prepare(&options.file, config, &http)?;
    if options.dry_run {
        for p in &prepared {
            writeln!(
                out,
                "line {}: {} would POST {base}/webhooks/{} ({} bytes)",
                p.line,
                p.channel,
                p.channel,
                p.request.body.len()
            )?;
        }
        writeln!(
            out,
            "dry run: {} request(s) signed, none sent",
            prepared.len()
        )?;
        return Ok(Summary::default());
    }
    let mut summary = Summary::default();
    let start = Instant::now();
    for (i, p) in prepared.into_iter().enumerate() {
        if let Some(pace) = pace {
            tokio::time::sleep_until(start + pace.mul_f64(i as f64)).await;
        }
        let mut url = format!("{base}/webhooks/{}", p.channel);
        if let Some(query) = p.request.raw_query.as_deref().filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(query);
        }
        summary.sent += 1;
        let answer = http
            .post(url)
            .headers(p.request.headers)
            .body(p.request.body)
            .send()
            .await;
        match answer {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    summary.accepted += 1;
                } else if matches!(status.as_u16(), 401 | 403) {
                    summary.refused += 1;
                } else {
                    summary.errors += 1;
                }
                writeln!(out, "line {}: {} {}", p.line, p.channel, status.as_u16())?;
            }
            Err(e) => {
                summary.errors += 1;
                // Without the URL: a BlueBubbles secret travels in it.
                writeln!(
                    out,
                    "line {}: {} error: {}",
                    p.line,
                    p.channel,
                    e.without_url()
                )?;
            }
        }
    }
    writeln!(out, "{summary}")?;
    out.flush()?;
    Ok(summary)
}

/// Reads every line of `file` and signs it for the target's channel of the same id.
fn prepare(file: &Path, config: &Config, http: &reqwest::Client) -> anyhow::Result<Vec<Prepared>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
    let registry = Registry::build(&config.channels, http);
    let mut prepared = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = |reason: String| anyhow::anyhow!("{}:{number}: {reason}", file.display());
        let record: Record =
            serde_json::from_str(line).map_err(|e| at(format!("not an exported webhook: {e}")))?;
        let body = record.body_bytes().map_err(at)?;
        let Some(adapter) = registry.get(&record.channel) else {
            return Err(at(format!(
                "the target has no channel `{}`: no {} (from {})",
                record.channel,
                config
                    .channels_dir
                    .join(format!("{}.toml", record.channel))
                    .display(),
                config.file.display()
            )));
        };
        if adapter.kind().name() != record.kind {
            return Err(at(format!(
                "channel `{}` was {} where it was recorded, but `kind` is {} in {}",
                record.channel,
                record.kind,
                adapter.kind().name(),
                config
                    .channels_dir
                    .join(format!("{}.toml", record.channel))
                    .display()
            )));
        }
        let mut request = WebhookRequest {
            headers: headers(&record.headers).map_err(at)?,
            query: record
                .query
                .as_deref()
                .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
                .unwrap_or_default()
                .into_iter()
                .collect(),
            raw_query: record.query.clone(),
            body: Bytes::from(body),
        };
        adapter
            .sign(&mut request)
            .map_err(|e| at(format!("channel `{}`: {e}", record.channel)))?;
        prepared.push(Prepared {
            line: number,
            channel: record.channel,
            request,
        });
    }
    Ok(prepared)
}

/// The recorded headers, less those of the recorded connection.
fn headers(recorded: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in recorded {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        if CONNECTION_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header `{name}` is not a header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::ChannelConfig;
    use crate::domain::ChannelId;

    fn channel(id: &str, kind: &str, toml_text: &str) -> (ChannelId, ChannelConfig) {
        let config = match kind {
            "whatsapp" => ChannelConfig::Whatsapp(toml::from_str(toml_text).unwrap()),
            "twilio_whatsapp" => ChannelConfig::TwilioWhatsapp(toml::from_str(toml_text).unwrap()),
            "telegram" => ChannelConfig::Telegram(toml::from_str(toml_text).unwrap()),
            "bluebubbles" => ChannelConfig::Bluebubbles(toml::from_str(toml_text).unwrap()),
            other => panic!("{other}"),
        };
        (ChannelId::parse(id).unwrap(), config)
    }

    /// Every adapter's `sign` makes a request its own `verify` accepts, whatever the
    /// recording carried.
    #[test]
    fn what_an_adapter_signs_it_verifies() {
        let channels = vec![
            channel(
                "wa",
                "whatsapp",
                "phone_number_id = \"1\"\naccess_token = \"t\"\napp_secret = \"s\"\nverify_token = \"v\"\n",
            ),
            channel(
                "tw",
                "twilio_whatsapp",
                "account_sid = \"AC1\"\nauth_token = \"tok\"\nfrom = \"whatsapp:+15550100000\"\npublic_url = \"https://x.test/webhooks/tw\"\n",
            ),
            channel(
                "tg",
                "telegram",
                "bot_token = \"1:x\"\nsecret_token = \"sec_1\"\n",
            ),
            channel(
                "bb",
                "bluebubbles",
                "server_url = \"http://mac:1234\"\npassword = \"p\"\nwebhook_secret = \"bbsecret\"\n",
            ),
        ];
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = Registry::build(&channels, &reqwest::Client::new());
        for (id, query, body) in [
            ("wa", None, "{\"object\":\"whatsapp_business_account\"}"),
            ("tw", Some("x=1"), "Body=hi&From=whatsapp%3A%2B15550100001"),
            ("tg", None, "{\"update_id\":1}"),
            ("bb", Some("x=1&secret=old"), "{\"type\":\"new-message\"}"),
        ] {
            let adapter = registry.get(id).unwrap();
            let mut request = WebhookRequest {
                headers: HeaderMap::new(),
                query: Default::default(),
                raw_query: query.map(str::to_string),
                body: Bytes::from(body),
            };
            assert!(adapter.verify(&request).is_err(), "{id} unsigned");
            adapter.sign(&mut request).unwrap();
            assert_eq!(adapter.verify(&request), Ok(()), "{id} signed");
        }
    }
}
