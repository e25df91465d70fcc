//! `[media] retention_days`: every hour, files kept longer than that are deleted, on every
//! instance (deleting what another instance deleted already is no error).

use std::time::{Duration, SystemTime};

use crate::MediaStore;

/// How often the store is swept.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Sweeps `store` of what is older than `days` now and then every [`EVERY`], until `stop`
/// completes; `swept` hears how many files each sweep deleted.
pub async fn run(
    store: MediaStore,
    days: u32,
    stop: impl std::future::Future<Output = ()>,
    swept: impl Fn(usize),
) {
    let keep_for = Duration::from_secs(u64::from(days) * 24 * 3600);
    let sweeping = async {
        loop {
            if let Some(cutoff) = SystemTime::now().checked_sub(keep_for) {
                match store.sweep(cutoff).await {
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(files = n, days, "media past its retention deleted");
                        }
                        swept(n);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the media retention sweep failed; trying again later")
                    }
                }
            }
            tokio::time::sleep(EVERY).await;
        }
    };
    tokio::select! {
        () = sweeping => {}
        () = stop => {}
    }
}
