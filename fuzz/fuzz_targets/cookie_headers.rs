//! Arbitrary bytes as request headers (`Cookie`, `Authorization`,
//! `User-Agent`, in any number and order) into `RequestSession::new` and
//! `.session()`, on an empty `MemoryStore` with the cookie-then-bearer
//! transport. It must never panic and never fail, and the session must be a
//! fresh anonymous one: the store holds no session, so no input can name one.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessionkit::http::{HeaderSource, RequestSession};
use sessionkit::{HeaderTransport, MemoryStore, SessionConfig, SessionManager, TokenTransport};

/// Header values, each with the name picked by its first byte.
struct Headers(Vec<(&'static str, Vec<u8>)>);

impl HeaderSource for Headers {
    fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

const NAMES: [&str; 4] = ["cookie", "authorization", "user-agent", "x-other"];

/// Splits the input at each `\n` into header values; each value's first
/// byte picks its name.
fn headers(data: &[u8]) -> Headers {
    Headers(
        data.split(|&b| b == b'\n')
            .filter_map(|line| {
                let (&first, value) = line.split_first()?;
                Some((NAMES[usize::from(first) % NAMES.len()], value.to_vec()))
            })
            .collect(),
    )
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    manager: SessionManager,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let store = MemoryStore::builder().purge_interval(None).build();
        let config = SessionConfig::default()
            .token_transport(TokenTransport::CookieThenHeader(HeaderTransport::bearer()));
        Fixture {
            rt,
            manager: SessionManager::new(store, config),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let headers = headers(data);
    let request = RequestSession::new(&fx.manager, &headers, None);
    let session = fx
        .rt
        .block_on(request.session())
        .expect("bad input is never an error");
    assert!(session.id().is_none());
    assert!(session.user_id().is_none());
    assert!(session.keys().is_empty());
});
