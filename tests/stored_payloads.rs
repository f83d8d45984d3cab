//! Property tests over what Redis holds: arbitrary bytes written into a real
//! session's hash (data fields with invalid JSON or invalid UTF-8, metadata
//! fields with garbage, fields removed, markers added), or a key of another
//! type where the session was. Loading such a session through the manager
//! never panics and never fails: it is either the session (when what is
//! stored is still a valid session) or a fresh anonymous one, and a write
//! after it creates a new session and leaves the corrupt key as it was. A
//! hash that reads as a token replaced by a login or rotation (a `@moved`
//! marker, or an alias chain that never ends) gives an empty session whose
//! write is dropped: no cookie, no new session, the key as it was.
//!
//! Each test runs one `redis-server` and one store for all of its cases
//! (each case talks to Redis, so there are few of them).
//!
//! `MemoryStore` has no equivalent: it keeps sessions as Rust values in the
//! process (no encoding, nothing to decode), and nothing outside the crate
//! can put bytes into it.
#![cfg(feature = "redis")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::AsyncCommands;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sessionkit::http::{RequestSession, ResponseHeaders};
use sessionkit::redis::RedisStore;
use sessionkit::store::Token;
use sessionkit::{Session, SessionConfig, SessionManager};
use support::RedisServer;

/// Cases per property; each costs a few Redis round trips. Set
/// `PROPTEST_CASES` for a longer run.
const CASES: u32 = 64;

/// The metadata fields of a session hash, and the two markers.
const META: [&str; 10] = [
    "@user",
    "@created",
    "@seen",
    "@issued",
    "@deadline",
    "@ver",
    "@ua",
    "@ip",
    "@alias",
    "@moved",
];

/// The metadata fields every session must have, all integers.
const REQUIRED: [&str; 5] = ["@created", "@seen", "@issued", "@deadline", "@ver"];

/// Text that parsers treat differently (Lua's `tonumber`, Rust's `i64`
/// parser, JSON).
const TRICKY: [&str; 26] = [
    "",
    "0",
    "-1",
    "+5",
    "007",
    "1e3",
    "0x10",
    " 5",
    "5 ",
    "1.5",
    "nan",
    "inf",
    "-inf",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "99999999999999999999999999",
    "null",
    "{}",
    "[]",
    "\"x\"",
    "{not json",
    "\u{feff}1",
    "\u{ff11}",
    "1",
    "true",
];

// ---------------------------------------------------------------- fixture

/// One `redis-server`, one store, and a runtime for all cases of a test.
struct Fixture {
    rt: tokio::runtime::Runtime,
    _server: RedisServer,
    store: RedisStore,
    con: MultiplexedConnection,
    /// Default settings, and one with periodic rotation (so a write after
    /// a load with an old `@issued` rotates the token first).
    managers: [SessionManager; 2],
}

