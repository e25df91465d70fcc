//! Media kept in an S3-compatible bucket (moto standing in for S3): the store's operations
//! against a real S3 server over HTTP, and a gateway whose customers' photos go there, seen
//! by the concierge from it; the kill test on Redis keeps its photos there too (kill.rs).
//! And retention: what is kept longer than `[media] retention_days` is deleted.

use bytes::Bytes;

use concierge::domain::Secret;
use concierge::domain::{ConversationId, KeptMedia, MediaKind};
use concierge::media::{BucketConfig, MediaStore, Variant};
use concierge_testkit::moto::{self, TestBucket};

/// A fresh bucket, or `None` after saying why the test did not run.
pub(crate) async fn bucket(test: &str) -> Option<TestBucket> {
    crate::helpers::init();
    match moto::bucket().await {
        Ok(bucket) => Some(bucket),
        Err(why) => {
            crate::skip::skipped(test, &[moto::REQUIRE], &why);
            None
        }
    }
}

fn config(bucket: &TestBucket, prefix: &str) -> BucketConfig {
    BucketConfig {
        endpoint: bucket.endpoint.clone(),
        region: "us-east-1".into(),
        bucket: bucket.name.clone(),
        prefix: prefix.into(),
        access_key_id: Secret::new("testing"),
        secret_access_key: Secret::new("testing"),
        path_style: true,
    }
}

fn conversation(n: u8) -> ConversationId {
    ConversationId::parse(format!("{n:02x}").repeat(16)).unwrap()
}

