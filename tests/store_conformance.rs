//! The store conformance suite (`sessionkit::testing`, suite
//! `"conformance"`: sessions, users, rotation, revocation, locks) on every
//! backend of this crate (see `support::Backend`), one test per scenario
//! and backend.
//!
//! The scenarios' bodies are in `src/testing/conformance/`; this file only
//! runs them. Time moves only through `Backend::advance`, which sleeps for
//! stores on a real clock.
#![cfg(feature = "testing")]

mod support;

suite_tests!("conformance";
    lock_is_exclusive_and_starts_from_the_latest_data,
    lock_lease_runs_out_unless_renewed,
    stale_fence_is_fenced_and_writes_nothing,
    ending_a_session_removes_its_lock,
    lock_moves_with_rotation,
    concurrent_lockers_get_one_lock,
    create_then_load,
    save_applies_delta_and_never_creates,
    concurrent_saves_of_different_keys_merge,
    idle_expiry_and_rate_limited_touch,
    absolute_deadline_is_never_extended,
    login_moves_data_indexes_user_and_retires_old,
    login_switching_user_leaves_the_old_users_index,
    single_login_evicts_every_other_session,
    max_sessions_evicts_least_recently_used,
    reject_new_changes_nothing,
    concurrent_single_logins_leave_exactly_one,
    concurrent_logins_respect_max_sessions,
    rotation_alias_keeps_old_token_working_for_the_grace,
    explicit_rotation_stops_the_old_token_at_once,
    revocation_is_final,
    listing_drops_expired_and_orders_by_use,
    data_round_trips_every_json_shape,
);
