//! Tickets: one per paid seat, and the signed code a scanner checks at the door.
//!
//! A ticket has no state of its own beyond "admitted, and when", which its date owns
//! (see [`super::date::DateState::admit`]): its id is derived from the reservation and
//! the seat ([`ticket_id`]), and its code is that claim signed by the server
//! ([`TicketKey::sign`]). So tickets appear the moment a payment is durable and vanish
//! (turn `VOID`) the moment a refund is, with nothing else to keep in step.
//!
//! # Code format
//!
//! The code is URL-safe base64 without padding (60 characters, fits a small QR code)
//! of 45 bytes:
//!
//! | bytes | what |
//! |---|---|
//! | 1 | format version, [`CODE_VERSION`] |
//! | 8 | date id, big-endian `u64` |
//! | 4 | seat id, big-endian `u32` |
//! | 16 | reservation id (UUID bytes) |
//! | 16 | the first 16 bytes of HMAC-SHA256 over the 29 bytes above, keyed with the server's ticket secret |
//!
//! A scanner holding the secret can check a code offline; the server checks it before
//! anything else, in constant time, and refuses any code that is not exactly this.

use super::{DateId, Rejection, ReservationId, SeatId, TicketId};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The code format this build writes and reads.
pub const CODE_VERSION: u8 = 1;
/// Bytes of the signed claim.
const CLAIM_LEN: usize = 1 + 8 + 4 + 16;
/// Bytes of the signature kept in a code.
const TAG_LEN: usize = 16;
/// Characters of a code (base64 of `CLAIM_LEN + TAG_LEN` bytes).
pub const CODE_LEN: usize = 60;

/// A ticket's status, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatus {
    /// Paid and not yet admitted.
    Valid,
    /// Admitted at the door.
    Used,
    /// Its reservation was refunded (or its date cancelled).
    Void,
}

/// What a ticket code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The date it admits to.
    pub date_id: DateId,
    /// The seat.
    pub seat_id: SeatId,
    /// The paid reservation the seat belongs to.
    pub reservation_id: ReservationId,
}

impl Claim {
    /// The ticket the claim names.
    pub fn ticket_id(&self) -> TicketId {
        ticket_id(self.reservation_id, self.seat_id)
    }

    fn bytes(&self) -> [u8; CLAIM_LEN] {
        let mut bytes = [0u8; CLAIM_LEN];
        bytes[0] = CODE_VERSION;
        bytes[1..9].copy_from_slice(&self.date_id.0.to_be_bytes());
        bytes[9..13].copy_from_slice(&self.seat_id.0.to_be_bytes());
        bytes[13..].copy_from_slice(self.reservation_id.0.as_bytes());
        bytes
    }
}

/// The id of the ticket for `seat` of `reservation`: the first 16 bytes of SHA-256 over
/// both, as a version 8 UUID. The same inputs always give the same id.
pub fn ticket_id(reservation: ReservationId, seat: SeatId) -> TicketId {
    let mut hash = Sha256::new();
    hash.update(b"boxoffice ticket\0");
    hash.update(reservation.0.as_bytes());
    hash.update(seat.0.to_be_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TicketId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// The server's key for ticket codes.
#[derive(Clone)]
pub struct TicketKey(Vec<u8>);

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

type HmacSha256 = hmac::Hmac<Sha256>;

impl TicketKey {
    /// A key from the configured secret.
    pub fn new(secret: &str) -> Self {
        assert!(!secret.is_empty(), "a ticket secret is never empty");
        TicketKey(secret.as_bytes().to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }

    /// The code for a claim.
    pub fn sign(&self, claim: &Claim) -> String {
        let bytes = claim.bytes();
        let mut mac = self.mac();
        mac.update(&bytes);
        let tag = mac.finalize().into_bytes();
        let mut code = Vec::with_capacity(CLAIM_LEN + TAG_LEN);
        code.extend_from_slice(&bytes);
        code.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(code)
    }

    /// The claim of a code this server signed; [`Rejection::TicketInvalid`] for anything
    /// else (malformed, another version, altered, or signed with another key).
    pub fn verify(&self, code: &str) -> Result<Claim, Rejection> {
        let invalid = |why: &str| Rejection::TicketInvalid(why.to_owned());
        if code.len() != CODE_LEN {
            return Err(invalid("a ticket code is 60 characters"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(code)
            .map_err(|_| invalid("a ticket code is URL-safe base64"))?;
        let (claim, tag) = bytes.split_at(CLAIM_LEN);
        let mut mac = self.mac();
        mac.update(claim);
        mac.verify_truncated_left(tag)
            .map_err(|_| invalid("the ticket code's signature does not match"))?;
        if claim[0] != CODE_VERSION {
            return Err(invalid("unknown ticket code version"));
        }
        let u64_at = |at: usize| u64::from_be_bytes(claim[at..at + 8].try_into().expect("8"));
        let u32_at = |at: usize| u32::from_be_bytes(claim[at..at + 4].try_into().expect("4"));
        let uuid = uuid::Uuid::from_slice(&claim[13..]).expect("16 bytes");
        Ok(Claim {
            date_id: DateId(u64_at(1)),
            seat_id: SeatId(u32_at(9)),
            reservation_id: ReservationId(uuid),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> Claim {
        Claim {
            date_id: DateId(7),
            seat_id: SeatId(12),
            reservation_id: ReservationId(uuid::Uuid::from_u128(42)),
        }
    }

    #[test]
    fn a_signed_code_verifies_to_its_claim() {
        let key = TicketKey::new("secret");
        let code = key.sign(&claim());
        assert_eq!(code.len(), CODE_LEN);
        assert_eq!(key.verify(&code), Ok(claim()));
    }

    #[test]
    fn every_altered_character_is_refused() {
        let key = TicketKey::new("secret");
        let code = key.sign(&claim());
        for at in 0..code.len() {
            let mut altered = code.clone().into_bytes();
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            assert!(
                matches!(key.verify(&altered), Err(Rejection::TicketInvalid(_))),
                "character {at}"
            );
        }
    }

    #[test]
    fn a_code_of_another_key_or_shape_is_refused() {
        let code = TicketKey::new("other").sign(&claim());
        let key = TicketKey::new("secret");
        for code in [
            code.as_str(),
            "",
            "short",
            &"A".repeat(CODE_LEN),
            &"*".repeat(60),
        ] {
            assert!(matches!(key.verify(code), Err(Rejection::TicketInvalid(_))));
        }
    }

    #[test]
    fn a_ticket_id_depends_on_reservation_and_seat_only() {
        let r = ReservationId(uuid::Uuid::from_u128(1));
        assert_eq!(ticket_id(r, SeatId(1)), ticket_id(r, SeatId(1)));
        assert_ne!(ticket_id(r, SeatId(1)), ticket_id(r, SeatId(2)));
        let other = ReservationId(uuid::Uuid::from_u128(2));
        assert_ne!(ticket_id(r, SeatId(1)), ticket_id(other, SeatId(1)));
    }
}
