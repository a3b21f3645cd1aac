//! Torn logs: a log of real events, cut at any byte (and sometimes followed by junk),
//! recovers to exactly the state after the records that are still whole, and damage
//! that valid records follow is refused rather than cut off.
//!
//! The events come from the real state machines: a driver runs random commands (new
//! concerts, joins, leaves, holds, cancels, charges with and without idempotency keys,
//! payments, time passing with its expiries and admissions) against a live [`Image`],
//! the way the actors do, and keeps every event they produce. The expected state after
//! `k` events is those events replayed onto an empty image. States are compared in a
//! canonical form (see [`canonical`]) because hash maps serialize in no fixed order.

use boxoffice::config::Config;
use boxoffice::domain::Rules;
use boxoffice::domain::catalog::{CatalogCommand, ConcertSpec, DateSpec, SectionSpec};
use boxoffice::domain::date::{Hold, Pay};
use boxoffice::domain::image::{Image, wallet_shard};
use boxoffice::domain::wallet::KeyedRequest;
use boxoffice::domain::{
    ChargeId, ConcertId, DateId, Event, PaymentId, ReservationId, SeatId, Ticket, Timestamp,
    UserId, Won,
};
use boxoffice::store::file_log::{self, FileLog};
use boxoffice::store::log::{Append, Log};
use boxoffice::store::{FsyncPolicy, StoreError, format, recovery};
use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

/// Users the commands pick from.
const USERS: u64 = 6;

fn rules() -> Rules {
    // A small room so that people wait, are admitted and expire.
    Config {
        queue_active_max: 2,
        ..Config::default()
    }
    .rules()
}

