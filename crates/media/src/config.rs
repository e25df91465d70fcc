//! `[media]` of `concierge.toml`: where media is kept (a folder, or an S3-compatible bucket
//! several instances share), how large it may be, how long a turn waits for it, whether
//! images go to the LLM, which hosts agents may send pictures from.

use serde::Deserialize;

use crate::BucketConfig;
use concierge_domain::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The folder media is kept in, relative to the configuration's folder; or a bucket,
    /// `s3://bucket/prefix`.
    pub store: String,
    /// The bucket's S3 endpoint (`https://s3.eu-west-3.amazonaws.com`, a MinIO's URL); AWS's
    /// for `region` when absent.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    /// Address the bucket in the path (`endpoint/bucket/key`), as MinIO and most S3-compatible
    /// servers want; `false` for AWS's `bucket.endpoint/key`. Defaults to `true` when an
    /// `endpoint` is given.
    pub path_style: Option<bool>,
    /// Larger media is noted in the thread, not downloaded.
    pub max_bytes: u64,
    /// How long a turn waits for its message's media before it answers without it.
    pub wait_ms: u64,
    /// Whether customers' images go to the LLM as images (an agent without vision gets
    /// their description either way).
    pub images_to_llm: bool,
    /// Hosts (`cdn.shop.example`) whose https URLs an agent's `send_media` may send even when
    /// no tool of the turn returned them.
    pub send_hosts: Vec<String>,
    /// Files kept longer than this many days are deleted (the messages stay, their media
    /// reads as no longer kept); 0 keeps them.
    pub retention_days: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            store: "data/media".to_string(),
            endpoint: None,
            region: "us-east-1".to_string(),
            access_key_id: None,
            secret_access_key: None,
            path_style: None,
            max_bytes: 16 * 1024 * 1024,
            wait_ms: 5_000,
            images_to_llm: true,
            send_hosts: Vec::new(),
            retention_days: 0,
        }
    }
}

impl MediaConfig {
    /// The bucket `store` names (`s3://bucket/prefix`), `None` for a folder; the key at
    /// fault and why when it cannot be reached as written.
    pub fn bucket(&self) -> Option<Result<BucketConfig, (&'static str, String)>> {
        let rest = self.store.strip_prefix("s3://").map(str::to_string);
        if rest.is_none() && !self.store.contains("://") {
            return None;
        }
        Some(self.bucket_of(rest))
    }

    fn bucket_of(&self, rest: Option<String>) -> Result<BucketConfig, (&'static str, String)> {
        let Some(rest) = rest else {
            return Err((
                "store",
                format!(
                    "`{}` is neither a folder nor s3://bucket/prefix",
                    self.store
                ),
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
        let named = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'));
        if !named {
            return Err((
                "store",
                format!("`{bucket}` is not a bucket name (lowercase letters, digits, - and .)"),
            ));
        }
        let endpoint = match &self.endpoint {
            Some(endpoint) => {
                let parsed = reqwest::Url::parse(endpoint)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
                if parsed.is_none() {
                    return Err(("endpoint", format!("`{endpoint}` is not an http(s) URL")));
                }
                endpoint.clone()
            }
            None => format!("https://s3.{}.amazonaws.com", self.region),
        };
        let (Some(access_key_id), Some(secret_access_key)) =
            (&self.access_key_id, &self.secret_access_key)
        else {
            return Err((
                "access_key_id",
                "a bucket needs access_key_id and secret_access_key (as ${VARIABLES})".to_string(),
            ));
        };
        Ok(BucketConfig {
            endpoint,
            region: self.region.clone(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
            path_style: self.path_style.unwrap_or(self.endpoint.is_some()),
        })
    }

    /// What is wrong with the section, as (key, problem) pairs.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.store.trim().is_empty() {
            problems.push(("store", "must name a folder or an s3://bucket".to_string()));
        } else if let Some(Err((key, problem))) = self.bucket() {
            problems.push((key, problem));
        }
        for host in &self.send_hosts {
            let plain = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
            if !plain {
                problems.push((
                    "send_hosts",
                    format!("`{host}` is not a host name like cdn.shop.example (no scheme, path or port)"),
                ));
            }
        }
        if self.max_bytes == 0 {
            problems.push(("max_bytes", "must be above 0".to_string()));
        }
        if self.wait_ms > 120_000 {
            problems.push((
                "wait_ms",
                "must be at most 120000: a customer would wait longer than two minutes".to_string(),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(store: &str, extra: &str) -> MediaConfig {
        toml::from_str(&format!("store = \"{store}\"\n{extra}")).unwrap()
    }

    #[test]
    fn a_folder_is_no_bucket_and_a_bucket_needs_its_keys() {
        assert!(with("data/media", "").bucket().is_none());
        assert!(with("data/media", "").check().is_empty());
        let keys = "access_key_id = \"AK\"\nsecret_access_key = \"SK\"\n";
        let aws = with("s3://shop-media/prod", keys)
            .bucket()
            .unwrap()
            .unwrap();
        assert_eq!(aws.endpoint, "https://s3.us-east-1.amazonaws.com");
        assert_eq!(
            (aws.bucket.as_str(), aws.prefix.as_str()),
            ("shop-media", "prod")
        );
        assert!(!aws.path_style, "AWS addresses the bucket in the host");
        let minio = with(
            "s3://media",
            &format!("endpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-3\"\n{keys}"),
        )
        .bucket()
        .unwrap()
        .unwrap();
        assert!(minio.path_style && minio.prefix.is_empty());
        assert_eq!(minio.region, "eu-west-3");
        for (store, extra, key) in [
            ("s3://media", "", "access_key_id"),
            ("s3://Media_Bucket", keys, "store"),
            ("gs://media", keys, "store"),
            (
                "s3://media",
                "endpoint = \"ftp://x\"\naccess_key_id = \"a\"\nsecret_access_key = \"b\"",
                "endpoint",
            ),
        ] {
            let problems = with(store, extra).check();
            assert_eq!(problems.len(), 1, "{store}: {problems:?}");
            assert_eq!(problems[0].0, key, "{store}: {problems:?}");
        }
    }

    #[test]
    fn send_hosts_are_plain_host_names() {
        assert!(
            with("m", "send_hosts = [\"cdn.shop.example\"]")
                .check()
                .is_empty()
        );
        let problems = with("m", "send_hosts = [\"https://cdn.shop.example/\"]").check();
        assert_eq!(problems[0].0, "send_hosts");
    }
}
