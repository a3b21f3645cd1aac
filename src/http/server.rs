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
//! and the runtime, and [`RESERVE_CONNECTIONS`] plus [`OVERFLOW_CONNECTIONS`] more for
//! operators: a connection accepted past the cap is a reserve connection, which
//! answers one request, only `/health` or `/metrics` (anything else is 503
//! `OVERLOADED`), and closes. Past the reserve too, a new connection is closed at once
//! unless its first bytes, within 2 ms, are a health probe (the listener keeps draining
//! its backlog, so clients learn quickly instead of hanging).
//!
//! Connections are accepted on a thread of their own. A new connection whose first
//! request is `GET /health` or `GET /metrics` is answered there, so a health check is
//! answered promptly even when the runtime serving requests has thousands of busy
//! connections ahead of it; every other connection is handed to that runtime. Every
//! request except `/health` and `/metrics` passes the [`Shedder`] first.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
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
/// Connections past the cap and the reserve that are kept for at most 2 ms to see
/// whether they are health probes; past those, new connections are closed at once.
pub const OVERFLOW_CONNECTIONS: usize = 256;
/// How long a connection past the cap and the reserve may take to show that it is a
/// health probe. Short, because past the cap connections come fast (clients that were
/// closed reconnect at once) and each waiting one holds a place; a probe has usually
/// sent its request by the time it is accepted.
const OVERFLOW_PEEK_WAIT: Duration = Duration::from_millis(2);
/// How long the accept thread waits for a new connection's first bytes to see whether
/// it is a probe of `/health` or `/metrics`; a connection that says nothing by then is
/// handed to the workers.
const PROBE_PEEK_WAIT: Duration = Duration::from_millis(20);
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
///
/// Connections are accepted on a thread of their own (see the module docs), so that a
/// new connection is taken at once however busy the runtime serving requests is.
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
    let workers = Handle::current();
    let listener = listener.into_std()?;
    let (stop, stopping) = watch::channel(false);
    let (finished, accepted_all) = oneshot::channel();
    std::thread::Builder::new()
        .name("boxoffice-accept".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| runtime.block_on(accept(listener, shared, workers, stopping)));
            // `serve` may have been dropped; then nobody waits for this.
            let _ = finished.send(result);
        })?;
    shutdown.await;
    // The acceptor may have stopped already (its runtime failed to start); that is fine.
    let _ = stop.send(true);
    accepted_all
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the accept thread panicked")))
}

/// The accept loop, on its own thread's runtime: takes connections under the cap (or
/// in the reserve), answers `/health` and `/metrics` probes itself, hands every other
/// connection to `workers`, and at shutdown drains them all for at most the drain time.
async fn accept(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    workers: Handle,
    mut stopping: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let options = shared.options;
    let regular = Arc::new(Semaphore::new(connection_cap(options.connections_max)));
    let reserve = Arc::new(Semaphore::new(RESERVE_CONNECTIONS));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut last_refusal_warning: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            biased;
            // Stopped, or `serve` is gone: either way, stop taking connections.
            _ = stopping.changed() => break,
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
        let lanes = [
            (&regular, Lane::Regular),
            (&reserve, Lane::Reserve),
            (&overflow, Lane::Overflow),
        ];
        let Some((permit, lane)) = lanes
            .into_iter()
            .find_map(|(slots, lane)| Some((slots.clone().try_acquire_owned().ok()?, lane)))
        else {
            drop(stream);
            continue;
        };
        if lane == Lane::Overflow
            && last_refusal_warning.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY)
        {
            tracing::warn!(
                "at the connection cap and its reserve: closing new connections \
                 other than health probes"
            );
            last_refusal_warning = Some(Instant::now());
        }
        let connection = Connection {
            shared: shared.clone(),
            exempt_only: lane == Lane::Reserve,
            _permit: permit,
        };
        let stopping = stopping.clone();
        connections.spawn(triage(stream, connection, lane, workers.clone(), stopping));
    }
    drop(listener);
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

/// Where an accepted connection is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Under the cap: by the workers, or here if it is a probe.
    Regular,
    /// Past the cap: here, one request, `/health` or `/metrics` only (others get 503).
    Reserve,
    /// Past the reserve too: here if it is a probe, otherwise closed at once.
    Overflow,
}

