//! Key names, the KEYS list of every script call, and Redis Cluster hash
//! slots.
//!
//! Every operation builds its KEYS through one method of [`Keys`], so the
//! unit tests below can check that each call's keys share one hash slot.

use crate::token::{SessionId, Tag};

/// Number of hash slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of a key: CRC16/XMODEM of the key (or of its
/// `{hash tag}`, the text between the first `{` and the next `}`, when that
/// is not empty) modulo 16384. Same as `CLUSTER KEYSLOT`.
///
/// ```
/// use sessionkit::redis::key_slot;
///
/// assert_eq!(key_slot("foo"), 12182);
/// assert_eq!(key_slot("app:{a1b2}:s:x"), key_slot("app:{a1b2}:idx"));
/// ```
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % SLOTS
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), as Redis Cluster uses.
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Builds key names under one prefix.
///
/// - session: `<prefix>:{<tag>}:s:<hash part>`
/// - lock of a session: `<prefix>:{<tag>}:l:<hash part>`
/// - index of a tag: `<prefix>:{<tag>}:idx`
///
/// The index-reading scripts derive a member's session and lock keys from
/// the index key they were given (`KEYS[i]` minus `idx`, plus `s:<member>`
/// or `l:<member>`), so these shapes must stay in step; a unit test checks
/// it.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// The KEYS of a login: the login script's, and, when the old session lives
/// in another slot, the separate retire script's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoginKeys {
    /// `[new session, index of the new tag]`, plus `[old session, index of
    /// the old tag, old session's lock]` when the old session is retired in
    /// the same script.
    pub(crate) login: Vec<String>,
    /// Whether `login` carries the old session (retired in the same script).
    pub(crate) old_in_login: bool,
    /// `[old session, index of the old tag, old session's lock]` when the
    /// old id has another tag: retired by a second script call after a
    /// successful login.
    pub(crate) retire: Option<Vec<String>>,
}

impl Keys {
    /// Key names under `prefix`. The prefix must not contain `{` or `}`
    /// (checked by the builder), or it would change the hash tag.
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash of a keyed session ([`Tracker`](crate::tracker::Tracker)):
    /// `<prefix>:{<keyed id>}:k`. A 22-character tag and the `k` suffix
    /// keep it apart from every cookie-session key (8-character tags).
    pub(crate) fn keyed(&self, id: &crate::store::keyed::KeyedId) -> String {
        format!("{}:{{{}}}:k", self.prefix, id.as_str())
    }

    /// The session hash of an id.
    pub(crate) fn session(&self, id: &SessionId) -> String {
        format!("{}:{{{}}}:s:{}", self.prefix, id.tag(), id.hash_part())
    }

    /// The lock of a session: a string holding the holder's fence, with the
    /// lease as its TTL.
    pub(crate) fn lock(&self, id: &SessionId) -> String {
        format!("{}:{{{}}}:l:{}", self.prefix, id.tag(), id.hash_part())
    }

    /// The index of a slot tag.
    pub(crate) fn index(&self, tag: &str) -> String {
        format!("{}:{{{}}}:idx", self.prefix, tag)
    }

    /// KEYS of `load`, `save`, `lock`, `revoke` and `touch`: the session
    /// alone. The scripts derive its tag's index (`index_of`) and its lock
    /// (`lock_of`) from it in Lua (same prefix and `{tag}`, so the same slot)
    /// instead of declaring them: Redis 7.0 tracks every declared key of a
    /// script run on the client cache's tracking connection (7.2+ the keys
    /// it reads), and an anonymous tag's index or a free lock never exists,
    /// so its tracking entry would never be freed.
    pub(crate) fn session_only(&self, id: &SessionId) -> Vec<String> {
        vec![self.session(id)]
    }

    /// KEYS of `login` and `retire`: the session and its tag's index (login
    /// reads the user's index; the scripts free the entries of missing keys,
    /// see `untrack` in `common.lua`).
    pub(crate) fn session_and_index(&self, id: &SessionId) -> Vec<String> {
        vec![self.session(id), self.index(id.tag())]
    }

    /// KEYS of `renew_lock` and `unlock`: the lock, and the session (to
    /// follow a rotation alias).
    pub(crate) fn lock_and_session(&self, id: &SessionId) -> Vec<String> {
        vec![self.lock(id), self.session(id)]
    }

    /// KEYS of `create`: the new (anonymous) session.
    pub(crate) fn create(&self, id: &SessionId) -> Vec<String> {
        self.session_only(id)
    }

    /// KEYS of `login` (and of the retire call that may follow it). With
    /// `one_slot_per_call` off (a server without Cluster, where slots do
    /// not constrain scripts) an old session in another slot is retired in
    /// the login script too: `[new session, new index, old session, old
    /// index]`.
    pub(crate) fn login(
        &self,
        new: &SessionId,
        old: Option<&SessionId>,
        one_slot_per_call: bool,
    ) -> LoginKeys {
        let mut login = self.session_and_index(new);
        let old = old.filter(|old| *old != new);
        match old {
            Some(old) if old.tag() == new.tag() || !one_slot_per_call => {
                login.extend(self.session_and_index(old));
                LoginKeys {
                    login,
                    old_in_login: true,
                    retire: None,
                }
            }
            Some(old) => LoginKeys {
                login,
                old_in_login: false,
                retire: Some(self.session_and_index(old)),
            },
            None => LoginKeys {
                login,
                old_in_login: false,
                retire: None,
            },
        }
    }

    /// KEYS of `rotate` (the ids share a tag): old session, new session.
    /// The script derives the index and both lock keys (see `session_only`).
    pub(crate) fn rotate(&self, old: &SessionId, new: &SessionId) -> Vec<String> {
        vec![self.session(old), self.session(new)]
    }

