//! Concerts, their dates, and the seat layout of a date.
//!
//! A concert is created once, by an admin, and never changes. Its seats are not stored
//! one by one: a [`Layout`] keeps the sections and computes any seat's label, section
//! and price from its id, so a 100,000-seat date costs a few bytes of layout.
//! Seat ids run 1..=N in section, row, number order.

use super::{ConcertId, DateId, Rejection, SeatId, Timestamp, Won};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Longest title, venue or section name accepted, in characters.
pub const NAME_LEN_MAX: usize = 200;
/// Most dates one concert may have.
pub const DATES_PER_CONCERT_MAX: usize = 100;
/// Most sections one date may have.
pub const SECTIONS_PER_DATE_MAX: usize = 100;
/// Highest seat price accepted (a trillion won), far below any overflow. A lower
/// `seat_price_max` applies too.
pub const PRICE_MAX: i64 = 1_000_000_000_000;
/// What a title, venue or section name must look like, as a regular expression for the
/// OpenAPI document: no control character (Unicode `Cc`: U+0000–U+001F, U+007F–U+009F),
/// and at least one character that is neither a control character nor white space
/// (Unicode `White_Space`, as `char::is_whitespace` has it). `check_name` checks the
/// same thing in code.
pub const NAME_PATTERN: &str = concat!(
    r"^[^\u0000-\u001F\u007F-\u009F]*",
    r"[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
    r"[^\u0000-\u001F\u007F-\u009F]*$",
);

/// A concert as an admin asks for it (the body of `POST /admin/concerts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConcertSpec {
    /// The concert's title: 1 to 200 characters, not all white space, no control
    /// characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// Where it takes place; the same rules as the title.
    #[schema(min_length = 1, max_length = 200)]
    pub venue: String,
    /// One to 100 dates.
    #[schema(min_items = 1, max_items = 100)]
    pub dates: Vec<DateSpec>,
}

/// One date of a concert spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DateSpec {
    /// When the show starts (RFC 3339): not in the past.
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "crate::domain::time::compact")]
    pub starts_at: Timestamp,
    /// One to 100 sections with distinct names; seat ids follow their order. All
    /// sections together have at most `--max-seats-per-date` seats.
    #[schema(min_items = 1, max_items = 100)]
    pub sections: Vec<SectionSpec>,
}

/// One section of a date: `rows` × `seats_per_row` seats at one price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SectionSpec {
    /// Section name, used in seat labels (`R` in `R-1-1`); the same rules as the title.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Number of rows, at least 1.
    #[serde(deserialize_with = "super::integer::deserialize")]
    #[schema(minimum = 1)]
    pub rows: u32,
    /// Seats in each row, at least 1.
    #[serde(deserialize_with = "super::integer::deserialize")]
    #[schema(minimum = 1)]
    pub seats_per_row: u32,
    /// Price of each seat in won, from 0 to `--max-balance`.
    #[serde(deserialize_with = "super::integer::deserialize")]
    #[schema(minimum = 0)]
    pub price: i64,
}

/// Where a seat is and what it costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatInfo<'a> {
    /// The seat's id.
    pub id: SeatId,
    /// Its section's name.
    pub section: &'a str,
    /// Row, from 1.
    pub row: u32,
    /// Number within the row, from 1.
    pub number: u32,
    /// Price.
    pub price: Won,
}

impl SeatInfo<'_> {
    /// The seat's label, `"{section}-{row}-{number}"`.
    pub fn label(&self) -> String {
        format!("{}-{}-{}", self.section, self.row, self.number)
    }
}

/// One section of a layout as readers see it: its seats are `first_seat` onwards, row
/// by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo<'a> {
    /// The section's name.
    pub name: &'a str,
    /// Rows, from 1.
    pub rows: u32,
    /// Seats in each row.
    pub seats_per_row: u32,
    /// Price of each seat.
    pub price: Won,
    /// The id of its first seat (row 1, number 1).
    pub first_seat: SeatId,
}

impl SectionInfo<'_> {
    /// Its seats' ids.
    pub fn seats(&self) -> std::ops::Range<u32> {
        self.first_seat.0..self.first_seat.0 + self.rows * self.seats_per_row
    }
}

/// A validated section with the id of its first seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Section {
    name: String,
    rows: u32,
    seats_per_row: u32,
    price: Won,
    first_seat: u32,
}

/// The seats of one date, computed from its sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    sections: Vec<Section>,
    seats_total: u32,
}

impl Layout {
    /// Builds a layout from a spec that [`validate`] accepted.
    fn new(spec: &DateSpec) -> Layout {
        let mut next = 1u32;
        let sections = spec
            .sections
            .iter()
            .map(|s| {
                let section = Section {
                    name: s.name.clone(),
                    rows: s.rows,
                    seats_per_row: s.seats_per_row,
                    price: Won(u64::try_from(s.price).expect("validated: price is not negative")),
                    first_seat: next,
                };
                next += s.rows * s.seats_per_row;
                section
            })
            .collect();
        Layout {
            sections,
            seats_total: next - 1,
        }
    }

