//! What the commands share: reading the configuration, an async runtime to run on, the store.

use std::future::Future;
use std::path::Path;

use anyhow::anyhow;
use concierge::config::Config;
use concierge::store::SharedStore;

/// Reads the configuration; the error lists every problem, one a line.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// The async runtime a command runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        // Worded as the error alone, without the chain `{:#}` would add under a context.
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))
}

/// Runs a command's work with the configured store, on its own runtime.
pub fn with_store<F, Fut, T>(config: &Config, work: F) -> anyhow::Result<T>
where
    F: FnOnce(SharedStore) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    runtime()?.block_on(async {
        let store = concierge::app::open_store(config).await?;
        work(store).await
    })
}
