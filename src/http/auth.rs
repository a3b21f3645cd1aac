//! Who is calling: users by HS256 JWT (`sub` = user id, `exp` required), admins by the
//! admin key, door scanners by the scanner key (or the admin key). All arrive as
//! `Authorization: Bearer ...`; anything missing, malformed, badly signed, of another
//! algorithm, expired or not yet valid (`nbf`) is 401 `UNAUTHORIZED`, and so is a `sub`
//! that is not a user id in its one spelling (decimal digits, no leading zero, not 0).
//!
//! A user token that passed these checks is remembered, whole, with its user and
//! expiry: the same token again (a client sends one per request) costs a lookup, not
//! a signature check, and still stops working at its `exp`.

use super::AppState;
use super::error::ApiError;
use crate::domain::UserId;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use dashmap::DashMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Seconds of clock skew tolerated on `exp`.
const EXP_LEEWAY_SECS: u64 = 5;
/// Most verified user tokens remembered; once full, the memory starts over.
const VERIFIED_TOKENS_MAX: usize = 100_000;

/// The secrets requests are checked against.
pub struct Auth {
    admin_key: String,
    scanner_key: Option<String>,
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    /// User tokens that passed every check, whole, by their text. Fx-hashed: a lookup
    /// hashes a whole token per request, and only tokens this server signed are kept,
    /// so nobody can choose keys that collide.
    verified: DashMap<Box<str>, Verified, FxBuildHasher>,
}

/// What a verified user token says: who, and until when (`exp`).
#[derive(Debug, Clone, Copy)]
struct Verified {
    user: UserId,
    exp: u64,
}

impl Verified {
    /// Whether the token is still unexpired at `now` (as the full check has it).
    fn is_live(&self, now: u64) -> bool {
        now.saturating_sub(EXP_LEEWAY_SECS) <= self.exp
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    /// Set on stream tickets only (`queue-stream:{concertId}`): a token with a scope
    /// opens that one stream and is refused as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

impl Auth {
    /// Checks admins against `admin_key` and user tokens against `jwt_secret`.
    pub fn new(admin_key: &str, jwt_secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = EXP_LEEWAY_SECS;
        // A token that says it is not valid yet is not valid yet.
        validation.validate_nbf = true;
        Auth {
            admin_key: admin_key.to_owned(),
            scanner_key: None,
            decoding: DecodingKey::from_secret(jwt_secret.as_bytes()),
            encoding: EncodingKey::from_secret(jwt_secret.as_bytes()),
            validation,
            verified: DashMap::with_hasher(FxBuildHasher),
        }
    }

    /// Also lets door scanners check tickets in with `key` (if any).
    pub fn with_scanner_key(mut self, key: Option<&str>) -> Self {
        self.scanner_key = key.filter(|k| !k.is_empty()).map(str::to_owned);
        self
    }

    /// A token for `user` that expires after `ttl_secs`.
    pub fn token(&self, user: UserId, ttl_secs: u64) -> String {
        issue_token(&self.encoding, user, ttl_secs)
    }

    /// A short-lived ticket that opens `scope`'s stream for `user` (and nothing else).
    pub fn stream_ticket(&self, user: UserId, scope: &str, ttl_secs: u64) -> String {
        let claims = Claims {
            sub: user.0.to_string(),
            exp: jsonwebtoken::get_current_timestamp().saturating_add(ttl_secs),
            scope: Some(scope.to_owned()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The user a stream ticket for `scope` was made for.
    pub fn check_stream_ticket(&self, ticket: &str, scope: &str) -> Result<UserId, ApiError> {
        let claims = self.claims(ticket)?;
        if claims.scope.as_deref() != Some(scope) {
            return Err(ApiError::unauthorized(
                "the ticket is not a stream ticket for this stream",
            ));
        }
        user_of(claims.sub)
    }

    fn claims(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| ApiError::unauthorized(token_problem(e.kind())))
    }

    fn user(&self, token: &str) -> Result<UserId, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(known) = self.verified.get(token).map(|v| *v) {
            if known.is_live(now) {
                return Ok(known.user);
            }
            self.verified.remove(token);
        }
        let claims = self.claims(token)?;
        if claims.scope.is_some() {
            return Err(ApiError::unauthorized(
                "a stream ticket opens its stream only; send a user token",
            ));
        }
        let user = user_of(claims.sub)?;
        if self.verified.len() >= VERIFIED_TOKENS_MAX {
            self.verified.clear();
        }
        let verified = Verified {
            user,
            exp: claims.exp,
        };
        self.verified.insert(token.into(), verified);
        Ok(user)
    }

    fn is_admin(&self, key: &str) -> bool {
        // Constant time, so timing says nothing about the admin key.
        bool::from(key.as_bytes().ct_eq(self.admin_key.as_bytes()))
    }

    fn is_scanner(&self, key: &str) -> bool {
        let scanner = self
            .scanner_key
            .as_ref()
            .is_some_and(|k| bool::from(key.as_bytes().ct_eq(k.as_bytes())));
        scanner || self.is_admin(key)
    }
}

fn user_of(sub: String) -> Result<UserId, ApiError> {
    let not_a_user = || ApiError::unauthorized("the token's sub is not a user id");
    // `u64::from_str` also takes a leading `+`; a user id is decimal digits only, so
    // that `"+1"` and `"1"` are not two names for one user.
    if !sub.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_user());
    }
    let id = sub.parse::<u64>().map_err(|_| not_a_user())?;
    // One user, one spelling: no leading zeros (`"01"` is not user 1), and user ids
    // are positive like every other id.
    if id == 0 || sub != id.to_string() {
        return Err(not_a_user());
    }
    Ok(UserId(id))
}

/// What is wrong with a token, in words for people (not the library's names).
fn token_problem(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => {
            "the token's signature does not match this server's secret (was it made for another server, or before the secret changed?)"
        }
        K::ExpiredSignature => "the token has expired",
        K::ImmatureSignature => "the token is not valid yet (nbf)",
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "the token must be signed with HS256",
        K::MissingRequiredClaim(_) => "the token must carry sub and exp claims",
        _ => "the token is malformed",
    }
}

