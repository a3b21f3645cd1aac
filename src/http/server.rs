//! Serving connections: HTTP/1.1 on a bound listener, with the limits that keep slow or
//! idle clients from holding the process's file handles, and a shutdown that ends in
//! bounded time whatever the clients do.
//!
//! Per connection:
//! - a new connection must send its first request's whole head within
//!   `header_read_timeout`, or it is closed (a socket that sends nothing, or half a
//!   header, is gone after that);
//! - a request's body must arrive whole within `body_read_timeout` of its head; a late
//!   body ends the request with 408 `REQUEST_TIMEOUT` and the connection is closed;
//! - after a response, the next request's whole head must arrive within
//!   `keep_alive_timeout`, or the connection is closed.
//!
//! At most `connections_max` connections are open at once, lowered at start so that
//! the process's open-file limit keeps [`FD_HEADROOM`] handles for the log, snapshots
//! and the runtime, and [`RESERVE_CONNECTIONS`] more for operators: a connection
//! accepted past the cap is a reserve connection, which answers one request, only
//! `/health` or `/metrics` (anything else is 503 `OVERLOADED`), and closes. Past the
//! reserve too, a new connection is closed at once (the listener keeps draining its
//! backlog, so clients learn quickly instead of hanging).
//!
//! Every request except `/health` and `/metrics` passes the [`Shedder`] first.
//!
//! On shutdown the listener closes, every connection is asked to finish its request in
//! flight and close, and after `drain_timeout` the ones still open are dropped.
//! [`serve`] then returns, so the caller can write the final snapshot and exit.

use super::shed::{self, Shedder};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// Default of `--header-read-timeout-ms`.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Default of `--body-read-timeout-ms`.
pub const BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Default of `--keep-alive-timeout-ms`.
pub const KEEP_ALIVE_TIMEOUT_MS: u64 = 30_000;
/// Default of `--max-connections`.
pub const CONNECTIONS_MAX: usize = 10_000;
/// Default of `--shutdown-drain-ms`.
pub const DRAIN_TIMEOUT_MS: u64 = 5_000;
/// Default of `--max-requests-in-flight`.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 256;
/// Default of `--shed-wait-ms`.
pub const SHED_WAIT_MS: u64 = 10;

/// File handles kept free below the open-file limit for the log, snapshots, the
/// listener, the runtime and standard streams.
pub const FD_HEADROOM: usize = 64;
/// Connections accepted past the cap for `/health` and `/metrics` only.
pub const RESERVE_CONNECTIONS: usize = 32;
/// Longest a reserve connection may take to send its request head.
const RESERVE_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file handles, say) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Least time between two warnings that connections are being refused.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Connection limits, timeouts and shedding (from the command line, see `Config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Longest wait for a new connection's first request head.
    pub header_read_timeout: Duration,
    /// Longest a request body may take to arrive, from its head.
    pub body_read_timeout: Duration,
    /// Longest wait after a response for the next request head.
    pub keep_alive_timeout: Duration,
    /// Most connections open at once (lowered to fit the open-file limit).
    pub connections_max: usize,
    /// Longest wait at shutdown for requests in flight.
    pub drain_timeout: Duration,
    /// Most requests handled at once; more wait, then are shed.
    pub requests_in_flight_max: usize,
    /// Longest a request waits for a place among those in flight.
    pub shed_wait: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_millis(HEADER_READ_TIMEOUT_MS),
            body_read_timeout: Duration::from_millis(BODY_READ_TIMEOUT_MS),
            keep_alive_timeout: Duration::from_millis(KEEP_ALIVE_TIMEOUT_MS),
            connections_max: CONNECTIONS_MAX,
            drain_timeout: Duration::from_millis(DRAIN_TIMEOUT_MS),
            requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX,
            shed_wait: Duration::from_millis(SHED_WAIT_MS),
        }
    }
}

/// A request body that did not arrive within `body_read_timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyReadTimeout;

/// What every connection shares.
struct Shared {
    router: Router,
    shedder: Shedder,
    options: ServeOptions,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains for at most
/// `options.drain_timeout` and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        router,
        shedder: Shedder::new(options.requests_in_flight_max, options.shed_wait),
        options,
    });
    let regular = Arc::new(Semaphore::new(connection_cap(options.connections_max)));
    let reserve = Arc::new(Semaphore::new(RESERVE_CONNECTIONS));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut last_refusal_warning: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!("accept error: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let (permit, is_reserve) = match regular.clone().try_acquire_owned() {
            Ok(permit) => (permit, false),
            Err(_) => match reserve.clone().try_acquire_owned() {
                Ok(permit) => (permit, true),
                Err(_) => {
                    if last_refusal_warning.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
                        tracing::warn!(
                            "at the connection cap and its reserve: closing new connections"
                        );
                        last_refusal_warning = Some(Instant::now());
                    }
                    drop(stream);
                    continue;
                }
            },
        };
        let connection = Connection {
            shared: shared.clone(),
            is_reserve,
            _permit: permit,
        };
        connections.spawn(connection.run(stream, stopping.clone()));
    }
    drop(listener);
    // Nobody may be listening any more; that is fine.
    let _ = stop.send(true);
    let drained = tokio::time::timeout(options.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} connections still open after the drain; closing them",
            connections.len()
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// The connection cap that fits the process's open-file limit with headroom.
fn connection_cap(configured: usize) -> usize {
    let Some(limit) = open_files_limit() else {
        return configured;
    };
    let fits = limit
        .saturating_sub(FD_HEADROOM + RESERVE_CONNECTIONS)
        .max(1);
    if configured > fits {
        tracing::warn!(
            "--max-connections {configured} does not fit the open-file limit {limit}; \
             using {fits} (raise the limit with `ulimit -n`)"
        );
        fits
    } else {
        configured
    }
}

