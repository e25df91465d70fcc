//! The media store's objects in an S3-compatible bucket (AWS S3, MinIO, R2, moto), so that
//! several instances share them: each object written in one PUT (whole or not at all),
//! every request signed (SigV4) with a short expiry and sent with our HTTP client. Keys
//! are made by the store from hex ids only, under the configured prefix.

use std::time::Duration;

use bytes::Bytes;
use rusty_s3::{Bucket as S3Bucket, Credentials, S3Action, UrlStyle};

use concierge_domain::Secret;

/// How long a signed request stays valid: long enough to be sent, no longer.
const SIGNED_FOR: Duration = Duration::from_secs(300);
/// How long one request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a bucket is and how to reach it (`[media]`).
#[derive(Debug, Clone)]
pub struct BucketConfig {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Every key starts with it (`media/`), possibly empty.
    pub prefix: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// `bucket.endpoint/key` (AWS) or `endpoint/bucket/key` (MinIO, moto, most others).
    pub path_style: bool,
}

/// What one request does to an object.
#[derive(Clone, Copy)]
enum Op {
    Put,
    Get,
    Head,
    Delete,
}

#[derive(Clone)]
pub(crate) struct Bucket {
    bucket: S3Bucket,
    credentials: Credentials,
    prefix: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A request's failure, said without its signed URL.
fn failed(what: &str, e: reqwest::Error) -> std::io::Error {
    std::io::Error::other(format!(
        "the bucket did not answer a {what}: {}",
        e.without_url()
    ))
}

fn refused(what: &str, status: reqwest::StatusCode) -> std::io::Error {
    std::io::Error::other(format!("the bucket refused a {what}: HTTP {status}"))
}

impl Bucket {
    pub(crate) fn new(config: &BucketConfig, http: reqwest::Client) -> Result<Bucket, String> {
        let endpoint = config
            .endpoint
            .parse()
            .map_err(|e| format!("the endpoint `{}` is not a URL: {e}", config.endpoint))?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = S3Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| format!("the bucket cannot be addressed: {e}"))?;
        let credentials = Credentials::new(
            config.access_key_id.expose().to_string(),
            config.secret_access_key.expose().to_string(),
        );
        let prefix = match config.prefix.trim_matches('/') {
            "" => String::new(),
            prefix => format!("{prefix}/"),
        };
        Ok(Bucket {
            bucket,
            credentials,
            prefix,
            http,
        })
    }

    fn key(&self, key: &[impl AsRef<str>]) -> String {
        let parts: Vec<&str> = key.iter().map(AsRef::as_ref).collect();
        format!("{}{}", self.prefix, parts.join("/"))
    }