impl Fixture {
    fn start() -> Self {
        let server = RedisServer::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (store, con) = rt.block_on(async {
            let store = RedisStore::builder()
                .url(server.url())
                .key_prefix("payloads")
                .build()
                .await
                .expect("connect to the test's redis-server");
            let con = server
                .client()
                .get_multiplexed_async_connection()
                .await
                .expect("test connection");
            (store, con)
        });
        let config = SessionConfig::default().store_timeout(Duration::from_secs(5));
        let managers = [
            SessionManager::new(store.clone(), config.clone()),
            SessionManager::new(
                store.clone(),
                config
                    .rotation_interval(Some(Duration::from_secs(60)))
                    .touch_interval(Duration::from_secs(1)),
            ),
        ];
        Fixture {
            rt,
            _server: server,
            store,
            con,
            managers,
        }
    }
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(CASES),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs the property; a failure panics with proptest's minimal case.
fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = runner().run(&strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------- requests

fn headers(token: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(t) = token {
        h.insert(COOKIE, HeaderValue::from_str(&format!("id={t}")).unwrap());
    }
    h
}

/// The token a commit's `Set-Cookie` sets (`Some("")` for a removal).
fn set_cookie_token(out: &ResponseHeaders) -> Option<String> {
    out.iter().find_map(|(name, value, _)| {
        let rest = value.strip_prefix("id=")?;
        (name == "set-cookie").then(|| rest.split(';').next().unwrap_or("").to_owned())
    })
}

/// One request: loads the session for `token`, runs `handler`, commits.
/// Answers the session as the handler saw it and the token set, if any.
async fn request<F, Fut>(
    manager: &SessionManager,
    token: Option<&str>,
    handler: F,
) -> Result<(Session, Option<String>), sessionkit::Error>
where
    F: FnOnce(Session) -> Fut,
    Fut: std::future::Future<Output = Result<(), sessionkit::Error>>,
{
    let request = RequestSession::new(manager, &headers(token), None);
    let session = request.session().await?;
    handler(session.clone()).await?;
    let out = request.finish().await.map_err(|e| e.error)?;
    Ok((session, set_cookie_token(&out)))
}

/// A legit session made through the manager (logged in when `user`);
/// answers its token.
async fn legit_session(manager: &SessionManager, user: Option<String>) -> String {
    let (_, token) = request(manager, None, |s| async move {
        s.insert("k", 1)?;
        s.insert("list", vec!["a", "b"])?;
        if let Some(user) = user {
            s.login(user).await?;
        }
        Ok(())
    })
    .await
    .expect("a legit session");
    token.expect("a new session sets a cookie")
}

// ---------------------------------------------------------------- what is stored

/// A hash field name to write.
#[derive(Debug, Clone)]
enum Field {
    Meta(&'static str),
    /// `d:` + these bytes.
    Data(Vec<u8>),
    /// The data field the legit session has.
    ExistingData,
    Raw(Vec<u8>),
}

impl Field {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Field::Meta(m) => m.as_bytes().to_vec(),
            Field::Data(k) => [b"d:".as_slice(), k].concat(),
            Field::ExistingData => b"d:k".to_vec(),
            Field::Raw(b) => b.clone(),
        }
    }
}

/// A hash field value to write.
#[derive(Debug, Clone)]
enum Val {
    Bytes(Vec<u8>),
    Text(&'static str),
    /// JSON of a number or a string: valid in a data field.
    Json(String),
    /// The field's current integer value (or `@seen`'s) moved by this many
    /// milliseconds: plausible but wrong times.
    Shift(i64),
    /// A syntactically valid hash part of a session that does not exist.
    MissingHash,
    /// The session's own hash part (an alias to itself).
    OwnHash,
}

/// What to do to the legit session's key.
#[derive(Debug, Clone)]
enum Corruption {
    /// Remove some fields, then set others.
    Edit {
        remove: Vec<prop::sample::Index>,
        set: Vec<(Field, Val)>,
    },
    /// Replace the whole hash by these fields.
    Replace(Vec<(Field, Val)>),
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => prop::sample::select(META.to_vec()).prop_map(Field::Meta),
        2 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Field::Data),
        2 => Just(Field::ExistingData),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Field::Raw),
    ]
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Val::Bytes),
        3 => prop::sample::select(TRICKY.to_vec()).prop_map(Val::Text),
        2 => prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            "\\PC{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ]
        .prop_map(Val::Json),
        3 => prop_oneof![
            -100_000_000_000_000i64..100_000_000_000_000,
            -3_600_000i64..3_600_000,
        ]
        .prop_map(Val::Shift),
        1 => Just(Val::MissingHash),
        1 => Just(Val::OwnHash),
    ]
}

fn corruption() -> impl Strategy<Value = Corruption> {
    let pairs = || prop::collection::vec((field(), val()), 0..5);
    prop_oneof![
        4 => (prop::collection::vec(any::<prop::sample::Index>(), 0..4), pairs())
            .prop_map(|(remove, set)| Corruption::Edit { remove, set }),
        1 => pairs().prop_map(Corruption::Replace),
    ]
}

/// A hash as raw field/value pairs.
type Fields = BTreeMap<Vec<u8>, Vec<u8>>;