    /// KEYS of `revoke_user` and `sessions_of`: the index of the user's tag.
    pub(crate) fn user_index(&self, user_id: &str) -> Vec<String> {
        vec![self.index(Tag::for_user(user_id).as_str())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Token;

    fn anon() -> SessionId {
        Token::generate(&Tag::random()).id()
    }

    fn of_user(user: &str) -> SessionId {
        Token::generate(&Tag::for_user(user)).id()
    }

    fn assert_one_slot(what: &str, keys: &[String]) {
        assert!(!keys.is_empty(), "{what}: no keys");
        let slot = key_slot(&keys[0]);
        for k in keys {
            assert_eq!(
                key_slot(k),
                slot,
                "{what}: {k} is not in the slot of {}",
                keys[0]
            );
        }
    }

    #[test]
    fn crc16_matches_the_cluster_spec() {
        // The check value of CRC-16/XMODEM, quoted in the Redis Cluster spec.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot("123456789"), 12739);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("hello"), 866);
        assert_eq!(key_slot(""), 0);
    }

    #[test]
    fn hash_tag_rules() {
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("{user1000}.followers"), key_slot("user1000"));
        // Empty tag: the whole key is hashed.
        assert_eq!(key_slot("foo{}{bar}"), crc16_xmodem(b"foo{}{bar}") % SLOTS);
        // Only the first `{` counts, up to the next `}`.
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
        // No closing brace: the whole key.
        assert_eq!(key_slot("foo{bar"), crc16_xmodem(b"foo{bar") % SLOTS);
    }

    #[test]
    fn every_operation_uses_one_slot() {
        let keys = Keys::new("app:sessions");
        let a = anon();
        let u1 = of_user("alice");
        let u2 = of_user("alice");
        let other = of_user("bob");

        assert_one_slot("load", &keys.session_only(&a));
        assert_one_slot("load (user)", &keys.session_and_index(&u1));
        assert_one_slot("create", &keys.create(&a));
        assert_one_slot("save", &keys.session_and_index(&u1));
        assert_one_slot("revoke", &keys.session_and_index(&u1));
        assert_one_slot("lock", &keys.session_and_index(&a));
        assert_one_slot("lock (user)", &keys.session_and_index(&u1));
        assert_one_slot("renew_lock / unlock", &keys.lock_and_session(&u1));
        assert_one_slot("rotate (anonymous)", &keys.rotate(&a, &anon_with_tag(&a)));
        assert_one_slot("rotate (user)", &keys.rotate(&u1, &u2));
        assert_one_slot("revoke_user", &keys.user_index("alice"));
        assert_one_slot("sessions_of", &keys.user_index("alice"));
        assert_eq!(
            keys.user_index("alice")[0],
            keys.index(u1.tag()),
            "a user's index is the index of the user's tag"
        );

        // Login without an old session.
        let l = keys.login(&u1, None, true);
        assert_one_slot("login", &l.login);
        assert!(l.retire.is_none() && !l.old_in_login);

        // Login from an anonymous session: two calls, each in one slot.
        let l = keys.login(&u1, Some(&a), true);
        assert_one_slot("login (from anonymous)", &l.login);
        let retire = l
            .retire
            .expect("an old id in another slot is retired apart");
        assert_one_slot("retire", &retire);
        assert_eq!(retire[0], keys.session(&a));
        assert!(!l.old_in_login);

        // Login from another session of the same user: one call.
        let l = keys.login(&u2, Some(&u1), true);
        assert_one_slot("login (same tag)", &l.login);
        assert!(l.old_in_login && l.retire.is_none());
        assert_eq!(
            l.login,
            vec![
                keys.session(&u2),
                keys.index(u2.tag()),
                keys.session(&u1),
                keys.index(u1.tag()),
            ]
        );

        // Switching user: the old session's tag is bob's.
        let l = keys.login(&u1, Some(&other), true);
        assert_one_slot("login (switch user)", &l.login);
        assert_one_slot("retire (switch user)", &l.retire.expect("retire"));

        // Without Cluster, one call retires the old session too.
        let l = keys.login(&u1, Some(&a), false);
        assert!(l.old_in_login && l.retire.is_none());
        assert_eq!(
            l.login,
            vec![
                keys.session(&u1),
                keys.index(u1.tag()),
                keys.session(&a),
                keys.index(a.tag()),
            ]
        );
    }

    fn anon_with_tag(id: &SessionId) -> SessionId {
        Token::generate(&Tag::of_id(id)).id()
    }

    #[test]
    fn scripts_can_derive_member_keys_from_the_index_key() {
        let keys = Keys::new("p");
        let id = of_user("carol");
        let index = keys.index(id.tag());
        let base = &index[..index.len() - "idx".len()];
        assert_eq!(format!("{base}s:{}", id.hash_part()), keys.session(&id));
        assert_eq!(format!("{base}l:{}", id.hash_part()), keys.lock(&id));
        assert_eq!(key_slot(&keys.session(&id)), key_slot(&index));
        assert_eq!(key_slot(&keys.lock(&id)), key_slot(&index));
        // And the index from a session key (`index_of` in common.lua: the
        // `:s:<hash>` tail becomes `:idx`).
        let session = keys.session(&id);
        let tail = format!(":s:{}", id.hash_part());
        assert!(session.ends_with(&tail));
        assert_eq!(
            format!("{}:idx", &session[..session.len() - tail.len()]),
            index
        );
    }

    #[test]
    fn keys_carry_the_prefix_and_never_the_token() {
        let keys = Keys::new("myapp");
        let token = Token::generate(&Tag::random());
        let k = keys.session(&token.id());
        assert!(k.starts_with("myapp:{"));
        assert!(!k.contains(&token.as_str()[9..]));
    }
}
