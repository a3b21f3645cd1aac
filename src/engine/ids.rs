//! Fresh ids for what the actors create (reservations, payments, refunds, charges,
//! waiting-room tickets): random version 4 UUIDs drawn from the thread's generator,
//! which the OS seeds, rather than one system call per id.

use uuid::Uuid;

/// A new random (version 4) UUID.
pub fn fresh() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_version_4_and_differ() {
        let (a, b) = (fresh(), fresh());
        assert_eq!(a.get_version(), Some(uuid::Version::Random));
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }
}