async fn hgetall(con: &mut MultiplexedConnection, key: &str) -> Fields {
    let flat: Vec<Vec<u8>> = ::redis::cmd("HGETALL")
        .arg(key)
        .query_async(con)
        .await
        .expect("HGETALL");
    flat.chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

fn value_bytes(val: &Val, field: &[u8], original: &Fields, own_hash: &str) -> Vec<u8> {
    let number =
        |f: &[u8]| -> Option<i64> { std::str::from_utf8(original.get(f)?).ok()?.parse().ok() };
    match val {
        Val::Bytes(b) => b.clone(),
        Val::Text(t) => t.as_bytes().to_vec(),
        Val::Json(j) => j.as_bytes().to_vec(),
        Val::Shift(by) => {
            let base = number(field).or_else(|| number(b"@seen")).unwrap_or(0);
            base.saturating_add(*by).to_string().into_bytes()
        }
        Val::MissingHash => b"AAAAAAAAAAAAAAAAAAAAAA".to_vec(),
        Val::OwnHash => own_hash.as_bytes().to_vec(),
    }
}

/// Applies `c` to the session hash at `key`.
async fn corrupt(con: &mut MultiplexedConnection, key: &str, own_hash: &str, c: &Corruption) {
    let original = hgetall(con, key).await;
    let (remove, set) = match c {
        Corruption::Edit { remove, set } => {
            let names: Vec<&Vec<u8>> = original.keys().collect();
            let remove: Vec<Vec<u8>> = remove.iter().map(|i| i.get(&names).to_vec()).collect();
            (remove, set)
        }
        Corruption::Replace(set) => {
            let _: () = con.del(key).await.expect("DEL");
            (Vec::new(), set)
        }
    };
    for f in remove {
        let _: () = con.hdel(key, f).await.expect("HDEL");
    }
    for (field, val) in set {
        let name = field.bytes();
        let value = value_bytes(val, &name, &original, own_hash);
        let _: () = con.hset(key, name, value).await.expect("HSET");
    }
}

/// A key of another type in place of the session.
#[derive(Debug, Clone)]
enum WrongType {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    SortedSet(Vec<(f64, Vec<u8>)>),
    Stream(Vec<(Vec<u8>, Vec<u8>)>),
}

fn items() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..6)
}

fn wrong_type() -> impl Strategy<Value = WrongType> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(WrongType::String),
        items().prop_map(WrongType::List),
        items().prop_map(WrongType::Set),
        prop::collection::vec(
            (-1e12f64..1e12, prop::collection::vec(any::<u8>(), 0..24)),
            1..6
        )
        .prop_map(WrongType::SortedSet),
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 1..12),
                prop::collection::vec(any::<u8>(), 0..24),
            ),
            1..4,
        )
        .prop_map(WrongType::Stream),
    ]
}

async fn replace_with(con: &mut MultiplexedConnection, key: &str, w: &WrongType) {
    let _: () = con.del(key).await.expect("DEL");
    let cmd = match w {
        WrongType::String(b) => ::redis::cmd("SET").arg(key).arg(b.as_slice()).clone(),
        WrongType::List(items) => ::redis::cmd("RPUSH").arg(key).arg(items).clone(),
        WrongType::Set(items) => ::redis::cmd("SADD").arg(key).arg(items).clone(),
        WrongType::SortedSet(items) => {
            let mut c = ::redis::cmd("ZADD");
            c.arg(key);
            for (score, member) in items {
                c.arg(*score).arg(member.as_slice());
            }
            c
        }
        WrongType::Stream(fields) => {
            let mut c = ::redis::cmd("XADD");
            c.arg(key).arg("*");
            for (f, v) in fields {
                c.arg(f.as_slice()).arg(v.as_slice());
            }
            c
        }
    };
    let _: ::redis::Value = cmd.query_async(con).await.expect("write the wrong type");
}

// ---------------------------------------------------------------- the oracle

/// Whether what is stored cannot be a session, whatever the clock says:
/// the decoder must reject it.
fn must_be_rejected(kind: &str, fields: &Fields) -> Option<String> {
    if kind != "hash" {
        return Some(format!("a {kind}"));
    }
    if fields.contains_key(b"@alias".as_slice()) || fields.contains_key(b"@moved".as_slice()) {
        return Some("a marker".into());
    }
    let mut text = HashMap::new();
    for (f, v) in fields {
        let (Ok(f), Ok(v)) = (std::str::from_utf8(f), std::str::from_utf8(v)) else {
            return Some("not UTF-8".into());
        };
        if f.starts_with("d:") && serde_json::from_str::<serde_json::Value>(v).is_err() {
            return Some(format!("invalid JSON in {f:?}"));
        }
        text.insert(f, v);
    }
    for m in REQUIRED {
        match text.get(m).map(|v| v.parse::<i64>()) {
            None => return Some(format!("{m} missing")),
            Some(Err(_)) => return Some(format!("{m} not an integer")),
            Some(Ok(n)) if m == "@ver" && n < 0 => return Some("@ver negative".into()),
            Some(Ok(_)) => {}
        }
    }
    None
}