/// Signs a user token with a secret (for `boxoffice token` and the demo start).
pub fn issue_token(key: &EncodingKey, user: UserId, ttl_secs: u64) -> String {
    let exp = jsonwebtoken::get_current_timestamp().saturating_add(ttl_secs);
    let claims = Claims {
        sub: user.0.to_string(),
        exp,
        scope: None,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
        .expect("HS256 signing cannot fail")
}

/// Signs a user token with `secret`.
pub fn token_for_secret(secret: &str, user: UserId, ttl_secs: u64) -> String {
    issue_token(&EncodingKey::from_secret(secret.as_bytes()), user, ttl_secs)
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "expected Authorization: Bearer <token>",
        ));
    }
    Ok(token.trim())
}

/// The authenticated user of a request.
#[derive(Debug, Clone, Copy)]
pub struct User(pub UserId);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.user(bearer(parts)?).map(User)
    }
}

/// Proof that the request carries the admin key.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.auth.is_admin(bearer(parts)?) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized("wrong admin key"))
        }
    }
}

/// Proof that the request carries the scanner key or the admin key.
#[derive(Debug, Clone, Copy)]
pub struct Scanner;

impl FromRequestParts<AppState> for Scanner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.auth.is_scanner(bearer(parts)?) {
            Ok(Scanner)
        } else {
            Err(ApiError::unauthorized("wrong scanner key"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_and_another_secret_is_refused() {
        let auth = Auth::new("admin", "secret");
        assert_eq!(auth.user(&auth.token(UserId(42), 60)).unwrap(), UserId(42));
        let forged = token_for_secret("other", UserId(42), 60);
        assert_eq!(auth.user(&forged).unwrap_err().code, "UNAUTHORIZED");
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let auth = Auth::new("admin", "secret");
        let token = auth.token(UserId(42), 60);
        assert_eq!(auth.user(&token).unwrap(), UserId(42));
        assert_eq!(auth.user(&token).unwrap(), UserId(42), "remembered");
        let now = jsonwebtoken::get_current_timestamp();
        let expired = Claims {
            sub: "42".into(),
            exp: now - EXP_LEEWAY_SECS - 1,
            scope: None,
        };
        let expired =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &auth.encoding).unwrap();
        let remembered = Verified {
            user: UserId(42),
            exp: now - EXP_LEEWAY_SECS - 1,
        };
        auth.verified.insert(expired.as_str().into(), remembered);
        assert_eq!(auth.user(&expired).unwrap_err().code, "UNAUTHORIZED");
        assert!(auth.verified.get(expired.as_str()).is_none(), "forgotten");
    }

    #[test]
    fn a_sub_is_a_user_id_only_when_it_is_all_digits() {
        let auth = Auth::new("admin", "secret");
        let token = |sub: &str| {
            let claims = Claims {
                sub: sub.to_owned(),
                exp: jsonwebtoken::get_current_timestamp() + 60,
                scope: None,
            };
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &auth.encoding).unwrap()
        };
        assert_eq!(auth.user(&token("7")).unwrap(), UserId(7));
        for sub in [
            "+7",
            "-7",
            " 7",
            "7a",
            "",
            "07",
            "0",
            "00",
            "18446744073709551616",
        ] {
            assert_eq!(auth.user(&token(sub)).unwrap_err().code, "UNAUTHORIZED");
        }
    }

    #[test]
    fn a_token_that_is_not_valid_yet_is_refused() {
        let auth = Auth::new("admin", "secret");
        let now = jsonwebtoken::get_current_timestamp();
        let token = |nbf: u64| {
            let claims = serde_json::json!({"sub": "7", "exp": now + 600, "nbf": nbf});
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &auth.encoding).unwrap()
        };
        assert_eq!(auth.user(&token(now - 1)).unwrap(), UserId(7));
        let later = auth.user(&token(now + 300)).unwrap_err();
        assert_eq!(later.code, "UNAUTHORIZED");
    }

    #[test]
    fn a_stream_ticket_opens_its_stream_only() {
        let auth = Auth::new("admin", "secret");
        let ticket = auth.stream_ticket(UserId(3), "queue-stream:1", 60);
        assert_eq!(
            auth.check_stream_ticket(&ticket, "queue-stream:1").unwrap(),
            UserId(3)
        );
        assert!(auth.check_stream_ticket(&ticket, "queue-stream:2").is_err());
        assert!(auth.user(&ticket).is_err());
        let token = auth.token(UserId(3), 60);
        assert!(auth.check_stream_ticket(&token, "queue-stream:1").is_err());
    }

    #[test]
    fn the_admin_key_must_match_exactly() {
        let auth = Auth::new("admin", "secret");
        assert!(auth.is_admin("admin"));
        assert!(!auth.is_admin("admin "));
        assert!(!auth.is_admin("admi"));
        assert!(!auth.is_admin(""));
    }

    #[test]
    fn the_scanner_key_checks_tickets_in_but_is_no_admin_key() {
        let auth = Auth::new("admin", "secret").with_scanner_key(Some("door"));
        assert!(auth.is_scanner("door"));
        assert!(auth.is_scanner("admin"));
        assert!(!auth.is_admin("door"));
        assert!(!auth.is_scanner("doo"));
        let none = Auth::new("admin", "secret").with_scanner_key(Some(""));
        assert!(!none.is_scanner(""));
    }
}
