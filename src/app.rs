//! Wiring: recovers the data directory, starts the engine and builds the router from a
//! [`Config`], and serves them on an already bound listener (so tests can bind port 0
//! and run the real server).

use crate::cluster;
use crate::config::Config;
use crate::domain::UserId;
use crate::domain::catalog::{ConcertSpec, DateSpec, SectionSpec};
use crate::domain::ticket::TicketKey;
use crate::engine::Engine;
use crate::engine::clock::Clock;
use crate::engine::feed::Feed;
use crate::engine::journal::Journal;
use crate::engine::metrics::{EngineMetrics, EventCounter};
use crate::engine::seatmap::SeatMaps;
use crate::http::auth::Auth;
use crate::http::cluster::{ClusterGauges, ClusterView};
use crate::http::metrics::{HttpMetrics, LiveGauges};
use crate::http::server::ServeOptions;
use crate::http::{self, AppState, Observe};
use crate::outbox::{self, OutboxConfig};
use crate::store::{self, StoreError, StoreMetrics};
use axum::Router;
use prometheus_client::registry::Registry;
use rand::distr::{Alphanumeric, SampleString};
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How long the demo start's printed user tokens last.
pub const DEMO_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

/// A built application.
pub struct App {
    /// The HTTP routes.
    pub router: Router,
    /// The engine behind them.
    pub engine: Arc<Engine>,
    /// Request authentication (tests use it to make tokens).
    pub auth: Arc<Auth>,
    /// What a person starting the server should be told (demo keys and tokens).
    pub banner: Vec<String>,
    /// In cluster mode: becomes `true` once this node lost the leadership (or could
    /// not follow the log) and must start again to follow.
    pub deposed: Option<tokio::sync::watch::Receiver<bool>>,
}

/// A cluster node's parts, until the engine runs.
struct Clustered {
    view: ClusterView,
    node: cluster::Node,
    deposed: tokio::sync::watch::Receiver<bool>,
}

/// Recovers the data directory, starts the engine and builds the router. With neither
/// an admin key nor a JWT secret configured (the demo start) it uses the demo secrets
/// kept in the data directory (making them on the first start), tells them in the
/// banner with tokens for users 1 to 3, and creates a demo concert if the data
/// directory holds none.
pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<App, StoreError> {
    let rules = config.rules();
    let cluster_options = config.cluster().map_err(StoreError::Replicated)?;
    let store_metrics = Arc::new(StoreMetrics::default());
    let engine_metrics = Arc::new(EngineMetrics::default());
    let counter = Box::new(EventCounter(engine_metrics.clone()));
    let (opened, clustered) = match &cluster_options {
        None => {
            let opened = store::open(
                &config.store(),
                &rules,
                store_metrics.clone(),
                vec![counter],
            )?;
            (opened, None)
        }
        Some(options) => {
            let opened = cluster::open(
                options,
                &config.store(),
                &rules,
                store_metrics.clone(),
                vec![counter],
            )
            .await?;
            let view = ClusterView {
                leadership: opened.leadership,
                advertise_url: options.advertise_url.clone(),
            };
            let clustered = Clustered {
                view,
                node: opened.node,
                deposed: opened.deposed,
            };
            (opened.store, Some(clustered))
        }
    };
    let mut banner = vec![match &cluster_options {
        None => format!(
            "recovered {} up to event {} ({} replayed from the log)",
            config.data_dir.display(),
            opened.image.seq,
            opened.replayed
        ),
        Some(options) => format!(
            "replayed the log stream {} at {} up to event {}; following it as {}",
            options.log.stream, options.log.urls, opened.image.seq, options.advertise_url
        ),
    }];
    let demo =
        cluster_options.is_none() && config.admin_key.is_none() && config.jwt_secret.is_none();
    let (admin_key, jwt_secret) = if demo {
        let secrets = DemoSecrets::load_or_make(&config.data_dir)?;
        banner.push(format!("admin key: {}", secrets.admin_key));
        (secrets.admin_key, secrets.jwt_secret)
    } else {
        let admin_key = config.admin_key.clone().unwrap_or_else(|| {
            let key = random_secret();
            banner.push(format!("admin key: {key}"));
            key
        });
        let jwt_secret = config.jwt_secret.clone().unwrap_or_else(|| {
            let note = "JWT secret: generated for this run (set --jwt-secret to keep tokens valid)";
            banner.push(note.to_owned());
            random_secret()
        });
        (admin_key, jwt_secret)
    };
    let auth = Arc::new(
        Auth::new(&admin_key, &jwt_secret).with_scanner_key(config.scanner_key.as_deref()),
    );
    let ticket_secret = match &config.ticket_secret {
        Some(secret) => secret.clone(),
        None => load_or_make_ticket_secret(&config.data_dir)?,
    };
    let tickets = Arc::new(TicketKey::new(&ticket_secret));
    let journal = match &clustered {
        None => Journal::durable(opened.log.clone(), opened.snapshots.clone()),
        Some(clustered) => Journal::replicated(
            opened.log.clone(),
            opened.snapshots.clone(),
            clustered.view.leadership.clone(),
        ),
    };
    let engine = Engine::start(rules, clock, journal, opened.image, engine_metrics);
    let (cluster_view, deposed) = match clustered {
        None => (None, None),
        Some(clustered) => {
            clustered
                .node
                .spawn(engine.clone(), opened.log, opened.snapshots);
            (Some(clustered.view), Some(clustered.deposed))
        }
    };
    // Unless the operator set the JWT secret, nobody else can sign tokens: tell some.
    if config.jwt_secret.is_none() {
        for user in 1..=3 {
            let token = auth.token(UserId(user), DEMO_TOKEN_TTL_SECS);
            banner.push(format!("token for user {user}: {token}"));
        }
    }
    if demo && engine.concerts().is_empty() {
        match engine.create_concert(demo_concert(engine.now())).await {
            Ok(entry) => banner.push(format!(
                "demo concert {}: {:?}",
                entry.concert.id, entry.concert.title
            )),
            Err(e) => tracing::warn!("could not create the demo concert: {e}"),
        }
    }
    let observe = Arc::new(Observe {
        enabled: !config.unobserved,
        slow_request: std::time::Duration::from_millis(config.slow_request_ms),
        metrics: HttpMetrics::default(),
    });
    let mut registry = Registry::default();
    observe.metrics.register(&mut registry);
    engine.metrics().register(&mut registry);
    store_metrics.register(&mut registry);
    registry.register_collector(Box::new(LiveGauges::new(engine.clone())));
    if let Some(cluster) = &cluster_view {
        let gauges = ClusterGauges(cluster.leadership.clone());
        registry.register_collector(Box::new(gauges));
    }
    // A cluster node's data directory holds no log segments: its feed reads the tail.
    let log_dir = cluster_view.is_none().then(|| config.data_dir.clone());
    let feed = Feed::new(opened.tail, log_dir, engine.reservation_index().clone());
    let outbox = config.events_nats_url.as_ref().map(|url| {
        let outbox = OutboxConfig {
            url: url.clone(),
            stream: config.events_nats_stream.clone(),
            subject_prefix: config.events_nats_subject_prefix.clone(),
            replicas: usize::from(config.events_nats_replicas),
        };
        let status = outbox::spawn(outbox, feed.clone());
        status.register(&mut registry);
        status
    });
    // Before the server takes requests: the maps start from the views as they are now.
    let seat_maps = SeatMaps::start(engine.clone(), feed.clone());
    let state = AppState::new(http::Handles {
        engine: engine.clone(),
        auth: auth.clone(),
        tickets,
        observe,
        registry: Arc::new(registry),
        feed,
        outbox,
        seat_maps,
        demo,
        cluster: cluster_view,
    });
    let router = http::router(state);
    Ok(App {
        router,
        engine,
        auth,
        banner,
        deposed,
    })
}