/// Serves a connection whose first bytes ask for `/health` or `/metrics` right here on
/// the accept thread (one request, then it closes), serves a reserve connection here
/// too, closes an overflow connection that is not a probe, and hands the rest to
/// `workers`. Under overload the workers' runtime has thousands of connections ready
/// to run; a probe served here waits for none of them.
async fn triage(
    stream: TcpStream,
    mut connection: Connection,
    lane: Lane,
    workers: Handle,
    stopping: watch::Receiver<bool>,
) {
    let probe = match lane {
        Lane::Regular => is_probe(&stream, PROBE_PEEK_WAIT).await,
        Lane::Reserve => false,
        Lane::Overflow => is_probe(&stream, OVERFLOW_PEEK_WAIT).await,
    };
    if probe || lane == Lane::Reserve {
        connection.exempt_only = true;
        connection.run(stream, stopping).await;
        return;
    }
    if lane == Lane::Overflow {
        return;
    }
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!("could not hand a connection over: {e}");
            return;
        }
    };
    let served = workers.spawn(async move {
        match TcpStream::from_std(stream) {
            Ok(stream) => connection.run(stream, stopping).await,
            Err(e) => tracing::debug!("could not take a connection over: {e}"),
        }
    });
    // Stopping this task (at the end of the drain) stops the connection too.
    let mut served = AbortOnDrop(served);
    let _ = (&mut served.0).await;
}

/// Whether the connection's first bytes, if they come within `wait`, are a `GET` of a
/// path that is never shed.
async fn is_probe(stream: &TcpStream, wait: Duration) -> bool {
    let mut head = [0u8; 16];
    // `peek` waits for bytes, so the whole of it is under the wait.
    match tokio::time::timeout(wait, stream.peek(&mut head)).await {
        Ok(Ok(n)) => is_probe_head(&head[..n]),
        _ => false,
    }
}

