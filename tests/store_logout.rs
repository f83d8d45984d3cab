//! `SessionStore::logout` (`sessionkit::testing`, suite `"logout"`): ending
//! the session a client's token names, without a load first, on every
//! backend, one test per scenario and backend. The scenarios' bodies are
//! in `src/testing/logout.rs`.
#![cfg(feature = "testing")]

mod support;

suite_tests!("logout";
    logout_ends_a_live_session_once,
    logout_follows_a_rotation_alias,
    logout_leaves_a_token_replaced_by_login_alone,
    logout_leaves_a_token_replaced_by_explicit_rotation_alone,
);
