//! `/metrics` after a known sequence of actions over HTTP, read with a real Prometheus
//! text parser: every counter equals the actions taken, histograms count what they
//! timed, and the exposition is valid (HELP and TYPE once per family, no series twice).
//! Also: request ids are echoed, made when missing, and named by 5xx problems.

mod common;

use common::Server;
use prometheus_parse::{Sample, Scrape, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Everything the test sent, by answer status.
#[derive(Default)]
struct Sent(BTreeMap<u16, u64>);

impl Sent {
    fn note(&mut self, answer: common::Answer) -> common::Answer {
        *self.0.entry(answer.status).or_default() += 1;
        answer
    }
}

async fn scrape_text(server: &Server) -> String {
    let response = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    response.text().await.unwrap()
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition text")
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    assert_eq!(matching.len(), 1, "one {name} {labels:?}: {matching:?}");
    match &matching[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
        Value::Summary(_) => panic!("no summaries here"),
    }
}

/// HELP and TYPE once per family, before its samples; no series twice.
fn assert_valid_exposition(text: &str) {
    let mut helped = HashSet::new();
    let mut typed = HashSet::new();
    let mut series = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_owned()), "HELP {name} twice");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(typed.insert(name.to_owned()), "TYPE {name} twice");
        } else if !line.is_empty() && !line.starts_with('#') {
            let key = line.rsplit_once(' ').unwrap().0;
            assert!(series.insert(key.to_owned()), "series {key} twice");
            let name = key.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
                .unwrap_or(name);
            assert!(typed.contains(family), "{name} comes before its TYPE");
        }
    }
    assert_eq!(helped, typed, "every family has HELP and TYPE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_actions_taken() {
    let server = Server::start().await;
    let mut sent = Sent::default();
    let (concert, date) = server.concert(1, 10, 100).await;
    sent.0.insert(201, 1);
    for user in 1..=3 {
        server.admit(concert, user).await;
    }
    *sent.0.entry(201).or_default() += 3;
    // Holds: three placed, two refused, one cancelled, one paid, one left to expire.
    let first = sent.note(server.hold(1, date, &[1, 2]).await).expect(201);
    sent.note(server.hold(2, date, &[1]).await)
        .assert_problem(409, "SEAT_UNAVAILABLE");
    sent.note(server.hold(9, date, &[5]).await)
        .assert_problem(403, "NOT_ADMITTED");
    let third = sent.note(server.hold(3, date, &[3]).await).expect(201);
    let id = third["id"].as_str().unwrap();
    sent.note(
        server
            .delete(3, &format!("/api/v1/reservations/{id}"))
            .await,
    )
    .expect(204);
    for _ in 0..2 {
        server.charge(1, 500).await;
    }
    *sent.0.entry(200).or_default() += 2;
    let paid = first["id"].as_str().unwrap();
    sent.note(server.pay(1, paid).await).expect(201);
    sent.note(server.hold(2, date, &[4]).await).expect(201);
    server.advance(301);
    // The date actor records the expiry on its next sweep (a quarter second).
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape_text(&server).await;
        *sent.0.entry(200).or_default() += 1;
        if value(&parse(&text), "boxoffice_holds_expired_total", &[]) == 1.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "the expiry is never counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The scrape that returned `text` was counted after it was written.
    *sent.0.entry(200).or_default() -= 1;
    assert_valid_exposition(&text);
    let scrape = parse(&text);
    let counter = |name: &str| value(&scrape, name, &[]);
    assert_eq!(counter("boxoffice_holds_placed_total"), 3.0);
    assert_eq!(counter("boxoffice_holds_cancelled_total"), 1.0);
    assert_eq!(counter("boxoffice_holds_expired_total"), 1.0);
    assert_eq!(counter("boxoffice_payments_total"), 1.0);
    assert_eq!(counter("boxoffice_payments_won_total"), 200.0);
    assert_eq!(counter("boxoffice_charges_total"), 2.0);
    assert_eq!(counter("boxoffice_charges_won_total"), 1000.0);
    for code in ["SEAT_UNAVAILABLE", "NOT_ADMITTED"] {
        let labels = [("code", code)];
        assert_eq!(
            value(&scrape, "boxoffice_holds_rejected_total", &labels),
            1.0
        );
    }
    let concert = concert.to_string();
    let room = |event| {
        let labels = [("concert", concert.as_str()), ("event", event)];
        value(&scrape, "boxoffice_queue_events_total", &labels)
    };
    assert_eq!(room("joined"), 3.0);
    assert_eq!(room("admitted"), 3.0);
    assert_eq!(room("completed"), 1.0);
    let date = date.to_string();
    let seats = |status| {
        let labels = [("date", date.as_str()), ("status", status)];
        value(&scrape, "boxoffice_seats", &labels)
    };
    assert_eq!(
        (seats("available"), seats("held"), seats("sold")),
        (8.0, 0.0, 2.0)
    );
    for (status, count) in &sent.0 {
        let labels = [("status", &*status.to_string())];
        let counted = value(&scrape, "boxoffice_http_responses_total", &labels);
        assert_eq!(counted, *count as f64, "answers with status {status}");
    }
    let timed = |class| {
        let labels = [("route", "/api/v1/reservations"), ("class", class)];
        value(
            &scrape,
            "boxoffice_http_request_duration_seconds_count",
            &labels,
        )
    };
    assert_eq!((timed("2xx"), timed("4xx")), (3.0, 2.0));
    // A histogram's +Inf bucket holds every observation.
    let labels = [("route", "/api/v1/reservations"), ("class", "2xx")];
    assert_eq!(
        value(&scrape, "boxoffice_http_request_duration_seconds", &labels),
        3.0
    );
    let problems = [("code", "SEAT_UNAVAILABLE")];
    assert_eq!(
        value(&scrape, "boxoffice_http_problems_total", &problems),
        1.0
    );
    // Store: every durable action went through at least one fsynced group commit.
    let committed = counter("boxoffice_events_committed_total");
    let batched = value(&scrape, "boxoffice_commit_batch_events_sum", &[]);
    assert_eq!(batched, committed, "every committed event was in one batch");
    assert!(counter("boxoffice_fsync_duration_seconds_count") >= 1.0);
    assert!(counter("boxoffice_log_bytes_total") > 0.0);
    assert_eq!(counter("boxoffice_write_path_up"), 1.0);
    for actor in ["date", "queue", "wallet"] {
        value(&scrape, "boxoffice_mailbox_messages", &[("actor", actor)]);
    }
}

#[tokio::test]
async fn a_request_id_is_echoed_or_made_and_a_5xx_names_it() {
    let mut server = Server::start().await;
    let health = |id: Option<&'static str>| {
        let request = server.http.get(format!("{}/health", server.base));
        match id {
            Some(id) => request.header("x-request-id", id),
            None => request,
        }
        .send()
    };
    let echoed = health(Some("abc-123")).await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
    let made = health(None).await.unwrap();
    let first = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    let made = health(None).await.unwrap();
    assert_ne!(made.headers()["x-request-id"], first.as_str());
    assert!(!first.is_empty());
    let answer = server.charge_unavailable("trace-me-7").await;
    assert_eq!(answer.body["requestId"], "trace-me-7");
    assert_eq!(answer.headers["x-request-id"], "trace-me-7");
    server.stop().await;
}
