//! Session tokens and the public session ids derived from them.
//!
//! A token is what the client holds (in the cookie or a header): a *tag* and a
//! 256-bit secret from the OS-seeded CSPRNG, both URL-safe base64, joined by a
//! dot. The tag names the Redis Cluster hash slot of the session: a logged-in
//! user's tokens all carry the tag derived from the user id, so a user's
//! sessions and index share one slot; an anonymous session gets a random tag.
//!
//! Stores never see a token. They see a [`SessionId`]: the tag plus a
//! truncated SHA-256 of the whole token. The id is safe to log and to show to
//! users, and a copy of the store's keys cannot be replayed as cookies.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

const SECRET_BYTES: usize = 32;
const TAG_BYTES: usize = 6;
/// Length of the base64 form of the tag.
const TAG_LEN: usize = 8;
/// Length of the base64 form of the secret.
const SECRET_LEN: usize = 43;
/// Length of the base64 form of the hashed part of a [`SessionId`].
const ID_HASH_LEN: usize = 22;

/// The longest token string the parser looks at; anything longer is rejected
/// before any other work.
pub const TOKEN_LEN: usize = TAG_LEN + 1 + SECRET_LEN;

/// A secret session token, as carried by the client.
///
/// `Debug` redacts it, so it cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A new random token in the given slot tag.
    pub fn generate(tag: &Tag) -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let mut s = String::with_capacity(TOKEN_LEN);
        s.push_str(&tag.0);
        s.push('.');
        URL_SAFE_NO_PAD.encode_string(secret, &mut s);
        Token(s)
    }

    /// Parses a token received from a client. Anything that is not exactly
    /// the shape this module generates is `None`: the caller then treats the
    /// request as anonymous, never as an error.
    pub fn parse(s: &str) -> Option<Self> {
        // ASCII first: slicing at a byte offset is only safe on ASCII text,
        // and a token is ASCII.
        if s.len() != TOKEN_LEN || !s.is_ascii() {
            return None;
        }
        let (tag, rest) = s.split_at(TAG_LEN);
        let secret = rest.strip_prefix('.')?;
        if !is_b64(tag) || !is_b64(secret) {
            return None;
        }
        // 43 characters carry 258 bits for a 256-bit secret: a canonical
        // encoder leaves the last character's 2 low bits zero. Rejecting the
        // other spellings gives one secret exactly one accepted form. (The
        // 8-character tag is exactly 6 bytes: no spare bits.)
        let last = secret.as_bytes()[SECRET_LEN - 1];
        if b64_value(last)? & 0b11 != 0 {
            return None;
        }
        Some(Token(s.to_owned()))
    }

    /// The token as sent to the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The slot tag this token carries.
    pub fn tag(&self) -> Tag {
        Tag(self.0[..TAG_LEN].to_owned())
    }

    /// The public id of the session this token names.
    pub fn id(&self) -> SessionId {
        let digest = Sha256::digest(self.0.as_bytes());
        let mut s = String::with_capacity(TAG_LEN + 1 + ID_HASH_LEN);
        s.push_str(&self.0[..TAG_LEN]);
        s.push('.');
        URL_SAFE_NO_PAD.encode_string(&digest[..16], &mut s);
        SessionId(s)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}, <redacted>)", &self.0[..TAG_LEN])
    }
}

