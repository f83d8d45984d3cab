//! Property tests: arbitrary bytes in cookies, token headers, tokens and ids
//! never panic, and never turn into anything but a fresh anonymous session.

use std::net::IpAddr;

use proptest::prelude::*;
use sessionkit::http::{HeaderSource, RequestSession};
use sessionkit::{
    HeaderTransport, MemoryStore, SessionConfig, SessionId, SessionManager, TokenTransport,
};

/// Headers as a plain list, so any bytes can be sent.
struct RawHeaders(Vec<(String, Vec<u8>)>);

impl HeaderSource for RawHeaders {
    fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("cookie".to_owned()),
        Just("authorization".to_owned()),
        Just("user-agent".to_owned()),
        Just("x-other".to_owned()),
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        // Near misses: the right shape around random text.
        "[A-Za-z0-9_-]{0,60}".prop_map(|t| format!("id={t}").into_bytes()),
        "[A-Za-z0-9_.-]{50,54}".prop_map(|t| format!("id={t}; other=1").into_bytes()),
        "[A-Za-z0-9_.-]{50,54}".prop_map(|t| format!("Bearer {t}").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..20_000),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn token_parser_never_panics_and_round_trips(s in "\\PC{0,80}") {
        if let Some(token) = sessionkit::store::Token::parse(&s) {
            prop_assert_eq!(token.as_str(), s.as_str());
        }
    }

    #[test]
    fn session_id_parser_never_panics(s in "\\PC{0,64}") {
        if let Ok(id) = s.parse::<SessionId>() {
            prop_assert_eq!(id.as_str(), s.as_str());
        }
    }

    #[test]
    fn any_request_headers_give_a_fresh_anonymous_session(
        headers in proptest::collection::vec((header_name(), header_value()), 0..6),
        both in any::<bool>(),
        ip in proptest::option::of(any::<[u8; 4]>()),
    ) {
        let transport = if both {
            TokenTransport::CookieThenHeader(HeaderTransport::bearer())
        } else {
            TokenTransport::Cookie
        };
        let manager = SessionManager::new(
            MemoryStore::builder().purge_interval(None).build(),
            SessionConfig::default().token_transport(transport),
        );
        let headers = RawHeaders(headers);
        let ip = ip.map(IpAddr::from);
        let session = runtime()
            .block_on(RequestSession::new(&manager, &headers, ip).session())
            .expect("bad input is never an error");
        prop_assert!(session.user_id().is_none());
        prop_assert!(session.keys().is_empty());
        prop_assert!(session.id().is_none(), "never a session it did not create");
    }
}
