//! The accept loop of the one HTTP port, on hyper's HTTP/1 connections: a cap on the
//! connections open at once (503 past it), a deadline for each request's head (a client
//! trickling its headers, a slow-loris, is disconnected), a cap on the head's size (431), a
//! deadline for each write (a client that stopped reading is disconnected, which ends its
//! live stream), keep-alive, and a graceful stop. It serves the router it is given and knows
//! no route; the refusals hyper makes on its own are counted here. Each request carries
//! its connection's peer address (axum's `ConnectInfo<SocketAddr>`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use concierge_telemetry::Metrics;

/// The limits on a connection and on each request's head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// How long a request's head may take to arrive, from the connection's start or the end
    /// of the previous response; an idle keep-alive connection is closed after as long.
    pub read_timeout: Duration,
    /// The largest head (request line and headers), in bytes. More than 100 headers is
    /// refused too (hyper's default, kept: setting it moves the headers to the heap).
    pub max_bytes: usize,
    /// The most connections open at once; past it a new one is answered 503 and closed.
    pub max_connections: usize,
    /// How long a write may wait for the client to read before the connection is closed.
    pub write_timeout: Duration,
}

/// The answer to a connection past `max_connections`, written before any request is read.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many connections\n";
/// How long a refused connection is given to take its 503.
const BUSY_WRITE: Duration = Duration::from_secs(2);
/// The most refusals being written at once; past it a connection is closed unanswered.
const BUSY_AT_ONCE: usize = 256;

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
    let connections = Arc::new(AtomicUsize::new(0));
    let refusing = Arc::new(AtomicUsize::new(0));
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
        if connections.load(Ordering::Relaxed) >= limits.max_connections {
            refuse(stream, &refusing, &metrics);
            continue;
        }
        let spoke = Arc::new(AtomicBool::new(false));
        let io = TokioIo::new(Watched {
            stream,
            spoke: spoke.clone(),
            write_timeout: limits.write_timeout,
            stalled: None,
            metrics: metrics.clone(),
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
        let counted = Counted::new(&connections, &metrics);
        tokio::spawn(async move {
            let _counted = counted;
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

/// One open connection, counted while it lives.
struct Counted {
    open: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl Counted {
    fn new(open: &Arc<AtomicUsize>, metrics: &Metrics) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        metrics.connections_open(1);
        Self {
            open: open.clone(),
            metrics: metrics.clone(),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.metrics.connections_open(-1);
    }
}

/// Answers a connection past `max_connections` with a 503 and closes it, in a task of its
/// own bounded in time; past [`BUSY_AT_ONCE`] refusals in flight, closes it unanswered.
fn refuse(mut stream: TcpStream, refusing: &Arc<AtomicUsize>, metrics: &Metrics) {
    metrics.http_refused("too_many_connections");
    if refusing.fetch_add(1, Ordering::Relaxed) >= BUSY_AT_ONCE {
        refusing.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let refusing = refusing.clone();
    tokio::spawn(async move {
        let answered = async {
            stream.write_all(BUSY).await?;
            stream.shutdown().await?;
            // Reads what the client sent until it closes, so that closing with unread
            // bytes does not reset the connection before the client has read the 503.
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        };
        let _ = tokio::time::timeout(BUSY_WRITE, answered).await;
        refusing.fetch_sub(1, Ordering::Relaxed);
    });
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
    /// How long a write may stay blocked on a client that does not read.
    write_timeout: Duration,
    /// Running while a write is blocked.
    stalled: Option<Pin<Box<Sleep>>>,
    metrics: Metrics,
}

impl Watched {
    /// A write that cannot go on (the client's window is full) arms the write deadline; one
    /// that does disarms it. Past the deadline the write fails, and hyper closes the
    /// connection, dropping the response body (a live stream ends there). The deadline's
    /// timer wakes the connection, so it fires even though nothing else will.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.stalled = None;
        self.metrics.write_timeout();
        tracing::debug!("a client stopped reading; closing its connection");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        )))
    }
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
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.deadline(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.deadline(cx, polled)
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
