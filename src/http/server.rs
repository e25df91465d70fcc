//! The accept loop of the one HTTP port, on hyper's HTTP/1 connections: a deadline for each
//! request's head (a client trickling its headers, a slow-loris, is disconnected), a cap on
//! the head's size (431), keep-alive, and a graceful stop. It serves the router it is given
//! and knows no route; the refusals hyper makes on its own are counted here. Each request
//! carries its connection's peer address (axum's `ConnectInfo<SocketAddr>`).

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Metrics;

/// The limits on a request's head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// How long a request's head may take to arrive, from the connection's start or the end
    /// of the previous response; an idle keep-alive connection is closed after as long.
    pub read_timeout: Duration,
    /// The largest head (request line and headers), in bytes. More than 100 headers is
    /// refused too (hyper's default, kept: setting it moves the headers to the heap).
    pub max_bytes: usize,
}

/// Serves `router` on `listener` until `shutdown` fires; then stops accepting, lets every
/// request in flight finish (idle connections are closed at once) and returns when the last
/// connection has ended. A head still arriving is bounded by its read timeout.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HeadLimits,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .max_header_size(limits.max_bytes)
        .keep_alive(true);
    // Each connection task holds a receiver; the stop waits until none is left.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e, &shutdown).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let spoke = Arc::new(AtomicBool::new(false));
        let io = TokioIo::new(Watched {
            stream,
            spoke: spoke.clone(),
        });
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            },
        );
        let connection = builder.serve_connection(io, TowerToHyperService::new(service));
        let (metrics, shutdown, open) = (metrics.clone(), shutdown.clone(), open_rx.clone());
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = shutdown.cancelled() => {
                    // Closes an idle connection now, a busy one after its response.
                    connection.as_mut().graceful_shutdown();
                    connection.as_mut().await
                }
            };
            if let Err(e) = ended {
                count_refusal(&metrics, &e, spoke.load(Ordering::Relaxed));
            }
            drop(open);
        });
    }
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
}

/// Counts a connection that hyper ended with an error, when the error is a refusal: a head
/// too large (hyper answered 431), malformed (400) or too slow (disconnected). A connection
/// that sent nothing before the timeout (a browser's preconnect) is not counted.
fn count_refusal(metrics: &Metrics, error: &hyper::Error, spoke: bool) {
    let reason = if error.is_parse_too_large() {
        "headers_too_large"
    } else if error.is_parse() {
        "malformed"
    } else if error.is_timeout() && spoke {
        "header_timeout"
    } else {
        tracing::debug!(error = %error, "connection ended");
        return;
    };
    metrics.http_refused(reason);
    tracing::debug!(reason, error = %error, "request refused before its handler");
}

/// Accepting failed: a connection reset before it was accepted is skipped; anything else
/// (out of file descriptors) is logged and waited out, as accepting again at once would
/// fail the same way.
async fn accept_failed(error: io::Error, shutdown: &CancellationToken) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "cannot accept a connection; trying again in 1 s");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => {}
        () = shutdown.cancelled() => {}
    }
}

/// A connection's socket, noting whether the client has sent anything: a head timeout on a
/// connection that sent bytes cut a request short; on one that never did, it closed a
/// connection opened ahead of need. (Keep-alive connections idle between requests are
/// closed by hyper without an error.)
struct Watched {
    stream: TcpStream,
    spoke: Arc<AtomicBool>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.spoke.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