fn start() -> Timestamp {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

/// A command the driver turns into events (or into nothing, when it is refused).
#[derive(Debug, Clone)]
enum Command {
    /// Time passes by this many milliseconds.
    Wait {
        millis: i64,
    },
    /// An admin creates a concert.
    CreateConcert {
        dates: usize,
        seats: u32,
    },
    Join {
        user: u64,
        concert: usize,
    },
    Leave {
        user: u64,
        concert: usize,
    },
    Hold {
        user: u64,
        date: usize,
        seats: Vec<u32>,
    },
    Cancel {
        user: u64,
        pick: usize,
    },
    Charge {
        user: u64,
        amount: u64,
        key: Option<u8>,
    },
    Pay {
        user: u64,
        pick: usize,
        key: Option<u8>,
    },
}

fn command() -> impl Strategy<Value = Command> {
    let user = 1..=USERS;
    prop_oneof![
        3 => (1i64..=30_000).prop_map(|millis| Command::Wait { millis }),
        1 => (100_000i64..=700_000).prop_map(|millis| Command::Wait { millis }),
        1 => (1usize..=2, 2u32..=10).prop_map(|(dates, seats)| Command::CreateConcert { dates, seats }),
        4 => (user.clone(), any::<usize>()).prop_map(|(user, concert)| Command::Join { user, concert }),
        1 => (user.clone(), any::<usize>()).prop_map(|(user, concert)| Command::Leave { user, concert }),
        5 => (user.clone(), any::<usize>(), prop::collection::vec(any::<u32>(), 1..=3))
            .prop_map(|(user, date, seats)| Command::Hold { user, date, seats }),
        1 => (user.clone(), any::<usize>()).prop_map(|(user, pick)| Command::Cancel { user, pick }),
        3 => (user.clone(), 1u64..=400, prop::option::of(0u8..3))
            .prop_map(|(user, amount, key)| Command::Charge { user, amount, key }),
        3 => (user, any::<usize>(), prop::option::of(0u8..3))
            .prop_map(|(user, pick, key)| Command::Pay { user, pick, key }),
    ]
}

/// Runs commands against a live image the way the actors do, keeping the events.
struct Driver {
    rules: Rules,
    live: Image,
    events: Vec<Event>,
    now: Timestamp,
    next_id: u128,
}

impl Driver {
    /// A driver whose first event creates a concert.
    fn new() -> Driver {
        let rules = rules();
        let mut driver = Driver {
            live: Image::empty(&rules),
            rules,
            events: Vec::new(),
            now: start(),
            next_id: 0,
        };
        driver.create_concert(1, 6);
        driver
    }

    fn id(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u128(self.next_id)
    }

    /// Logs an event whose change the live image already has.
    fn log(&mut self, event: Event) {
        self.events.push(event);
        self.live.seq = self.events.len() as u64;
    }

    fn run(&mut self, command: Command) {
        self.sweep();
        match command {
            Command::Wait { millis } => self.now += Duration::milliseconds(millis),
            Command::CreateConcert { dates, seats } => self.create_concert(dates, seats),
            Command::Join { user, concert } => self.join(UserId(user), concert),
            Command::Leave { user, concert } => self.leave(UserId(user), concert),
            Command::Hold { user, date, seats } => self.hold(UserId(user), date, &seats),
            Command::Cancel { user, pick } => self.cancel(UserId(user), pick),
            Command::Charge { user, amount, key } => self.charge(UserId(user), amount, key),
            Command::Pay { user, pick, key } => self.pay(UserId(user), pick, key),
        }
        self.sweep();
    }

    /// What the actors do before and after every command: expire holds that ran out,
    /// and bring every waiting room up to now.
    fn sweep(&mut self) {
        let now = self.now;
        let date_ids: Vec<DateId> = self.live.dates.keys().copied().collect();
        for id in date_ids {
            let date = self.live.dates.get_mut(&id).expect("listed");
            if let Some(event) = date.expire_due(now) {
                self.log(Event::Date(id, event));
            }
        }
        let concert_ids: Vec<ConcertId> = self.live.queues.keys().copied().collect();
        for id in concert_ids {
            let sold_out = self.sold_out(id);
            let queue = self.live.queues.get_mut(&id).expect("listed");
            for event in queue.advance(now, sold_out) {
                self.log(Event::Queue(id, event));
            }
        }
    }

    fn sold_out(&self, concert: ConcertId) -> bool {
        self.live
            .dates
            .values()
            .filter(|d| d.concert_id() == concert)
            .all(|d| d.counts().sold == d.layout().seats_total())
    }

    fn create_concert(&mut self, dates: usize, seats: u32) {
        let section = |name: &str, seats_per_row: u32, price: i64| SectionSpec {
            name: name.into(),
            rows: 1,
            seats_per_row,
            price,
        };
        let spec = ConcertSpec {
            title: "Winter Tour".into(),
            venue: "Olympic Hall".into(),
            dates: (0..dates as i64)
                .map(|d| DateSpec {
                    starts_at: start() + Duration::days(30 + d),
                    sections: vec![section("R", seats.div_ceil(2), 150), section("S", 1, 90)],
                })
                .collect(),
        };
        // The catalog actor validates against a copy; the image takes the event.
        let mut catalog = self.live.catalog.clone();
        let event = catalog
            .apply(CatalogCommand::Create(spec), self.rules.catalog, self.now)
            .expect("the spec is valid");
        let event = Event::Catalog(event);
        self.live
            .apply(self.events.len() as u64 + 1, &event, &self.rules);
        self.events.push(event);
    }

    fn nth_concert(&self, pick: usize) -> ConcertId {
        let ids: Vec<ConcertId> = self.live.queues.keys().copied().collect();
        ids[pick % ids.len()]
    }

    fn join(&mut self, user: UserId, concert: usize) {
        let concert = self.nth_concert(concert);
        let ticket = Ticket(self.id());
        let queue = self.live.queues.get_mut(&concert).expect("listed");
        if let Some(event) = queue.join(user, ticket, self.now) {
            self.log(Event::Queue(concert, event));
        }
        self.sweep();
    }

    fn leave(&mut self, user: UserId, concert: usize) {
        let concert = self.nth_concert(concert);
        let queue = self.live.queues.get_mut(&concert).expect("listed");
        if let Ok(event) = queue.leave(user, self.now) {
            self.log(Event::Queue(concert, event));
        }
    }

    fn hold(&mut self, user: UserId, pick: usize, seats: &[u32]) {
        let ids: Vec<DateId> = self.live.dates.keys().copied().collect();
        let date_id = ids[pick % ids.len()];
        let date = &self.live.dates[&date_id];
        let concert = date.concert_id();
        let total = date.layout().seats_total();
        if self.live.queues[&concert].require_active(user).is_err() {
            return;
        }
        let command = Hold {
            user,
            seats: seats.iter().map(|s| SeatId(s % total + 1)).collect(),
            reservation_id: ReservationId(self.id()),
        };
        let date = self.live.dates.get_mut(&date_id).expect("listed");
        let Ok(event) = date.hold(command, self.now) else {
            return;
        };
        let boxoffice::domain::date::DateEvent::SeatsHeld(reservation) = &event else {
            unreachable!("a hold holds seats")
        };
        let (id, expires_at) = (reservation.id, reservation.expires_at);
        self.log(Event::Date(date_id, event));
        // The room notes it without logging: replay notes it from `SeatsHeld`.
        let queue = self.live.queues.get_mut(&concert).expect("listed");
        queue.note_hold(user, id, expires_at);
    }

    /// One of the user's reservations (any status), chosen by `pick`.
    fn reservation(&self, user: UserId, pick: usize) -> Option<(DateId, ConcertId, ReservationId)> {
        let mut mine: Vec<(ReservationId, DateId, ConcertId)> = self
            .live
            .dates
            .values()
            .flat_map(|d| d.reservations())
            .filter(|r| r.user == user)
            .map(|r| (r.id, r.date_id, r.concert_id))
            .collect();
        mine.sort();
        let (id, date, concert) = *mine.get(pick % mine.len().max(1))?;
        Some((date, concert, id))
    }

    fn cancel(&mut self, user: UserId, pick: usize) {
        let Some((date_id, concert, id)) = self.reservation(user, pick) else {
            return;
        };
        let date = self.live.dates.get_mut(&date_id).expect("listed");
        let Ok(Some(event)) = date.cancel(user, id, self.now) else {
            return;
        };
        self.log(Event::Date(date_id, event));
        let queue = self.live.queues.get_mut(&concert).expect("listed");
        if let Some(event) = queue.release_hold(user, id) {
            self.log(Event::Queue(concert, event));
        }
    }

    fn charge(&mut self, user: UserId, amount: u64, key: Option<u8>) {
        let key = key.map(|k| format!("charge-{k}"));
        let id = ChargeId(self.id());
        let shard = &mut self.live.wallets[wallet_shard(user, self.rules.wallet_shards)];
        if let Some(key) = &key
            && !matches!(
                shard.recall(user, key, &KeyedRequest::Charge(Won(amount))),
                Ok(None)
            )
        {
            return; // A repeat (answered from the first receipt) or a reused key.
        }
        if let Ok(event) = shard.charge(user, Won(amount), id, key, self.now) {
            self.log(Event::Wallet(event));
        }
    }

    fn pay(&mut self, user: UserId, pick: usize, key: Option<u8>) {
        let Some((date_id, concert, reservation_id)) = self.reservation(user, pick) else {
            return;
        };
        let key = key.map(|k| format!("pay-{k}"));
        let payment_id = PaymentId(self.id());
        let shard_index = wallet_shard(user, self.rules.wallet_shards);
        let shard = &self.live.wallets[shard_index];
        if let Some(key) = &key
            && !matches!(
                shard.recall(user, key, &KeyedRequest::Pay(reservation_id)),
                Ok(None)
            )
        {
            return;
        }
        let command = Pay {
            user,
            reservation_id,
            payment_id,
            balance: shard.balance(user),
            idempotency_key: key,
        };
        let date = self.live.dates.get_mut(&date_id).expect("listed");
        let Ok(payment) = date.pay(command, self.now) else {
            return;
        };
        self.live.wallets[shard_index].replay_payment(&payment);
        let queue = self.live.queues.get_mut(&concert).expect("listed");
        queue.replay_payment(&payment);
        self.log(Event::Paid(payment));
    }
}

/// The events of a run of commands.
fn events_of(commands: Vec<Command>) -> Vec<Event> {
    let mut driver = Driver::new();
    for command in commands {
        driver.run(command);
    }
    // The live state and the replayed log must agree before cutting means anything.
    assert_eq!(
        canonical::of(&replayed(&driver.events)),
        canonical::of(&driver.live),
        "replaying the whole log rebuilds the live state"
    );
    driver.events
}

/// The state after replaying `events` onto an empty image.
fn replayed(events: &[Event]) -> Image {
    let rules = rules();
    let mut image = Image::empty(&rules);
    for (i, event) in events.iter().enumerate() {
        image.apply(i as u64 + 1, event, &rules);
    }
    image
}

/// A whole segment of `events` from sequence number 1, and where each record ends.
fn segment(events: &[Event]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = format::segment_header().to_vec();
    let mut ends = vec![bytes.len()];
    for (i, event) in events.iter().enumerate() {
        format::encode_record(&mut bytes, i as u64 + 1, event);
        ends.push(bytes.len());
    }
    (bytes, ends)
}

/// Writes `bytes` as the segment starting at sequence number 1 of a new data directory.
fn data_dir_with(bytes: &[u8]) -> tempfile::TempDir {
    let dir = scratch_dir();
    let (file, path) = file_log::create_segment(dir.path(), 1).expect("a new segment");
    drop(file);
    std::fs::write(&path, bytes).expect("written");
    assert_eq!(
        std::fs::metadata(&path).expect("written").len(),
        bytes.len() as u64
    );
    dir
}

/// A new temporary directory, in memory where there is a tmpfs: what is under test is
/// recovery's logic, not the disk, and there its many fsyncs cost nothing.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    dir.expect("a temporary directory")
}