/// The session's data as stored, for a hash the decoder accepts.
fn stored_data(fields: &Fields) -> BTreeMap<String, serde_json::Value> {
    fields
        .iter()
        .filter_map(|(f, v)| {
            let key = std::str::from_utf8(f).ok()?.strip_prefix("d:")?;
            Some((key.to_owned(), serde_json::from_slice(v).ok()?))
        })
        .collect()
}

fn data_of(session: &Session) -> BTreeMap<String, serde_json::Value> {
    session
        .keys()
        .into_iter()
        .map(|k| {
            let v = session.get(&k).expect("a loaded value reads as JSON");
            (k, v.expect("listed key"))
        })
        .collect()
}

async fn key_type(con: &mut MultiplexedConnection, key: &str) -> String {
    ::redis::cmd("TYPE")
        .arg(key)
        .query_async(con)
        .await
        .expect("TYPE")
}

async fn dump(con: &mut MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    ::redis::cmd("DUMP")
        .arg(key)
        .query_async(con)
        .await
        .expect("DUMP")
}

/// Whether the store must read what is stored as a token replaced by a
/// login or rotation (`LoadOutcome::Superseded`): a `@moved` marker, or an
/// alias to the session's own hash part (a chain longer than any store
/// follows). Any other alias leads nowhere: a corrupt target, or one that
/// names no session.
fn must_be_superseded(kind: &str, fields: &Fields, own_hash: &str) -> bool {
    if kind != "hash" {
        return false;
    }
    match fields.get(b"@alias".as_slice()) {
        Some(target) => target.as_slice() == own_hash.as_bytes(),
        None => fields.contains_key(b"@moved".as_slice()),
    }
}

/// Outcomes over all cases, to show the property saw each.
#[derive(Default)]
struct Tally {
    rejected: AtomicUsize,
    superseded: AtomicUsize,
    loaded: AtomicUsize,
}

