//! Helpers for the event feed: a concurrent run that acknowledges known actions, and
//! the whole feed read page by page.

use super::Server;
use futures::future::join_all;
use serde_json::Value;
use std::sync::Arc;

/// What a concurrent run acknowledged.
#[derive(Default)]
pub struct Acknowledged {
    pub holds: Vec<String>,
    pub charges: Vec<String>,
    pub payments: Vec<(String, String)>,
}

/// `users` users at once: each charges, holds two seats of their own, holds a third,
/// and pays the first hold.
pub async fn concurrent_run(server: &Arc<Server>, users: u64) -> Acknowledged {
    let (concert, date) = server.concert(4, 25, 100).await;
    for user in 1..=users {
        server.admit(concert, user).await;
    }
    let runs = (1..=users).map(|user| {
        let server = server.clone();
        tokio::spawn(async move {
            let mut ack = Acknowledged::default();
            let charge = server.charge(user, 1000).await;
            ack.charges
                .push(charge["chargeId"].as_str().unwrap().to_owned());
            let seat = user * 3;
            let held = server.hold(user, date, &[seat, seat + 1]).await.expect(201);
            let id = held["id"].as_str().unwrap().to_owned();
            ack.holds.push(id.clone());
            let held = server.hold(user, date, &[seat + 2]).await.expect(201);
            ack.holds.push(held["id"].as_str().unwrap().to_owned());
            let paid = server.pay(user, &id).await.expect(201);
            ack.payments
                .push((id, paid["id"].as_str().unwrap().to_owned()));
            ack
        })
    });
    let mut all = Acknowledged::default();
    for ack in join_all(runs).await {
        let ack = ack.unwrap();
        all.holds.extend(ack.holds);
        all.charges.extend(ack.charges);
        all.payments.extend(ack.payments);
    }
    all
}

/// The whole feed, read a page of `page` events at a time.
pub async fn read_all(server: &Server, page: usize) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let query = match &after {
            Some(cursor) => format!("?after={cursor}&limit={page}"),
            None => format!("?limit={page}"),
        };
        let body = server
            .admin_get(&format!("/api/v1/admin/events{query}"))
            .await
            .expect(200);
        let batch = body["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            assert_eq!(body["next"].as_str(), after.as_deref());
            return events;
        }
        after = Some(body["next"].as_str().unwrap().to_owned());
        assert_eq!(after.as_deref(), batch.last().unwrap()["cursor"].as_str());
        events.extend(batch);
    }
}