fn recover(dir: &Path) -> Result<Image, StoreError> {
    let _lock = recovery::lock(dir)?;
    recovery::recover(dir, &rules()).map(|r| r.image)
}

/// What follows the cut.
#[derive(Debug, Clone)]
enum Tail {
    Nothing,
    Zeros(usize),
    Junk(Vec<u8>),
}

fn tail() -> impl Strategy<Value = Tail> {
    prop_oneof![
        2 => Just(Tail::Nothing),
        1 => (1usize..600).prop_map(Tail::Zeros),
        1 => prop::collection::vec(any::<u8>(), 1..600).prop_map(Tail::Junk),
    ]
}

/// Cuts the log after `cut` bytes, adds `tail` (only past a whole header: the writer
/// makes a segment's header durable before it writes any record), recovers, and
/// checks the state is the one after the records left whole.
fn check_cut(events: &[Event], bytes: &[u8], ends: &[usize], cut: usize, tail: &Tail) {
    let mut torn = bytes[..cut].to_vec();
    if cut >= format::SEGMENT_HEADER_LEN {
        match tail {
            Tail::Nothing => {}
            Tail::Zeros(n) => torn.resize(cut + n, 0),
            Tail::Junk(junk) => torn.extend_from_slice(junk),
        }
    }
    // A tail may happen to rebuild the bytes that were cut (zeros where the record had
    // zeros): such a record is whole again.
    let whole = ends[1..]
        .iter()
        .take_while(|&&end| torn.get(..end) == Some(&bytes[..end]))
        .count();
    let dir = data_dir_with(&torn);
    let image =
        recover(dir.path()).unwrap_or_else(|e| panic!("cut at {cut} of {}: {e}", bytes.len()));
    let expected = canonical::of(&replayed(&events[..whole]));
    assert_eq!(image.seq, whole as u64, "cut at {cut}: records left whole");
    assert_eq!(canonical::of(&image), expected, "cut at {cut}: state");
    // Recovery cut the torn tail off for good: a second start finds the same state.
    let segment = dir.path().join(file_log::file_name(1));
    let len = std::fs::metadata(&segment).map(|m| m.len() as usize).ok();
    assert_eq!(
        len,
        (whole > 0).then_some(ends[whole]),
        "cut at {cut}: file"
    );
    let again = recover(dir.path()).expect("a recovered directory recovers");
    assert_eq!(
        canonical::of(&again),
        expected,
        "cut at {cut}: second start"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The headline property: any cut, any torn tail, and recovery lands exactly on
    /// the state after the records before the cut.
    #[test]
    fn a_log_cut_anywhere_recovers_the_state_after_its_whole_records(
        commands in prop::collection::vec(command(), 0..120),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), tail()), 1..=4),
    ) {
        let events = events_of(commands);
        let (bytes, ends) = segment(&events);
        for (at, tail) in &cuts {
            let cut = at.index(bytes.len() + 1);
            check_cut(&events, &bytes, &ends, cut, tail);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Damage that whole records follow is not a torn write: recovery refuses to start,
    /// names the damaged record's offset, and leaves the file as it was.
    #[test]
    fn damage_before_the_last_record_is_refused_and_the_log_kept(
        commands in prop::collection::vec(command(), 10..80),
        record in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let events = events_of(commands);
        prop_assume!(events.len() >= 2);
        let (bytes, ends) = segment(&events);
        // Any record but the last: ends[i]..ends[i + 1] is record i + 1.
        let i = record.index(events.len() - 1);
        let at = ends[i] + byte.index(ends[i + 1] - ends[i]);
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << bit;
        let dir = data_dir_with(&damaged);
        match recover(dir.path()) {
            Err(StoreError::Corrupt { offset, .. }) => prop_assert_eq!(offset, ends[i] as u64),
            Err(e) => prop_assert!(false, "flip at {at}: {e}"),
            Ok(image) => prop_assert!(false, "flip at {at}: recovered to {}", image.seq),
        }
        let kept = std::fs::read(dir.path().join(file_log::file_name(1))).expect("kept");
        prop_assert!(kept == damaged, "recovery changed a log it refused");
    }
}

/// Every byte of one log, not a sample: the cut lands in every field of every kind of
/// record at least once.
#[test]
fn every_cut_of_one_log_recovers_the_state_after_its_whole_records() {
    let events = events_of(one_of_each());
    let kinds = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    assert!(
        kinds(|e| matches!(e, Event::Paid(_))) == 1,
        "a payment is logged"
    );
    assert!(
        kinds(|e| matches!(e, Event::Catalog(_))) == 2,
        "two concerts"
    );
    assert!(
        kinds(|e| matches!(e, Event::Wallet(_))) >= 2,
        "charges are logged"
    );
    let (bytes, ends) = segment(&events);
    for cut in 0..=bytes.len() {
        check_cut(&events, &bytes, &ends, cut, &Tail::Nothing);
    }
}

/// The file log's writer keeps zeros written past its records, and a crash leaves
/// them there: recovery lands on the state after every record and cuts the zeros off.
/// (A record cut short by the crash, zeros after it, is `Tail::Zeros` above.)
#[test]
fn zeros_the_writer_left_past_its_records_are_cut_off_at_recovery() {
    let events = events_of(one_of_each());
    let dir = scratch_dir();
    let lock = recovery::lock(dir.path()).expect("the directory locks");
    let mut log = FileLog::open(dir.path(), FsyncPolicy::Always, 1, lock, Arc::default())
        .expect("the log opens");
    let half = events.len() / 2;
    for (first, part) in [(1, &events[..half]), (half + 1, &events[half..])] {
        let append = Append {
            events: part.to_vec(),
            on_durable: Box::new(|_| {}),
        };
        log.append(first as u64, &[append]).expect("appended");
    }
    drop(log); // A crash: the writer does not stop, the zeros stay.
    let path = dir.path().join(file_log::file_name(1));
    let (bytes, _) = segment(&events);
    let written = std::fs::read(&path).expect("the segment reads");
    assert!(written.len() > bytes.len(), "zeros past the records");
    assert_eq!(
        &written[..bytes.len()],
        &bytes[..],
        "the records, then zeros"
    );
    assert!(written[bytes.len()..].iter().all(|&b| b == 0));

    let image = recover(dir.path()).expect("recovers");
    assert_eq!(image.seq, events.len() as u64);
    assert_eq!(canonical::of(&image), canonical::of(&replayed(&events)));
    assert_eq!(
        std::fs::read(&path).expect("kept"),
        bytes,
        "the zeros are cut off"
    );
}

/// Commands that log every kind of record at least once.
fn one_of_each() -> Vec<Command> {
    let mut commands = Vec::new();
    for user in 1..=4 {
        commands.push(Command::Join { user, concert: 0 });
        commands.push(Command::Charge {
            user,
            amount: 400,
            key: Some(0),
        });
        commands.push(Command::Hold {
            user,
            date: 0,
            seats: vec![user as u32],
        });
    }
    commands.push(Command::Pay {
        user: 1,
        pick: 0,
        key: Some(1),
    });
    commands.push(Command::Cancel { user: 2, pick: 0 });
    commands.push(Command::Wait { millis: 400_000 });
    commands.push(Command::CreateConcert { dates: 2, seats: 3 });
    commands
}

/// A key the wallet forgot (after its time to live) may be used again, and the live
/// wallet logs the new charge under it; replay must accept that log too.
#[test]
fn a_key_used_again_after_its_time_to_live_replays() {
    let rules = rules();
    let user = UserId(1);
    let mut live = Image::empty(&rules);
    let shard = &mut live.wallets[wallet_shard(user, rules.wallet_shards)];
    let key = || Some("monthly".to_owned());
    let first = shard
        .charge(user, Won(10), ChargeId(Uuid::from_u128(1)), key(), start())
        .expect("a charge");
    let later = start() + rules.wallet.idempotency_ttl + Duration::seconds(1);
    shard.forget_keys(later); // What the wallet actor does before every batch.
    let second = shard
        .charge(user, Won(10), ChargeId(Uuid::from_u128(2)), key(), later)
        .expect("the key was forgotten");
    let events: Vec<Event> = [first, second].into_iter().map(Event::Wallet).collect();
    let (bytes, _) = segment(&events);
    let dir = data_dir_with(&bytes);
    let image = recover(dir.path()).expect("the log of a live server recovers");
    assert_eq!(image.seq, 2);
}

mod canonical {
    //! A canonical form of any `Serialize` value, for comparing states that hold hash
    //! maps (whose entries serialize in a different order from one map to the next).
    //! Map entries are ordered by key; sequences keep their order, which is right as
    //! long as the state holds no hash sets (should one appear, the comparison turns
    //! flaky: sort that field's elements here). Like bincode it is not human readable.

    use serde::Serialize;
    use serde::ser::{self, Serializer};
    use std::collections::BTreeMap;
    use std::fmt;

    /// A serialized value.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Value {
        Unit,
        Bool(bool),
        Signed(i128),
        Unsigned(u128),
        Float(u64),
        Char(char),
        Str(String),
        Bytes(Vec<u8>),
        Option(Option<Box<Value>>),
        Seq(Vec<Value>),
        Map(BTreeMap<Value, Value>),
        Variant(u32, Box<Value>),
        Struct(Vec<(&'static str, Value)>),
    }

    /// The canonical form of `value`.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Value {
        value.serialize(Canonical).expect("every state serializes")
    }

    #[derive(Debug)]
    pub struct Error(String);

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    impl ser::Error for Error {
        fn custom<T: fmt::Display>(message: T) -> Self {
            Error(message.to_string())
        }
    }

    struct Canonical;

    pub struct Seq(Vec<Value>);
    pub struct VariantSeq(u32, Vec<Value>);
    pub struct Map(BTreeMap<Value, Value>, Option<Value>);
    pub struct Struct(Vec<(&'static str, Value)>);
    pub struct VariantStruct(u32, Vec<(&'static str, Value)>);

    impl Serializer for Canonical {
        type Ok = Value;
        type Error = Error;
        type SerializeSeq = Seq;
        type SerializeTuple = Seq;
        type SerializeTupleStruct = Seq;
        type SerializeTupleVariant = VariantSeq;
        type SerializeMap = Map;
        type SerializeStruct = Struct;
        type SerializeStructVariant = VariantStruct;

        fn is_human_readable(&self) -> bool {
            false
        }
        fn serialize_bool(self, v: bool) -> Result<Value, Error> {
            Ok(Value::Bool(v))
        }
        fn serialize_i8(self, v: i8) -> Result<Value, Error> {
            Ok(Value::Signed(v.into()))
        }
        fn serialize_i16(self, v: i16) -> Result<Value, Error> {
            Ok(Value::Signed(v.into()))
        }
        fn serialize_i32(self, v: i32) -> Result<Value, Error> {
            Ok(Value::Signed(v.into()))
        }
        fn serialize_i64(self, v: i64) -> Result<Value, Error> {
            Ok(Value::Signed(v.into()))
        }
        fn serialize_i128(self, v: i128) -> Result<Value, Error> {
            Ok(Value::Signed(v))
        }
        fn serialize_u8(self, v: u8) -> Result<Value, Error> {
            Ok(Value::Unsigned(v.into()))
        }
        fn serialize_u16(self, v: u16) -> Result<Value, Error> {
            Ok(Value::Unsigned(v.into()))
        }
        fn serialize_u32(self, v: u32) -> Result<Value, Error> {
            Ok(Value::Unsigned(v.into()))
        }
        fn serialize_u64(self, v: u64) -> Result<Value, Error> {
            Ok(Value::Unsigned(v.into()))
        }
        fn serialize_u128(self, v: u128) -> Result<Value, Error> {
            Ok(Value::Unsigned(v))
        }
        fn serialize_f32(self, v: f32) -> Result<Value, Error> {
            Ok(Value::Float(f64::from(v).to_bits()))
        }
        fn serialize_f64(self, v: f64) -> Result<Value, Error> {
            Ok(Value::Float(v.to_bits()))
        }
        fn serialize_char(self, v: char) -> Result<Value, Error> {
            Ok(Value::Char(v))
        }
        fn serialize_str(self, v: &str) -> Result<Value, Error> {
            Ok(Value::Str(v.to_owned()))
        }
        fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
            Ok(Value::Bytes(v.to_owned()))
        }
        fn serialize_none(self) -> Result<Value, Error> {
            Ok(Value::Option(None))
        }
        fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, Error> {
            Ok(Value::Option(Some(Box::new(value.serialize(Canonical)?))))
        }
        fn serialize_unit(self) -> Result<Value, Error> {
            Ok(Value::Unit)
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<Value, Error> {
            Ok(Value::Unit)
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
        ) -> Result<Value, Error> {
            Ok(Value::Variant(index, Box::new(Value::Unit)))
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            value: &T,
        ) -> Result<Value, Error> {
            value.serialize(Canonical)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
            value: &T,
        ) -> Result<Value, Error> {
            Ok(Value::Variant(index, Box::new(value.serialize(Canonical)?)))
        }
        fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Error> {
            Ok(Seq(Vec::with_capacity(len.unwrap_or(0))))
        }
        fn serialize_tuple(self, len: usize) -> Result<Seq, Error> {
            Ok(Seq(Vec::with_capacity(len)))
        }
        fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq, Error> {
            Ok(Seq(Vec::with_capacity(len)))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
            len: usize,
        ) -> Result<VariantSeq, Error> {
            Ok(VariantSeq(index, Vec::with_capacity(len)))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Map, Error> {
            Ok(Map(BTreeMap::new(), None))
        }
        fn serialize_struct(self, _: &'static str, len: usize) -> Result<Struct, Error> {
            Ok(Struct(Vec::with_capacity(len)))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
            len: usize,
        ) -> Result<VariantStruct, Error> {
            Ok(VariantStruct(index, Vec::with_capacity(len)))
        }
    }

    impl ser::SerializeSeq for Seq {
        type Ok = Value;
        type Error = Error;
        fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
            self.0.push(value.serialize(Canonical)?);
            Ok(())
        }
        fn end(self) -> Result<Value, Error> {
            Ok(Value::Seq(self.0))
        }
    }

    impl ser::SerializeTuple for Seq {
        type Ok = Value;
        type Error = Error;
        fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
            ser::SerializeSeq::serialize_element(self, value)
        }
        fn end(self) -> Result<Value, Error> {
            ser::SerializeSeq::end(self)
        }
    }

    impl ser::SerializeTupleStruct for Seq {
        type Ok = Value;
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
            ser::SerializeSeq::serialize_element(self, value)
        }
        fn end(self) -> Result<Value, Error> {
            ser::SerializeSeq::end(self)
        }
    }

    impl ser::SerializeTupleVariant for VariantSeq {
        type Ok = Value;
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
            self.1.push(value.serialize(Canonical)?);
            Ok(())
        }
        fn end(self) -> Result<Value, Error> {
            Ok(Value::Variant(self.0, Box::new(Value::Seq(self.1))))
        }
    }

    impl ser::SerializeMap for Map {
        type Ok = Value;
        type Error = Error;
        fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
            self.1 = Some(key.serialize(Canonical)?);
            Ok(())
        }
        fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
            let key = self.1.take().expect("serde gives a key before its value");
            let previous = self.0.insert(key, value.serialize(Canonical)?);
            assert!(previous.is_none(), "a map has each key once");
            Ok(())
        }
        fn end(self) -> Result<Value, Error> {
            Ok(Value::Map(self.0))
        }
    }

    impl ser::SerializeStruct for Struct {
        type Ok = Value;
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            name: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            self.0.push((name, value.serialize(Canonical)?));
            Ok(())
        }
        fn end(self) -> Result<Value, Error> {
            Ok(Value::Struct(self.0))
        }
    }

    impl ser::SerializeStructVariant for VariantStruct {
        type Ok = Value;
        type Error = Error;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            name: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            self.1.push((name, value.serialize(Canonical)?));
            Ok(())
        }
        fn end(self) -> Result<Value, Error> {
            Ok(Value::Variant(self.0, Box::new(Value::Struct(self.1))))
        }
    }
}