    /// Sends one signed request for `key`'s object: the answer, or the request's failure
    /// said as `what` failed.
    async fn object(
        &self,
        op: Op,
        key: &[impl AsRef<str>],
        body: Option<&[u8]>,
        what: &str,
    ) -> std::io::Result<reqwest::Response> {
        let object = self.key(key);
        let credentials = Some(&self.credentials);
        let bucket = &self.bucket;
        let (url, http_method) = match op {
            Op::Put => (
                bucket.put_object(credentials, &object).sign(SIGNED_FOR),
                reqwest::Method::PUT,
            ),
            Op::Get => (
                bucket.get_object(credentials, &object).sign(SIGNED_FOR),
                reqwest::Method::GET,
            ),
            Op::Head => (
                bucket.head_object(credentials, &object).sign(SIGNED_FOR),
                reqwest::Method::HEAD,
            ),
            Op::Delete => (
                bucket.delete_object(credentials, &object).sign(SIGNED_FOR),
                reqwest::Method::DELETE,
            ),
        };
        let mut request = self.http.request(http_method, url).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.body(body.to_vec());
        }
        request.send().await.map_err(|e| failed(what, e))
    }

    /// Writes `bytes` under `key` in one PUT: the object is all there or not at all.
    pub(crate) async fn put(&self, key: &[impl AsRef<str>], bytes: &[u8]) -> std::io::Result<()> {
        let response = self.object(Op::Put, key, Some(bytes), "write").await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(refused("write", response.status()))
        }
    }

    /// The bytes under `key`, if any.
    pub(crate) async fn get(&self, key: &[impl AsRef<str>]) -> std::io::Result<Option<Bytes>> {
        let response = self.object(Op::Get, key, None, "read").await?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => response
                .bytes()
                .await
                .map(Some)
                .map_err(|e| failed("read", e)),
            status => Err(refused("read", status)),
        }
    }

    /// Whether something is under `key`.
    pub(crate) async fn exists(&self, key: &[impl AsRef<str>]) -> std::io::Result<bool> {
        let response = self.object(Op::Head, key, None, "lookup").await?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            status if status.is_success() => Ok(true),
            status => Err(refused("lookup", status)),
        }
    }

    /// The names directly under the folder `key` (ListObjectsV2 with a prefix, every page).
    pub(crate) async fn names(&self, key: &[impl AsRef<str>]) -> std::io::Result<Vec<String>> {
        let folder = format!("{}/", self.key(key));
        Ok(self
            .list(&folder)
            .await?
            .into_iter()
            .filter_map(|(k, _)| k.strip_prefix(&folder).map(str::to_string))
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .collect())
    }

    /// Every object one folder down under `top` (`top/ab/name`): its name and when it was
    /// written.
    pub(crate) async fn modified_under(
        &self,
        top: &str,
    ) -> std::io::Result<Vec<(String, std::time::SystemTime)>> {
        let folder = format!("{}{top}/", self.prefix);
        Ok(self
            .list(&folder)
            .await?
            .into_iter()
            .filter_map(|(k, modified)| {
                let rest = k.strip_prefix(&folder)?;
                let (_, name) = rest.split_once('/')?;
                let modified = modified?;
                (!name.is_empty() && !name.contains('/')).then(|| (name.to_string(), modified))
            })
            .collect())
    }

    /// Removes what is under `key`; nothing there is no error.
    pub(crate) async fn delete(&self, key: &[impl AsRef<str>]) -> std::io::Result<()> {
        let response = self.object(Op::Delete, key, None, "deletion").await?;
        match response.status() {
            status if status.is_success() || status == reqwest::StatusCode::NOT_FOUND => Ok(()),
            status => Err(refused("deletion", status)),
        }
    }

    /// Every key under `prefix`, with when it was written (ListObjectsV2, every page).
    async fn list(
        &self,
        prefix: &str,
    ) -> std::io::Result<Vec<(String, Option<std::time::SystemTime>)>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type", "2".to_string()),
                ("prefix", prefix.to_string()),
            ];
            if let Some(token) = &token {
                query.push(("continuation-token", token.clone()));
            }
            let url = rusty_s3::signing::sign(
                &jiff::Timestamp::now(),
                rusty_s3::Method::Get,
                self.bucket.base_url().clone(),
                self.credentials.key(),
                self.credentials.secret(),
                None,
                self.bucket.region(),
                SIGNED_FOR.as_secs(),
                query.iter().map(|(k, v)| (*k, v.as_str())),
                std::iter::empty(),
            );
            let response = self
                .http
                .get(url)
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await
                .map_err(|e| failed("listing", e))?;
            if !response.status().is_success() {
                return Err(refused("listing", response.status()));
            }
            let body = response.text().await.map_err(|e| failed("listing", e))?;
            let page = listing(&body);
            found.extend(page.objects);
            match page.next {
                Some(next) if page.truncated => token = Some(next),
                _ => return Ok(found),
            }
        }
    }
}

/// One page of a ListObjectsV2 answer: its objects (key, when written), and whether more
/// follow.
struct Page {
    objects: Vec<(String, Option<std::time::SystemTime>)>,
    truncated: bool,
    next: Option<String>,
}

/// The text of every `<tag>` in `xml`.
fn texts(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| {
            rest.split_once(close.as_str())
                .map(|(text, _)| unescape(text))
        })
        .collect()
}

/// Reads what the store needs of a ListObjectsV2 answer (an XML document of a fixed shape):
/// each `<Contents>`'s `<Key>` and `<LastModified>`, `<IsTruncated>` and
/// `<NextContinuationToken>`.
fn listing(xml: &str) -> Page {
    let objects = xml
        .split("<Contents>")
        .skip(1)
        .filter_map(|block| {
            let block = block.split("</Contents>").next()?;
            let key = texts(block, "Key").into_iter().next()?;
            let modified = texts(block, "LastModified")
                .first()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(std::time::SystemTime::from);
            Some((key, modified))
        })
        .collect();
    Page {
        objects,
        truncated: texts(xml, "IsTruncated")
            .first()
            .is_some_and(|t| t == "true"),
        next: texts(xml, "NextContinuationToken").into_iter().next(),
    }
}

/// XML's five escapes (keys here are hex and ids; a bucket shared with others may hold more).
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_is_read_for_its_keys_and_its_continuation() {
        let page = listing(
            "<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name><Prefix>m/refs/ab/</Prefix>\
             <IsTruncated>true</IsTruncated><NextContinuationToken>t&amp;1</NextContinuationToken>\
             <Contents><Key>m/refs/ab/c1</Key><LastModified>2026-12-03T09:11:11.000Z</LastModified><Size>0</Size></Contents>\
             <Contents><Key>m/refs/ab/a&amp;b</Key><Size>0</Size></Contents></ListBucketResult>",
        );
        let keys: Vec<&str> = page.objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["m/refs/ab/c1", "m/refs/ab/a&b"]);
        let written = page.objects[0].1.unwrap();
        let since_epoch = written.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!(since_epoch.as_secs(), 1_796_289_071);
        assert!(page.objects[1].1.is_none());
        assert!(page.truncated);
        assert_eq!(page.next.as_deref(), Some("t&1"));
        let last = listing("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
        assert!(last.objects.is_empty() && !last.truncated && last.next.is_none());
    }
}
