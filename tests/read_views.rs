//! Reads served from the views never see a half-published change: a date's
//! seatsAvailable stays within 0..=seats, however many expiries one batch records.

use boxoffice::config::Config;
use boxoffice::domain::catalog::{ConcertSpec, DateSpec, SectionSpec};
use boxoffice::domain::{SeatId, UserId};
use boxoffice::engine::Engine;
use boxoffice::engine::clock::ManualClock;
use chrono::TimeZone;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seats_available_never_exceeds_seats_total() {
    let worst = Arc::new(AtomicU32::new(0));
    let mut trials = 0;
    for _ in 0..500 {
        trials += 1;
        let clock = Arc::new(ManualClock::new(
            chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
        ));
        let mut rules = Config::default().rules();
        rules.queue.active_max = 10;
        let engine = Engine::in_memory(rules, clock.clone());
        let spec = ConcertSpec {
            title: "t".into(),
            venue: "v".into(),
            dates: vec![DateSpec {
                starts_at: clock_now(&engine),
                sections: vec![SectionSpec {
                    name: "A".into(),
                    rows: 1,
                    seats_per_row: 12,
                    price: 0,
                }],
            }],
        };
        let concert = engine.create_concert(spec).await.unwrap().concert.id;
        let date = engine.concert(concert).unwrap().dates[0].view.date.id;
        for u in 1..=3u64 {
            engine.join_queue(concert, UserId(u)).await.unwrap();
            let seats = (0..4).map(|i| SeatId((u as u32 - 1) * 4 + i + 1)).collect();
            let r = engine.hold(UserId(u), date, seats).await.unwrap();
            let _ = r;
            clock.advance(Duration::from_secs(1));
        }
        clock.advance(Duration::from_secs(400)); // every hold lapsed, none recorded
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (engine, stop, worst, concert) =
                (engine.clone(), stop.clone(), worst.clone(), concert);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let entry = engine.concert(concert).unwrap();
                    let n = entry.dates[0].view.seats_available(engine.now());
                    worst.fetch_max(n, Ordering::Relaxed);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Any message makes the date actor record the three expiries in one batch.
        let first = engine.reservations(UserId(1))[0].id;
        engine.cancel(UserId(1), first).await.unwrap();
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        if worst.load(Ordering::Relaxed) > 12 {
            break;
        }
    }
    println!(
        "trials {trials}, highest seatsAvailable read {} of 12 seats",
        worst.load(Ordering::Relaxed)
    );
    assert!(worst.load(Ordering::Relaxed) <= 12);
}

fn clock_now(engine: &Engine) -> boxoffice::domain::Timestamp {
    engine.now()
}