/// The Redis Cluster hash-slot tag a token and its session id carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    /// A random tag, for anonymous sessions.
    pub fn random() -> Self {
        let mut bytes = [0u8; TAG_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Tag(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The tag every session of `user_id` carries.
    pub fn for_user(user_id: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"sessionkit/user-tag\0");
        h.update(user_id.as_bytes());
        Tag(URL_SAFE_NO_PAD.encode(&h.finalize()[..TAG_BYTES]))
    }

    /// The tag a session id carries.
    pub(crate) fn of_id(id: &SessionId) -> Self {
        Tag(id.tag().to_owned())
    }

    /// The tag as text (8 URL-safe characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A public session identifier: safe to show to users and to log, never usable
/// as a token.
///
/// It is the token's slot tag and a truncated SHA-256 of the token. It changes
/// whenever the token does (login, rotation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The slot tag of the session.
    pub fn tag(&self) -> &str {
        &self.0[..TAG_LEN]
    }

    /// The hashed part (after the tag).
    pub fn hash_part(&self) -> &str {
        &self.0[TAG_LEN + 1..]
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The error returned when text is not a valid [`SessionId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a session id: expected 8 base64url characters, '.', and 22 base64url characters")]
pub struct InvalidSessionId;

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() == TAG_LEN + 1 + ID_HASH_LEN
            && s.as_bytes()[TAG_LEN] == b'.'
            && is_b64(&s[..TAG_LEN])
            && is_b64(&s[TAG_LEN + 1..]);
        if ok {
            Ok(SessionId(s.to_owned()))
        } else {
            Err(InvalidSessionId)
        }
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The 6-bit value of a URL-safe base64 character.
fn b64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

fn is_b64(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_are_unique() {
        let tag = Tag::random();
        let a = Token::generate(&tag);
        let b = Token::generate(&tag);
        assert_ne!(a, b);
        assert_eq!(Token::parse(a.as_str()), Some(a.clone()));
        assert_eq!(a.as_str().len(), TOKEN_LEN);
        assert_eq!(a.tag(), tag);
        assert_eq!(a.id().tag(), tag.as_str());
    }

    #[test]
    fn secret_has_256_bits() {
        let t = Token::generate(&Tag::random());
        let secret = &t.as_str()[TAG_LEN + 1..];
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 32);
    }

    #[test]
    fn id_does_not_contain_the_secret() {
        let t = Token::generate(&Tag::random());
        let secret = &t.as_str()[TAG_LEN + 1..];
        assert!(!t.id().as_str().contains(&secret[..10]));
        assert_eq!(t.id(), t.id());
        assert_eq!(t.id().as_str().parse::<SessionId>(), Ok(t.id()));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let t = Token::generate(&Tag::random());
        let s = t.as_str();
        assert!(Token::parse("").is_none());
        assert!(Token::parse("garbage").is_none());
        assert!(Token::parse(&s[1..]).is_none());
        assert!(Token::parse(&format!("{s}A")).is_none());
        assert!(Token::parse(&s.replace('.', "+")).is_none());
        let mut bad = s.to_owned();
        bad.replace_range(3..4, "/");
        assert!(Token::parse(&bad).is_none());
        assert!(Token::parse(&"é".repeat(TOKEN_LEN / 2)).is_none());
        // Multi-byte characters across the tag boundary, at the right length
        // (found by the property test in tests/hostile_input.rs).
        let tricky = format!("8abcdef\u{1038C}{}", "a".repeat(TOKEN_LEN - 11));
        assert_eq!(tricky.len(), TOKEN_LEN);
        assert!(Token::parse(&tricky).is_none());
    }

    #[test]
    fn only_the_canonical_spelling_of_a_secret_is_accepted() {
        for _ in 0..64 {
            let t = Token::generate(&Tag::random());
            let s = t.as_str();
            let last = s.as_bytes()[TOKEN_LEN - 1];
            // Same 6-bit group but for the 2 spare bits: decodes to the same
            // bytes, so it must be refused.
            let value = b64_value(last).unwrap();
            for spare in 1..4u8 {
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let other = alphabet[usize::from(value | spare)] as char;
                let variant = format!("{}{other}", &s[..TOKEN_LEN - 1]);
                assert_eq!(
                    URL_SAFE_NO_PAD.decode(&variant[TAG_LEN + 1..]).ok(),
                    None,
                    "the base64 crate agrees it is not canonical"
                );
                assert!(Token::parse(&variant).is_none(), "{variant}");
            }
        }
    }

    #[test]
    fn user_tags_are_stable_and_distinct() {
        assert_eq!(Tag::for_user("alice"), Tag::for_user("alice"));
        assert_ne!(Tag::for_user("alice"), Tag::for_user("bob"));
        assert_eq!(Tag::for_user("alice").as_str().len(), TAG_LEN);
    }

    #[test]
    fn debug_redacts() {
        let t = Token::generate(&Tag::random());
        assert!(!format!("{t:?}").contains(&t.as_str()[TAG_LEN + 1..]));
    }
}
