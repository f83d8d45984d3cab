//! Size limits on session data: typed errors, and nothing changed when an
//! insert is refused.

use serde_json::json;
use sessionkit::store::ClientInfo;
use sessionkit::{Error, Limits, MemoryStore, SessionConfig, SessionManager, Status};

fn manager(limits: Limits) -> SessionManager {
    SessionManager::new(MemoryStore::new(), SessionConfig::default().limits(limits))
}

fn small() -> Limits {
    Limits {
        max_key_bytes: 8,
        max_value_bytes: 20,
        max_session_bytes: 40,
        max_keys: 3,
    }
}

#[tokio::test]
async fn oversized_values_and_keys_are_refused_and_change_nothing() {
    let m = manager(small());
    let s = m.load(None, ClientInfo::default()).await.unwrap();

    let err = s.insert("k", "x".repeat(19)).unwrap_err();
    // 19 characters plus two quotes: 21 bytes of JSON.
    assert!(
        matches!(err, Error::ValueTooLarge { size: 21, max: 20, ref key } if key == "k"),
        "{err:?}"
    );
    assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    let err = s.insert("123456789", 1).unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLong { len: 9, max: 8 }),
        "{err:?}"
    );
    assert!(s.keys().is_empty());
    assert_eq!(
        s.status(),
        Status::Unchanged,
        "a refused insert is no change"
    );
    let headers = m.commit(&s).await.unwrap();
    assert!(headers.is_empty(), "nothing stored, no cookie");
}

#[tokio::test]
async fn the_whole_session_and_the_key_count_are_bounded() {
    let m = manager(small());
    let s = m.load(None, ClientInfo::default()).await.unwrap();
    s.insert("a", "x".repeat(16)).unwrap(); // 1 + 18 = 19 bytes
    s.insert("b", "y".repeat(16)).unwrap(); // 38 bytes
    let err = s.insert("c", 12).unwrap_err(); // 38 + 1 + 2 = 41
    assert!(
        matches!(err, Error::SessionTooLarge { size: 41, max: 40 }),
        "{err:?}"
    );
    assert_eq!(
        s.get::<i32>("c").unwrap(),
        None,
        "the refused key is absent"
    );

    // Replacing a value counts its old size out.
    s.insert("b", "z".repeat(10)).unwrap(); // 19 + 13 = 32
    s.insert("c", 1).unwrap(); // 34
    let err = s.insert("d", 1).unwrap_err();
    assert!(matches!(err, Error::TooManyKeys { max: 3 }), "{err:?}");

    // Removing frees room; replacing an existing key needs no new slot.
    assert!(s.remove("c"));
    s.insert("d", 1).unwrap();
    s.insert("d", 2).unwrap();
    assert_eq!(s.keys().len(), 3);

    // What was accepted is what gets stored.
    let headers = m.commit(&s).await.unwrap();
    let cookie = headers
        .iter()
        .find(|(n, _, _)| *n == "set-cookie")
        .map(|(_, v, _)| v.to_owned())
        .expect("stored");
    let token = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("id="))
        .and_then(sessionkit::store::Token::parse)
        .expect("a token");
    let again = m.load(Some(token), ClientInfo::default()).await.unwrap();
    assert_eq!(again.get::<String>("b").unwrap(), Some("z".repeat(10)));
    assert_eq!(again.get::<i32>("d").unwrap(), Some(2));
    assert_eq!(again.get::<i32>("c").unwrap(), None);
}

#[tokio::test]
async fn defaults_allow_ordinary_sessions() {
    let m = manager(Limits::default());
    let s = m.load(None, ClientInfo::default()).await.unwrap();
    s.insert(
        "cart",
        json!({"items": [1, 2, 3], "note": "x".repeat(1000)}),
    )
    .unwrap();
    let err = s.insert("blob", "x".repeat(64 * 1024)).unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err:?}");
}
