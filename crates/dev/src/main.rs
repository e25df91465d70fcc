//! `concierge-dev` (`cargo dev …`): the developer's tools beside the product, never in the
//! `concierge` command: the bench, the chaos run, and the demo merchant backend.

mod bench;
mod chaos;
mod gateway;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "concierge-dev",
    about = "Concierge's developer tools: bench, chaos run, demo shop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the demo merchant backend (catalogue, stock, orders by customer phone) that the
    /// default concierge.toml's tools call.
    DemoShop {
        #[arg(long, default_value = "127.0.0.1:8081")]
        bind: std::net::SocketAddr,
        /// The shop's data.
        #[arg(long, default_value = "examples/demo-shop.json")]
        data: PathBuf,
        /// The bearer token the gateway's tool calls carry (DEMO_SHOP_TOKEN, as in
        /// concierge.toml); `--token ''` accepts any caller.
        #[arg(long, env = "DEMO_SHOP_TOKEN", default_value = "demo-shop-token")]
        token: String,
        /// The shop's address as the customer's browser reaches it: the payment links the
        /// checkout answers point there.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        public_url: String,
        /// The gateway the payment page tells of payments and shipments.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        gateway_url: String,
        /// A service token of the gateway with the `events` scope (`concierge token create
        /// --service demo-shop --scope events`); without it the payment page tells nobody.
        #[arg(long, env = "DEMO_SHOP_EVENTS_TOKEN")]
        events_token: Option<String>,
    },
    /// Load a gateway process with signed WhatsApp webhooks (fake Graph API and LLM in this
    /// process) beside a plain axum handler, and print both and the ratio (BENCHMARKS.md).
    Bench(bench::Options),
    /// Kill a gateway process with SIGKILL every few hundred milliseconds while customers
    /// write (some webhooks twice), restart it, and print what was lost, processed twice,
    /// sent twice or answered out of order (zero in each column is the bar; exit 1 if not).
    Chaos(chaos::Options),
    /// The bench's baseline: an axum server whose one route answers 200.
    #[command(hide = true)]
    BenchPlain {
        #[arg(long)]
        bind: std::net::SocketAddr,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    concierge::telemetry::init_logs(concierge::telemetry::LogFormat::Human);
    // reqwest with rustls needs a process-wide crypto provider before its first client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::DemoShop {
            bind,
            data,
            token,
            public_url,
            gateway_url,
            events_token,
        } => {
            let checkout = concierge_testkit::demo_checkout::CheckoutSettings {
                public_url,
                gateway: events_token
                    .filter(|t| !t.is_empty())
                    .map(|t| (gateway_url, t)),
            };
            demo_shop(bind, &data, token, checkout).await
        }
        Command::Bench(options) => verdict("bench", bench::run(&options).await, |_| true),
        Command::Chaos(options) => verdict("chaos", chaos::run(&options).await, |rows| {
            rows.iter().all(chaos::Row::clean)
        }),
        Command::BenchPlain { bind } => {
            serve("the plain server", bind, bench::plain_router()).await
        }
    }
}

/// Success when `passed` says the tool's result is; its error printed under its name.
fn verdict<T, E: std::fmt::Display>(
    name: &str,
    result: Result<T, E>,
    passed: impl FnOnce(&T) -> bool,
) -> ExitCode {
    match result {
        Ok(result) if passed(&result) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `app` on `bind` until Ctrl-C.
async fn serve(what: &str, bind: std::net::SocketAddr, app: axum::Router) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what} stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo_shop(
    bind: std::net::SocketAddr,
    data: &std::path::Path,
    token: String,
    checkout: concierge_testkit::demo_checkout::CheckoutSettings,
) -> ExitCode {
    let shop = match concierge_testkit::demo_shop::Shop::load(data) {
        Ok(shop) => std::sync::Arc::new(shop),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let token = Some(token).filter(|t| !t.is_empty());
    if checkout.gateway.is_none() {
        tracing::warn!("no --events-token: the payment page will not tell the gateway of payments");
    }
    tracing::info!(%bind, data = %data.display(), "the demo shop is serving");
    serve(
        "the demo shop",
        bind,
        concierge_testkit::demo_shop::router_with(shop, token, checkout),
    )
    .await
}