    /// The sections, in seat-id order.
    pub fn sections(&self) -> impl Iterator<Item = SectionInfo<'_>> {
        self.sections.iter().map(|s| SectionInfo {
            name: &s.name,
            rows: s.rows,
            seats_per_row: s.seats_per_row,
            price: s.price,
            first_seat: SeatId(s.first_seat),
        })
    }

    /// Number of seats.
    pub fn seats_total(&self) -> u32 {
        self.seats_total
    }

    /// The seat with this id, if the date has it.
    pub fn seat(&self, id: SeatId) -> Option<SeatInfo<'_>> {
        if id.0 == 0 || id.0 > self.seats_total {
            return None;
        }
        let index = self.sections.partition_point(|s| s.first_seat <= id.0) - 1;
        let section = &self.sections[index];
        let offset = id.0 - section.first_seat;
        Some(SeatInfo {
            id,
            section: &section.name,
            row: offset / section.seats_per_row + 1,
            number: offset % section.seats_per_row + 1,
            price: section.price,
        })
    }

    /// Every seat in id order.
    pub fn seats(&self) -> impl Iterator<Item = SeatInfo<'_>> {
        (1..=self.seats_total).filter_map(|id| self.seat(SeatId(id)))
    }

    /// The position (in [`Layout::sections`]) of the section of a seat of the date.
    pub fn section_of(&self, id: SeatId) -> Option<usize> {
        if id.0 == 0 || id.0 > self.seats_total {
            return None;
        }
        Some(self.sections.partition_point(|s| s.first_seat <= id.0) - 1)
    }
}

/// Limits that concert creation enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogRules {
    /// Most seats one date may have (`--max-seats-per-date`).
    pub seats_per_date_max: u32,
    /// Highest seat price: the largest balance (`--max-balance`), since a dearer seat
    /// could never be paid.
    pub seat_price_max: Won,
}

/// Checks a spec against the documented limits.
pub fn validate(spec: &ConcertSpec, rules: CatalogRules) -> Result<(), Rejection> {
    let invalid = |why: String| Err(Rejection::InvalidRequest(why));
    check_name("title", &spec.title)?;
    check_name("venue", &spec.venue)?;
    if spec.dates.is_empty() {
        return invalid("a concert needs at least one date".into());
    }
    if spec.dates.len() > DATES_PER_CONCERT_MAX {
        return invalid(format!("at most {DATES_PER_CONCERT_MAX} dates per concert"));
    }
    for (d, date) in spec.dates.iter().enumerate() {
        if date.sections.is_empty() {
            return invalid(format!("dates[{d}] needs at least one section"));
        }
        if date.sections.len() > SECTIONS_PER_DATE_MAX {
            return invalid(format!(
                "dates[{d}]: at most {SECTIONS_PER_DATE_MAX} sections"
            ));
        }
        let mut names = HashSet::new();
        let mut seats: u64 = 0;
        for (s, section) in date.sections.iter().enumerate() {
            let at = format!("dates[{d}].sections[{s}]");
            check_name(&format!("{at}.name"), &section.name)?;
            if !names.insert(section.name.as_str()) {
                return invalid(format!(
                    "{at}: section name {:?} is used twice",
                    section.name
                ));
            }
            if section.rows == 0 || section.seats_per_row == 0 {
                return invalid(format!("{at}: rows and seatsPerRow must be at least 1"));
            }
            if !(0..=PRICE_MAX).contains(&section.price) {
                return invalid(format!("{at}: price must be between 0 and {PRICE_MAX}"));
            }
            if section.price.unsigned_abs() > rules.seat_price_max.0 {
                return invalid(format!(
                    "{at}: price must be at most the largest balance, {}, or no one could pay for the seat",
                    rules.seat_price_max.0
                ));
            }
            seats += u64::from(section.rows) * u64::from(section.seats_per_row);
        }
        if seats > u64::from(rules.seats_per_date_max) {
            return invalid(format!(
                "dates[{d}] has {seats} seats; at most {} per date",
                rules.seats_per_date_max
            ));
        }
    }
    Ok(())
}

/// Checks that no date of `spec` starts before `now`: a date in the past cannot be sold.
pub fn check_dates_ahead(spec: &ConcertSpec, now: Timestamp) -> Result<(), Rejection> {
    match spec.dates.iter().position(|date| date.starts_at < now) {
        Some(d) => Err(Rejection::InvalidRequest(format!(
            "dates[{d}].startsAt is in the past"
        ))),
        None => Ok(()),
    }
}