/// The soft limit on open files, where the system tells it (Linux).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

/// One accepted connection.
struct Connection {
    shared: Arc<Shared>,
    /// Accepted past the cap: one request, `/health` or `/metrics` only.
    is_reserve: bool,
    /// Its place under the cap (or in the reserve), freed when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stopping: watch::Receiver<bool>) {
        // Small answers go out at once; the default delay only adds latency here.
        let _ = stream.set_nodelay(true);
        let options = self.shared.options;
        let first_head_timeout = if self.is_reserve {
            options.header_read_timeout.min(RESERVE_HEADER_READ_TIMEOUT)
        } else {
            options.header_read_timeout
        };
        let (deadline, mut deadline_changed) =
            watch::channel(Some(Instant::now() + first_head_timeout));
        let activity = Arc::new(Activity {
            deadline,
            keep_alive_timeout: options.keep_alive_timeout,
        });
        let this = Arc::new(self);
        let service = hyper::service::service_fn({
            let this = this.clone();
            move |request| {
                let busy = Busy::start(activity.clone());
                let this = this.clone();
                async move {
                    let response = this.respond(request).await;
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.keep_alive(!this.is_reserve);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        let mut draining = false;
        loop {
            let deadline = *deadline_changed.borrow_and_update();
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                    return;
                }
                () = sleep_until(deadline) => {
                    tracing::debug!("closing a connection that sent no request in time");
                    return;
                }
                Ok(()) = deadline_changed.changed() => {}
                Ok(()) = stopping.changed(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        let exempt = shed::is_exempt(request.uri().path());
        if self.is_reserve && !exempt {
            return shed::overloaded();
        }
        let _slot = if exempt {
            None
        } else {
            match self.shared.shedder.admit().await {
                Some(slot) => Some(slot),
                None => return shed::overloaded(),
            }
        };
        let deadline = Instant::now() + self.shared.options.body_read_timeout;
        let request = request.map(|body| Body::new(DeadlineBody::new(body, deadline)));
        match self.shared.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// When a connection must next show a request head by: set while it waits for one,
/// `None` while a request is being answered.
struct Activity {
    deadline: watch::Sender<Option<Instant>>,
    keep_alive_timeout: Duration,
}

/// A request being answered; when it is done, the keep-alive wait starts.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Busy {
        activity.deadline.send_replace(None);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let next = Instant::now() + self.0.keep_alive_timeout;
        self.0.deadline.send_replace(Some(next));
    }
}

/// A request body that fails with [`BodyReadTimeout`] once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Made on the first wait, so bodies read at once (or never) cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, deadline: Instant) -> Self {
        DeadlineBody {
            inner,
            deadline,
            timer: None,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyReadTimeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }

    #[test]
    fn a_cap_above_the_open_files_limit_is_lowered_to_fit() {
        let Some(limit) = open_files_limit() else {
            return;
        };
        if limit > FD_HEADROOM + RESERVE_CONNECTIONS {
            let fits = limit - FD_HEADROOM - RESERVE_CONNECTIONS;
            assert_eq!(connection_cap(usize::MAX), fits);
        }
        assert_eq!(connection_cap(1), 1);
    }
}
