//! The conformance suite, continued (`sessionkit::testing`, suite
//! `"lifecycle"`): how a store treats ids that were replaced (rotation
//! aliases, moved markers) and what a login carries, on every backend, one
//! test per scenario and backend. The scenarios' bodies are in
//! `src/testing/lifecycle/`.
#![cfg(feature = "testing")]

mod support;

suite_tests!("lifecycle";
    a_moved_id_is_superseded_not_gone,
    an_alias_chain_leads_to_the_latest_session,
    an_alias_chain_is_followed_up_to_the_hop_limit,
    an_alias_that_leads_to_a_moved_marker_is_superseded,
    login_carries_what_other_requests_saved_meanwhile,
    login_from_a_session_that_is_not_live_carries_only_its_delta,
    login_through_an_alias_retires_the_successor,
    saves_racing_a_login_are_carried_or_superseded,
    saves_racing_a_rotation_are_all_kept,
);