/// Checks a name against [`NAME_LEN_MAX`] and [`NAME_PATTERN`].
fn check_name(field: &str, value: &str) -> Result<(), Rejection> {
    if value.chars().any(char::is_control) {
        return Err(Rejection::InvalidRequest(format!(
            "{field} must not contain control characters"
        )));
    }
    if value.trim().is_empty() {
        return Err(Rejection::InvalidRequest(format!(
            "{field} must not be empty"
        )));
    }
    if value.chars().count() > NAME_LEN_MAX {
        return Err(Rejection::InvalidRequest(format!(
            "{field} is longer than {NAME_LEN_MAX} characters"
        )));
    }
    Ok(())
}

/// One date of a created concert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Date {
    /// The date's id.
    pub id: DateId,
    /// The concert it belongs to.
    pub concert_id: ConcertId,
    /// When the show starts.
    #[serde(with = "crate::domain::time::compact")]
    pub starts_at: Timestamp,
    /// Its seats.
    pub layout: Arc<Layout>,
}

/// A created concert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concert {
    /// The concert's id.
    pub id: ConcertId,
    /// Title.
    pub title: String,
    /// Venue.
    pub venue: String,
    /// Its dates, in the order they were given.
    pub dates: Vec<Date>,
}

/// Ask the catalog for something.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogCommand {
    /// Create a concert from a spec.
    Create(ConcertSpec),
}

/// What happened in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CatalogEvent {
    /// A concert was created with these ids (one date id per spec date, in order).
    ConcertCreated {
        /// The new concert's id.
        concert_id: ConcertId,
        /// The new dates' ids.
        date_ids: Vec<DateId>,
        /// The validated spec.
        spec: ConcertSpec,
        /// When.
        #[serde(with = "crate::domain::time::compact")]
        at: Timestamp,
    },
}

/// Every concert, and the next ids to give out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CatalogState {
    concerts: BTreeMap<ConcertId, Arc<Concert>>,
    last_concert_id: u64,
    last_date_id: u64,
}

impl CatalogState {
    /// Validates a command and applies it.
    pub fn apply(
        &mut self,
        command: CatalogCommand,
        rules: CatalogRules,
        now: Timestamp,
    ) -> Result<CatalogEvent, Rejection> {
        let CatalogCommand::Create(spec) = command;
        validate(&spec, rules)?;
        check_dates_ahead(&spec, now)?;
        let concert_id = ConcertId(self.last_concert_id + 1);
        let first_date = self.last_date_id + 1;
        let date_ids = (0..spec.dates.len() as u64)
            .map(|i| DateId(first_date + i))
            .collect();
        let event = CatalogEvent::ConcertCreated {
            concert_id,
            date_ids,
            spec,
            at: now,
        };
        self.replay(&event);
        Ok(event)
    }

    /// Applies an event, live or when recovering.
    pub fn replay(&mut self, event: &CatalogEvent) {
        let CatalogEvent::ConcertCreated {
            concert_id,
            date_ids,
            spec,
            ..
        } = event;
        assert!(concert_id.0 > self.last_concert_id, "concert ids only grow");
        assert_eq!(date_ids.len(), spec.dates.len(), "one date id per date");
        let dates = spec
            .dates
            .iter()
            .zip(date_ids)
            .map(|(date, &id)| Date {
                id,
                concert_id: *concert_id,
                starts_at: date.starts_at,
                layout: Arc::new(Layout::new(date)),
            })
            .collect();
        self.last_concert_id = concert_id.0;
        if let Some(last) = date_ids.iter().max() {
            self.last_date_id = self.last_date_id.max(last.0);
        }
        let concert = Concert {
            id: *concert_id,
            title: spec.title.clone(),
            venue: spec.venue.clone(),
            dates,
        };
        self.concerts.insert(*concert_id, Arc::new(concert));
    }

    /// The concert with this id.
    pub fn concert(&self, id: ConcertId) -> Option<&Arc<Concert>> {
        self.concerts.get(&id)
    }