/// The property, after the legit session at `token` was made corrupt:
/// loading gives the session or a fresh one, never an error; a write then
/// lands in the session or in a new one, never in a corrupt key.
async fn loads_cleanly(
    fx: &Fixture,
    manager: &SessionManager,
    token: &str,
    tally: &Tally,
) -> Result<(), TestCaseError> {
    let mut con = fx.con.clone();
    let asked = Token::parse(token)
        .expect("a token the manager issued")
        .id();
    let key = fx.store.session_key(&asked);
    let kind = key_type(&mut con, &key).await;
    let stored = hgetall_if_hash(&mut con, &key, &kind).await;
    let rejected = must_be_rejected(&kind, &stored);
    let superseded = must_be_superseded(&kind, &stored, asked.hash_part());

    let pending = RequestSession::new(manager, &headers(Some(token)), None);
    let session = match pending.session().await {
        Ok(s) => s,
        Err(e) => return Err(TestCaseError::fail(format!("load failed: {e}"))),
    };
    let loaded = session.id().is_some();
    if loaded {
        tally.loaded.fetch_add(1, Ordering::Relaxed);
        prop_assert!(
            rejected.is_none(),
            "loaded a session that is {rejected:?}: {stored:?}"
        );
        prop_assert_eq!(session.id(), Some(asked.clone()), "another session");
        prop_assert_eq!(data_of(&session), stored_data(&stored));
        let user = stored
            .get(b"@user".as_slice())
            .map(|u| String::from_utf8(u.clone()).unwrap());
        prop_assert_eq!(session.user_id(), user);
    } else {
        if superseded {
            tally.superseded.fetch_add(1, Ordering::Relaxed);
        } else {
            tally.rejected.fetch_add(1, Ordering::Relaxed);
        }
        prop_assert!(session.keys().is_empty(), "a fresh session has no data");
        prop_assert_eq!(session.user_id(), None);
    }

    // What the load left (an expired session is deleted, a read may touch
    // `@seen`), which the write must not change unless it is the session.
    let before = dump(&mut con, &key).await;
    session
        .insert("after", true)
        .map_err(|e| TestCaseError::fail(format!("insert: {e}")))?;
    let out = match pending.finish().await {
        Ok(out) => out,
        Err(e) => return Err(TestCaseError::fail(format!("write failed: {}", e.error))),
    };
    let set = set_cookie_token(&out);
    if loaded {
        // Written into the session itself (perhaps rotated first, perhaps
        // ended meanwhile by expiry): the new token or the old one reads it.
        let read_with = match &set {
            Some(t) if t.is_empty() => return Ok(()),
            Some(t) => t.clone(),
            None => token.to_owned(),
        };
        let (again, _) = request(manager, Some(&read_with), |_| async { Ok(()) })
            .await
            .map_err(|e| TestCaseError::fail(format!("read back: {e}")))?;
        prop_assert_eq!(again.get::<bool>("after").unwrap(), Some(true));
    } else if superseded {
        prop_assert_eq!(set, None, "a superseded token's write sets no cookie");
        prop_assert_eq!(dump(&mut con, &key).await, before, "the marker changed");
    } else {
        let fresh = set.filter(|t| !t.is_empty());
        prop_assert!(fresh.is_some(), "the write made no new session");
        let fresh = fresh.unwrap();
        prop_assert_ne!(&fresh, token);
        prop_assert_ne!(Token::parse(&fresh).unwrap().id(), asked.clone());
        prop_assert_eq!(
            dump(&mut con, &key).await,
            before,
            "the corrupt key changed"
        );
        let (again, _) = request(manager, Some(&fresh), |_| async { Ok(()) })
            .await
            .map_err(|e| TestCaseError::fail(format!("read back: {e}")))?;
        prop_assert_eq!(
            data_of(&again),
            BTreeMap::from([("after".to_owned(), serde_json::json!(true))])
        );
        prop_assert_eq!(again.user_id(), None);
    }
    Ok(())
}

async fn hgetall_if_hash(con: &mut MultiplexedConnection, key: &str, kind: &str) -> Fields {
    if kind == "hash" {
        hgetall(con, key).await
    } else {
        Fields::new()
    }
}

// ---------------------------------------------------------------- properties

#[test]
fn corrupt_session_hashes_load_as_the_session_or_a_fresh_one() {
    let fx = Fixture::start();
    let tally = Tally::default();
    check(
        (corruption(), any::<bool>(), any::<bool>()),
        |(c, logged_in, rotating)| {
            fx.rt.block_on(async {
                let manager = &fx.managers[usize::from(rotating)];
                let user = logged_in.then(|| format!("user-{}", rand_suffix()));
                let token = legit_session(manager, user).await;
                let id = Token::parse(&token).unwrap().id();
                let key = fx.store.session_key(&id);
                corrupt(&mut fx.con.clone(), &key, id.hash_part(), &c).await;
                loads_cleanly(&fx, manager, &token, &tally).await
            })
        },
    );
    let (rejected, superseded, loaded) = (
        tally.rejected.load(Ordering::Relaxed),
        tally.superseded.load(Ordering::Relaxed),
        tally.loaded.load(Ordering::Relaxed),
    );
    eprintln!(
        "corrupt hashes: {rejected} gave a fresh session, {superseded} a superseded one, \
         {loaded} loaded"
    );
    assert!(rejected > 0, "no case made a corrupt session");
}

#[test]
fn keys_of_another_type_load_as_a_fresh_session() {
    let fx = Fixture::start();
    let tally = Tally::default();
    check((wrong_type(), any::<bool>()), |(w, logged_in)| {
        fx.rt.block_on(async {
            let manager = &fx.managers[0];
            let user = logged_in.then(|| format!("user-{}", rand_suffix()));
            let token = legit_session(manager, user).await;
            let key = fx.store.session_key(&Token::parse(&token).unwrap().id());
            replace_with(&mut fx.con.clone(), &key, &w).await;
            loads_cleanly(&fx, manager, &token, &tally).await
        })
    });
    assert_eq!(tally.loaded.load(Ordering::Relaxed), 0);
}

