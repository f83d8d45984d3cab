//! The Lua scripts, one per operation, each loaded with `include_str!` and
//! run by SHA (`EVALSHA`, reloaded on `NOSCRIPT` by [`redis::Script`]).
//!
//! Each script is `#!lua` + `common.lua` + its own file. The shebang (Redis
//! 7.0+) turns on Cluster's check that every key a script touches, declared
//! in KEYS or derived from one, hashes to one slot.

use ::redis::Script;

const SHEBANG: &str = "#!lua\n";
const COMMON: &str = include_str!("scripts/common.lua");

/// Every script, hashed once.
#[derive(Debug, Clone)]
pub(crate) struct Scripts {
    pub(crate) load: Script,
    pub(crate) create: Script,
    pub(crate) save: Script,
    pub(crate) login: Script,
    pub(crate) retire: Script,
    pub(crate) rotate: Script,
    pub(crate) revoke: Script,
    pub(crate) logout: Script,
    pub(crate) revoke_user: Script,
    pub(crate) sessions_of: Script,
    /// The batched idle-expiry refresh of the client-side cache.
    pub(crate) touch: Script,
    pub(crate) lock: Script,
    pub(crate) renew_lock: Script,
    pub(crate) unlock: Script,
    /// Every keyed-session operation (`Tracker`).
    pub(crate) keyed: Script,
    /// The claim of an expired session for its event (expiry events on).
    pub(crate) expire: Script,
}

impl Scripts {
    /// The scripts of a store whose session keys outlive their expiry by
    /// `grace_ms` (0: expiry events off), which `common.lua` reads as
    /// `EXPIRY_GRACE`: a constant, so events off cost no command.
    pub(crate) fn new(grace_ms: i64) -> Self {
        let script = |body: &str| {
            Script::new(&format!(
                "{SHEBANG}local EXPIRY_GRACE = {grace_ms}\n{COMMON}\n{body}"
            ))
        };
        Scripts {
            expire: script(include_str!("scripts/expire.lua")),
            load: script(include_str!("scripts/load.lua")),
            create: script(include_str!("scripts/create.lua")),
            save: script(include_str!("scripts/save.lua")),
            login: script(include_str!("scripts/login.lua")),
            retire: script(include_str!("scripts/retire.lua")),
            rotate: script(include_str!("scripts/rotate.lua")),
            revoke: script(include_str!("scripts/revoke.lua")),
            logout: script(include_str!("scripts/logout.lua")),
            revoke_user: script(include_str!("scripts/revoke_user.lua")),
            sessions_of: script(include_str!("scripts/sessions_of.lua")),
            touch: script(include_str!("scripts/touch.lua")),
            lock: script(include_str!("scripts/lock.lua")),
            renew_lock: script(include_str!("scripts/renew_lock.lua")),
            unlock: script(include_str!("scripts/unlock.lua")),
            // Alone: it needs none of `common.lua`, whose ~30 local
            // functions every call would define again.
            keyed: Script::new(&format!("{SHEBANG}{}", include_str!("scripts/keyed.lua"))),
        }
    }

    /// All scripts, to preload with `SCRIPT LOAD`.
    pub(crate) fn all(&self) -> [&Script; 16] {
        [
            &self.load,
            &self.create,
            &self.save,
            &self.login,
            &self.retire,
            &self.rotate,
            &self.revoke,
            &self.logout,
            &self.revoke_user,
            &self.sessions_of,
            &self.touch,
            &self.lock,
            &self.renew_lock,
            &self.unlock,
            &self.keyed,
            &self.expire,
        ]
    }
}