#[tokio::test]
async fn the_store_keeps_reads_and_links_media_in_a_bucket() {
    let Some(bucket) = bucket("the_store_keeps_reads_and_links_media_in_a_bucket").await else {
        return;
    };
    let store =
        MediaStore::in_bucket(&config(&bucket, "media"), 16 << 20, reqwest::Client::new()).unwrap();
    let photo = crate::media::png(2000, 1000);
    let stored = store
        .keep(Bytes::from(photo.clone()), MediaKind::Image)
        .await
        .unwrap();
    assert_eq!((stored.width, stored.height), (Some(2000), Some(1000)));
    // Kept once, under the prefix, by its hash; the copies beside it.
    let again = store
        .keep(Bytes::from(photo.clone()), MediaKind::Image)
        .await
        .unwrap();
    assert_eq!(again, stored);
    let keys = bucket.keys("media/").await;
    let id = stored.id.as_str();
    for wanted in [
        format!("media/blobs/{}/{id}", &id[..2]),
        format!("media/meta/{}/{id}.json", &id[..2]),
        format!("media/llm/{}/{id}", &id[..2]),
        format!("media/thumb/{}/{id}", &id[..2]),
    ] {
        assert!(keys.contains(&wanted), "{wanted} not in {keys:?}");
    }
    let (original, mime) = store
        .read(&stored.id, Variant::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (original.as_ref(), mime.as_str()),
        (photo.as_slice(), "image/png")
    );
    let (thumb, mime) = store
        .read(&stored.id, Variant::Thumbnail)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mime, "image/jpeg");
    assert!(thumb.len() < photo.len());

    // Links per conversation, listed back (more than one page of listing is not needed
    // here: moto pages at 1,000).
    assert!(!store.linked(&stored.id, &conversation(1)).await.unwrap());
    store.link(&stored.id, &conversation(1)).await.unwrap();
    store.link(&stored.id, &conversation(2)).await.unwrap();
    store.link(&stored.id, &conversation(2)).await.unwrap();
    assert!(store.linked(&stored.id, &conversation(1)).await.unwrap());
    let mut holders = store.conversations(&stored.id).await.unwrap();
    holders.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(holders, [conversation(1), conversation(2)]);

    // Retention: nothing is older than a day; everything is older than a minute from now.
    let day = std::time::Duration::from_secs(24 * 3600);
    let now = std::time::SystemTime::now();
    assert_eq!(store.sweep(now - day).await.unwrap(), 0);
    let other = store
        .keep(Bytes::from(crate::media::png(20, 20)), MediaKind::Image)
        .await
        .unwrap();
    let later = now + std::time::Duration::from_secs(60);
    assert_eq!(store.sweep(later).await.unwrap(), 2);
    for id in [&stored.id, &other.id] {
        assert!(store.stored(id).await.unwrap().is_none());
        assert!(store.conversations(id).await.unwrap().is_empty());
    }
    assert!(bucket.keys("media/").await.is_empty(), "every object gone");

    // What is not there is none, not an error; a bucket that is not there is an error.
    let missing = concierge::domain::MediaId::parse(&"0".repeat(64)).unwrap();
    assert!(store.stored(&missing).await.unwrap().is_none());
    assert!(
        store
            .read(&missing, Variant::Original)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.conversations(&missing).await.unwrap().is_empty());
    let mut gone = config(&bucket, "media");
    gone.bucket = "no-such-bucket-here".into();
    let nowhere = MediaStore::in_bucket(&gone, 16 << 20, reqwest::Client::new()).unwrap();
    let refused = nowhere.keep(Bytes::from(photo), MediaKind::Image).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn a_gateway_keeps_a_customers_photo_in_the_bucket_and_the_concierge_sees_it() {
    let Some(bucket) =
        bucket("a_gateway_keeps_a_customers_photo_in_the_bucket_and_the_concierge_sees_it").await
    else {
        return;
    };
    let extra = format!(
        "{}\n[media]\nwait_ms = 60000\nstore = \"s3://{}/shop\"\nendpoint = \"{}\"\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
        crate::handoff::PEOPLE,
        bucket.name,
        bucket.endpoint
    );
    let a = crate::agents::start("openai", &extra).await;
    let photo = crate::media::png(900, 600);
    a.graph
        .serve_media("700000000000090", "image/png", photo.clone());
    a.llm.script(vec![crate::fake_llm::text("I can see it.")]);
    a.whatsapp_media("wamid.S3", "image", "700000000000090", Some("the crack"))
        .await;
    crate::helpers::eventually("the photo is kept and answered", || async {
        a.graph
            .sends()
            .iter()
            .any(|s| s["text"]["body"] == "I can see it.")
    })
    .await;
    let conversation = a.wa_conversation().await;
    let messages = a
        .app
        .store()
        .recent_messages(&conversation, 5)
        .await
        .unwrap();
    let stored = messages
        .iter()
        .find_map(|m| match &m.content {
            concierge::domain::Content::Media {
                kept: Some(KeptMedia::Stored(stored)),
                ..
            } => Some(stored.clone()),
            _ => None,
        })
        .expect("the photo is kept");
    let keys = bucket.keys("shop/").await;
    let id = stored.id.as_str();
    assert!(
        keys.contains(&format!("shop/blobs/{}/{id}", &id[..2])),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("shop/refs/{id}/{conversation}")),
        "{keys:?}"
    );
    assert!(
        !a.app.deployment.path().join("data/media").exists(),
        "nothing kept on this machine"
    );
    let ana = crate::handoff::Api::new(&a, "ana").await;
    let got = reqwest::Client::new()
        .get(a.app.url(&format!("/api/v1/media/{id}")))
        .bearer_auth(&ana.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), photo.as_slice());
}

/// `[media] retention_days`: a gateway deletes what it kept longer ago at its start and
/// hourly after, counted; what is younger stays.
#[tokio::test]
async fn a_gateway_deletes_media_past_its_retention() {
    crate::helpers::init();
    let deployment = crate::helpers::Deployment::new("[media]\nretention_days = 30\n");
    let folder = deployment.path().join("data/media");
    let store = MediaStore::in_folder(&folder, 16 << 20).unwrap();
    let old = store
        .keep(Bytes::from(crate::media::png(30, 30)), MediaKind::Image)
        .await
        .unwrap();
    let young = store
        .keep(Bytes::from(crate::media::png(31, 30)), MediaKind::Image)
        .await
        .unwrap();
    let id = old.id.as_str();
    std::fs::File::options()
        .write(true)
        .open(folder.join(format!("meta/{}/{id}.json", &id[..2])))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(31 * 24 * 3600))
        .unwrap();
    let app = crate::helpers::spawn_in(deployment, concierge::app::Parts::default()).await;
    crate::helpers::eventually("the old file is swept", || async {
        crate::helpers::metric(&app.metrics().await, "concierge_media_swept_total", "") == 1.0
    })
    .await;
    assert!(store.stored(&old.id).await.unwrap().is_none());
    assert!(store.stored(&young.id).await.unwrap().is_some());
}