    /// Every concert, by id.
    pub fn concerts(&self) -> impl Iterator<Item = &Arc<Concert>> {
        self.concerts.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: CatalogRules = CatalogRules {
        seats_per_date_max: 100_000,
        seat_price_max: Won(1_000_000),
    };

    fn section(name: &str, rows: u32, seats_per_row: u32, price: i64) -> SectionSpec {
        SectionSpec {
            name: name.into(),
            rows,
            seats_per_row,
            price,
        }
    }

    fn spec(sections: Vec<SectionSpec>) -> ConcertSpec {
        ConcertSpec {
            title: "Winter Tour".into(),
            venue: "Olympic Hall".into(),
            dates: vec![DateSpec {
                starts_at: chrono::Utc::now() + chrono::Duration::days(30),
                sections,
            }],
        }
    }

    #[test]
    fn seats_are_numbered_in_section_row_number_order() {
        let spec = spec(vec![
            section("R", 2, 3, 150_000),
            section("S", 1, 2, 90_000),
        ]);
        let layout = Layout::new(&spec.dates[0]);
        assert_eq!(layout.seats_total(), 8);
        let labels: Vec<String> = layout.seats().map(|s| s.label()).collect();
        assert_eq!(
            labels,
            [
                "R-1-1", "R-1-2", "R-1-3", "R-2-1", "R-2-2", "R-2-3", "S-1-1", "S-1-2"
            ]
        );
        assert_eq!(layout.seat(SeatId(7)).map(|s| s.price), Some(Won(90_000)));
        assert_eq!(layout.seat(SeatId(0)), None);
        assert_eq!(layout.seat(SeatId(9)), None);
    }

    #[test]
    fn invalid_specs_are_rejected_with_a_reason() {
        let mut empty_title = spec(vec![section("R", 1, 1, 1)]);
        empty_title.title = "  ".into();
        let mut no_dates = spec(vec![section("R", 1, 1, 1)]);
        no_dates.dates.clear();
        let mut control_in_title = spec(vec![section("R", 1, 1, 1)]);
        control_in_title.title = "Winter\u{0}Tour".into();
        let mut control_in_venue = spec(vec![section("R", 1, 1, 1)]);
        control_in_venue.venue = "Olympic\tHall".into();
        let mut in_the_past = spec(vec![section("R", 1, 1, 1)]);
        in_the_past.dates[0].starts_at = chrono::Utc::now() - chrono::Duration::minutes(1);
        let cases = [
            empty_title,
            control_in_title,
            control_in_venue,
            spec(vec![section("R\u{7f}", 1, 1, 1)]),
            spec(vec![section("R", 1, 1, RULES.seat_price_max.0 as i64 + 1)]),
            in_the_past,
            no_dates,
            spec(vec![]),
            spec(vec![section("R", 0, 5, 1)]),
            spec(vec![section("R", 5, 0, 1)]),
            spec(vec![section("R", 1, 1, -1)]),
            spec(vec![section("R", 1, 1, 1), section("R", 1, 1, 1)]),
            spec(vec![section("R", 1000, 101, 1)]),
            spec(vec![section("R", u32::MAX, u32::MAX, 1)]),
        ];
        for case in cases {
            let mut catalog = CatalogState::default();
            let result = catalog.apply(
                CatalogCommand::Create(case.clone()),
                RULES,
                chrono::Utc::now(),
            );
            assert!(
                matches!(result, Err(Rejection::InvalidRequest(_))),
                "{case:?}"
            );
            assert_eq!(catalog.concerts().count(), 0);
        }
    }

    #[test]
    fn names_with_unicode_letters_and_inner_spaces_are_fine() {
        let mut catalog = CatalogState::default();
        let mut spec = spec(vec![section("VIP 석", 1, 1, 1_000_000)]);
        spec.title = " 겨울 투어 ".into();
        assert!(
            catalog
                .apply(CatalogCommand::Create(spec), RULES, chrono::Utc::now())
                .is_ok()
        );
    }

    #[test]
    fn a_date_may_have_exactly_the_maximum_number_of_seats() {
        let mut catalog = CatalogState::default();
        let spec = spec(vec![section("R", 1000, 100, 0)]);
        assert!(
            catalog
                .apply(CatalogCommand::Create(spec), RULES, chrono::Utc::now())
                .is_ok()
        );
    }

    #[test]
    fn ids_are_positive_and_dates_are_numbered_across_concerts() {
        let mut catalog = CatalogState::default();
        let mut two_dates = spec(vec![section("R", 1, 1, 1)]);
        two_dates.dates.push(two_dates.dates[0].clone());
        let now = chrono::Utc::now();
        catalog
            .apply(CatalogCommand::Create(two_dates.clone()), RULES, now)
            .unwrap();
        let CatalogEvent::ConcertCreated {
            concert_id,
            date_ids,
            ..
        } = catalog
            .apply(CatalogCommand::Create(two_dates), RULES, now)
            .unwrap();
        assert_eq!(concert_id, ConcertId(2));
        assert_eq!(date_ids, [DateId(3), DateId(4)]);
    }

    #[test]
    fn replaying_the_events_rebuilds_the_same_catalog() {
        let mut live = CatalogState::default();
        let now = chrono::Utc::now();
        let event = live.apply(
            CatalogCommand::Create(spec(vec![section("R", 2, 2, 5)])),
            RULES,
            now,
        );
        let mut replayed = CatalogState::default();
        replayed.replay(&event.unwrap());
        assert_eq!(replayed.concerts, live.concerts);
    }
}