impl App {
    /// Stops the write path after what is queued, with a final snapshot. Call it once
    /// the server has stopped taking requests.
    pub async fn shutdown(&self) {
        self.engine.journal().stop().await;
    }
}

/// Serves `router` on `listener` with the default connection limits and timeouts
/// until `shutdown` resolves, then lets in-flight requests finish (for at most the
/// default drain time).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServeOptions::default(), shutdown).await
}

/// Serves `router` on `listener` with these limits and timeouts until `shutdown`
/// resolves, then drains for at most `options.drain_timeout` (see
/// [`crate::http::server`]).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http::server::serve(listener, router, options, shutdown).await
}

/// The demo start's secrets, kept in the data directory so that a restarted demo keeps
/// its admin key and its users' tokens. Never used when either secret is configured.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DemoSecrets {
    admin_key: String,
    jwt_secret: String,
}

impl DemoSecrets {
    const FILE: &str = "demo-secrets.json";

    fn load_or_make(dir: &Path) -> Result<DemoSecrets, StoreError> {
        let path = dir.join(Self::FILE);
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(secrets) = serde_json::from_slice(&bytes)
        {
            return Ok(secrets);
        }
        let secrets = DemoSecrets {
            admin_key: random_secret(),
            jwt_secret: random_secret(),
        };
        let json = serde_json::to_vec_pretty(&secrets).expect("two strings serialize");
        write_private(&path, &json)?;
        Ok(secrets)
    }
}

/// The file that keeps the ticket secret when none is configured.
const TICKET_SECRET_FILE: &str = "ticket-secret";

/// The ticket secret kept in the data directory, made on the first start: ticket codes
/// must verify after a restart, demo or not.
fn load_or_make_ticket_secret(dir: &Path) -> Result<String, StoreError> {
    let path = dir.join(TICKET_SECRET_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(text.trim().to_owned());
    }
    let secret = random_secret();
    write_private(&path, secret.as_bytes())?;
    Ok(secret)
}

/// Writes a file only its owner can read, and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(StoreError::io(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(StoreError::io(path))
}

fn random_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// A concert to try the API with: one date a month from now, 400 seats in two sections.
pub fn demo_concert(now: crate::domain::Timestamp) -> ConcertSpec {
    let starts_at = (now + chrono::Duration::days(30))
        .date_naive()
        .and_hms_opt(19, 0, 0)
        .expect("19:00 exists")
        .and_utc();
    let section = |name: &str, price| SectionSpec {
        name: name.into(),
        rows: 10,
        seats_per_row: 20,
        price,
    };
    ConcertSpec {
        title: "Winter Tour".into(),
        venue: "Olympic Hall".into(),
        dates: vec![DateSpec {
            starts_at,
            sections: vec![section("R", 150_000), section("S", 100_000)],
        }],
    }
}