/// A distinct user id per case, so cases do not share per-user indexes.
fn rand_suffix() -> u64 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) as u64
}

// ---------------------------------------------------------------- found by the properties

/// A legit session (logged in as `user` when given) whose key `edit` then
/// changes; answers its token.
async fn corrupted<F, Fut>(fx: &Fixture, user: Option<&str>, edit: F) -> String
where
    F: FnOnce(MultiplexedConnection, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let token = legit_session(&fx.managers[0], user.map(str::to_owned)).await;
    let key = fx.store.session_key(&Token::parse(&token).unwrap().id());
    edit(fx.con.clone(), key).await;
    token
}

/// The shrunk case of the first failure: an alias marker whose target is not
/// UTF-8 made every load with that token fail (503) instead of giving a
/// fresh session.
#[test]
fn an_alias_marker_with_a_non_utf8_target_gives_a_fresh_session() {
    let fx = Fixture::start();
    fx.rt.block_on(async {
        let token = corrupted(&fx, None, |mut con, key| async move {
            let _: () = con.hset(key, "@alias", &[0x80u8][..]).await.unwrap();
        })
        .await;
        loads_cleanly(&fx, &fx.managers[0], &token, &Tally::default())
            .await
            .unwrap();
    });
}

/// `@ver` is a valid integer at `i64::MAX`: the session loaded, and every
/// write to it failed (503) because `HINCRBY` overflows.
#[test]
fn a_version_at_the_integer_limit_does_not_block_writes() {
    let fx = Fixture::start();
    fx.rt.block_on(async {
        for manager in &fx.managers {
            let token = corrupted(&fx, None, |mut con, key| async move {
                let _: () = con.hset(key, "@ver", i64::MAX).await.unwrap();
            })
            .await;
            loads_cleanly(&fx, manager, &token, &Tally::default())
                .await
                .unwrap();
        }
    });
}

/// One session of a user with a `User-Agent` that is not UTF-8 made
/// `sessions_of` (the "my devices" page) fail for all of that user's
/// sessions; the corrupt one is now skipped.
#[test]
fn sessions_of_skips_a_corrupt_session() {
    let fx = Fixture::start();
    fx.rt.block_on(async {
        let manager = &fx.managers[0];
        legit_session(manager, Some("frank".into())).await;
        corrupted(&fx, Some("frank"), |mut con, key| async move {
            let _: () = con.hset(key, "@ua", &[0xffu8, 0xfe][..]).await.unwrap();
        })
        .await;
        let listed = manager.sessions_of("frank").await.expect("sessions_of");
        assert_eq!(listed.len(), 1, "{listed:?}");
        // "Log out everywhere" still ends both: a garbled user agent does not
        // make a session any less the user's.
        assert_eq!(manager.revoke_user("frank").await.unwrap(), 2);
    });
}

/// A key of another type at a user's index made every script that touches
/// the index fail with `WRONGTYPE`: reads that refresh a logged-in session,
/// writes, logins, `sessions_of`. The index only lists sessions (the scripts
/// prune it), so it could be dropped and rebuilt instead.
#[test]
fn a_user_index_of_another_type_does_not_block_the_users_sessions() {
    let fx = Fixture::start();
    fx.rt.block_on(async {
        let manager = &fx.managers[1]; // touch interval 1 s
        let token = corrupted(&fx, Some("grace"), |mut con, key| async move {
            // Due for a touch, which writes the index.
            let seen: i64 = con.hget(&key, "@seen").await.unwrap();
            let _: () = con.hset(&key, "@seen", seen - 5_000).await.unwrap();
        })
        .await;
        let mut con = fx.con.clone();
        let _: () = con
            .set(fx.store.user_index_key("grace"), "x")
            .await
            .unwrap();
        loads_cleanly(&fx, manager, &token, &Tally::default())
            .await
            .unwrap();
        manager.sessions_of("grace").await.expect("sessions_of");
        request(manager, None, |s| async move { s.login("grace").await })
            .await
            .expect("login");
    });
}