/// Whether a request starts `GET /health` or `GET /metrics` (then a space or a query).
fn is_probe_head(head: &[u8]) -> bool {
    shed::EXEMPT_PATHS.iter().any(|path| {
        let line = head.strip_prefix(b"GET ").unwrap_or_default();
        line.strip_prefix(path.as_bytes())
            .and_then(|rest| rest.first())
            .is_some_and(|next| *next == b' ' || *next == b'?')
    })
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The connection cap that fits the process's open-file limit with headroom.
fn connection_cap(configured: usize) -> usize {
    let Some(limit) = open_files_limit() else {
        return configured;
    };
    let fits = limit
        .saturating_sub(FD_HEADROOM + RESERVE_CONNECTIONS + OVERFLOW_CONNECTIONS)
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
    /// Accepted past the cap, or a probe served on the accept thread: one request,
    /// `/health` or `/metrics` only.
    exempt_only: bool,
    /// Its place under the cap (or in the reserve), freed when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stopping: watch::Receiver<bool>) {
        // Small answers go out at once; the default delay only adds latency here.
        let _ = stream.set_nodelay(true);
        let options = self.shared.options;
        let first_head_timeout = if self.exempt_only {
            options.header_read_timeout.min(RESERVE_HEADER_READ_TIMEOUT)
        } else {
            options.header_read_timeout
        };
        let activity = Arc::new(Activity::new(
            first_head_timeout,
            options.keep_alive_timeout,
        ));
        let this = Arc::new(self);
        let service = hyper::service::service_fn({
            let this = this.clone();
            let activity = activity.clone();
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
        builder.keep_alive(!this.exempt_only);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        let idle = idle_past_deadline(&activity, activity.opened + first_head_timeout);
        let mut idle = std::pin::pin!(idle);
        let mut draining = false;
        loop {
            tokio::select! {
                // The connection first: a request that ends while it is polled sets
                // the deadline the idle timer then looks at.
                biased;
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                    return;
                }
                () = idle.as_mut() => {
                    tracing::debug!("closing a connection that sent no request in time");
                    return;
                }
                Ok(()) = stopping.changed(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        let exempt = shed::is_exempt(request.uri().path());
        if self.exempt_only && !exempt {
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

/// Resolves once the connection has waited past its deadline for a request head.
///
/// One timer per connection, armed at the deadline last seen: a request's end that
/// moves the deadline later costs nothing here (the timer fires, reads the new
/// deadline and waits again); one that moves it earlier (a keep-alive wait shorter
/// than the first head's) is seen when this is next polled, right after the
/// connection.
fn idle_past_deadline(activity: &Activity, first: Instant) -> impl Future<Output = ()> + '_ {
    let mut timer = Box::pin(tokio::time::sleep_until(first));
    let mut armed = first;
    std::future::poll_fn(move |cx| {
        loop {
            if let Some(deadline) = activity.deadline()
                && deadline < armed
            {
                armed = deadline;
                timer.as_mut().reset(deadline);
            }
            ready!(timer.as_mut().poll(cx));
            armed = match activity.deadline() {
                Some(deadline) if deadline <= Instant::now() => return Poll::Ready(()),
                Some(deadline) => deadline,
                // A request is being answered: its end starts the wait, which is at
                // least this long from now.
                None => Instant::now() + activity.keep_alive_timeout,
            };
            timer.as_mut().reset(armed);
        }
    })
}

/// When a connection must next show a request head by, kept where the requests can
/// set it without waking the connection's task: the task's timer fires at the
/// deadline it last saw and then reads the current one.
struct Activity {
    /// When the connection was taken; deadlines are counted from here.
    opened: Instant,
    /// Nanoseconds after `opened` by which the next request head must arrive, or
    /// [`Activity::BUSY`] while a request is being answered.
    deadline_nanos: AtomicU64,
    keep_alive_timeout: Duration,
}

impl Activity {
    /// A request is being answered: no deadline.
    const BUSY: u64 = u64::MAX;

    /// A connection opened now, whose first request head must arrive within
    /// `first_head_timeout`.
    fn new(first_head_timeout: Duration, keep_alive_timeout: Duration) -> Activity {
        Activity {
            opened: Instant::now(),
            deadline_nanos: AtomicU64::new(Self::nanos(first_head_timeout)),
            keep_alive_timeout,
        }
    }

    /// `after` in nanoseconds, short of [`Activity::BUSY`].
    fn nanos(after: Duration) -> u64 {
        u64::try_from(after.as_nanos()).map_or(Self::BUSY - 1, |n| n.min(Self::BUSY - 1))
    }

    /// When the next request head must have arrived; `None` while a request is being
    /// answered.
    fn deadline(&self) -> Option<Instant> {
        match self.deadline_nanos.load(Ordering::Acquire) {
            Self::BUSY => None,
            nanos => Some(self.opened + Duration::from_nanos(nanos)),
        }
    }
}

/// A request being answered; when it is done, the keep-alive wait starts.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Busy {
        activity
            .deadline_nanos
            .store(Activity::BUSY, Ordering::Release);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        let next = Instant::now() + activity.keep_alive_timeout;
        let nanos = Activity::nanos(next.saturating_duration_since(activity.opened));
        activity.deadline_nanos.store(nanos, Ordering::Release);
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
    fn only_a_get_of_health_or_metrics_is_a_probe() {
        assert!(is_probe_head(b"GET /health HTTP/1.1\r\n"));
        assert!(is_probe_head(b"GET /metrics HTTP"));
        assert!(is_probe_head(b"GET /health?x=1 "));
        assert!(!is_probe_head(b"GET /healthz HTTP/1.1"));
        assert!(!is_probe_head(b"POST /health HTTP/1.1"));
        assert!(!is_probe_head(b"GET /api/v1/concerts"));
        assert!(!is_probe_head(b"GET /heal"));
        assert!(!is_probe_head(b""));
    }

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
        if limit > FD_HEADROOM + RESERVE_CONNECTIONS + OVERFLOW_CONNECTIONS {
            let fits = limit - FD_HEADROOM - RESERVE_CONNECTIONS - OVERFLOW_CONNECTIONS;
            assert_eq!(connection_cap(usize::MAX), fits);
        }
        assert_eq!(connection_cap(1), 1);
    }
}
