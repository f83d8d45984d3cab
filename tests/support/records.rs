//! Records the store-level suites (`store_conformance.rs`,
//! `store_lifecycle.rs`) build their calls from.

use serde_json::Value;
use sessionkit::store::{ClientInfo, Data, Delta, Tag, Token};
use sessionkit::SessionId;

/// The client every store-level call records.
pub fn client() -> ClientInfo {
    ClientInfo {
        user_agent: Some("conformance/1.0".into()),
        ip: Some("192.0.2.7".parse().unwrap()),
    }
}

/// Session data from `(key, value)` pairs.
pub fn data(pairs: &[(&str, Value)]) -> Data {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A delta that sets one key.
pub fn set(k: &str, v: Value) -> Delta {
    Delta {
        set: vec![(k.to_owned(), v)],
        ..Delta::default()
    }
}

/// A fresh anonymous session id.
pub fn anon_id() -> SessionId {
    Token::generate(&Tag::random()).id()
}

/// A fresh session id in `user`'s slot tag.
pub fn user_id_for(user: &str) -> SessionId {
    Token::generate(&Tag::for_user(user)).id()
}
