//! `LazySession` login and logout (one store call, no load first) when one
//! browser sends several requests at once, on every backend and both
//! frameworks: the store's login and logout find the token's session
//! themselves (through rotation aliases, leaving a token another request
//! replaced alone), so the browser must end where the eager `Session`
//! would have left it.
//!
//! As in `lifecycle_races.rs`, each scenario runs `SESSIONKIT_RACE_TRIALS`
//! trials (default 100), counts failures by kind, prints one `lifecycle:`
//! line per backend × framework and asserts the counts are zero. Racing
//! handlers await a random 0-5 ms first, so that requests interleave.

mod http_client;
mod support;

use std::time::Duration;

use http::StatusCode;
use sessionkit::{LazySession, SessionConfig};

use http_client::{busy_routes, with_layer, Framework, Routes, TestServer, ANONYMOUS, NONE};
use support::browser::{describe, start_browser, CookieAt};
use support::race::{busy, report, trials, InFlight, Tally, ROTATE_EVERY, STAGGER, WRITERS};
use support::Backend;

scenario_tests!(@topologies
    lazy_login_races_writers_with_pre_login_token,
    lazy_logout_races_writers,
    lazy_logout_with_the_token_a_periodic_rotation_replaces,
    lazy_logout_races_lazy_login_from_same_session,
);

/// The standard routes, plus busy writers, a busy `whoami` and the busy
/// `LazySession` login and logout.
fn race_routes(in_flight: &InFlight) -> Routes {
    busy_routes(in_flight)
        .route_lazy(
            "/busy/lazy/login/{user}",
            busy(in_flight, |s: LazySession, p: Vec<String>| async move {
                s.login(p[0].clone()).await?;
                Ok("ok".to_owned())
            }),
        )
        .route_lazy(
            "/busy/lazy/logout",
            busy(in_flight, |s: LazySession, _| async move {
                s.logout().await?;
                Ok("bye".to_owned())
            }),
        )
}

async fn race_server(
    backend: &Backend,
    fw: Framework,
    config: SessionConfig,
) -> (TestServer, InFlight) {
    let in_flight = InFlight::default();
    let srv = with_layer(fw, race_routes(&in_flight), backend.manager(config)).await;
    (srv, in_flight)
}

/// A lazy login races writers carrying the pre-login token (all at batch
/// start, then each at its own send). The jar must end logged in, with the
/// anonymous session's data carried over, and no writer may set a cookie.
async fn lazy_login_races_writers_with_pre_login_token(backend: Backend, fw: Framework) {
    let (srv, in_flight) = race_server(&backend, fw, SessionConfig::default()).await;
    let mut tallies = Vec::new();
    for (scenario, cookie_at) in [
        ("lazy-b", CookieAt::BatchStart),
        ("lazy-b-send-time", CookieAt::Send),
    ] {
        let n = trials();
        let kinds = ["not_logged_in", "data_lost", "anon_cookie"];
        let mut tally = Tally::new(scenario, backend.name(), fw, n, &kinds);
        for trial in 0..n {
            let user = format!("u{trial}");
            let b = start_browser(&srv, None).await;
            let mut paths = vec![format!("/busy/lazy/login/{user}")];
            paths.extend((0..WRITERS).map(|i| format!("/busy/set/w{i}/x")));
            in_flight.take_peak();
            let batch = b.staggered(&srv, &paths, STAGGER, cookie_at).await;
            tally.note("overlap", usize::from(in_flight.take_peak() >= 2));
            let cookies = batch[1..].iter().filter(|w| w.id_cookies > 0).count();
            tally.fail("anon_cookie", cookies, || describe(&b.log()));
            let who = b.body(&srv, "/whoami").await;
            tally.check("not_logged_in", who != user, || {
                format!("jar answers {who:?}; {}", describe(&b.log()))
            });
            let seed = b.body(&srv, "/get/seed").await;
            tally.check("data_lost", seed != "1", || {
                format!("seed {seed:?}; {}", describe(&b.log()))
            });
        }
        tallies.push(tally);
    }
    report(&tallies);
}

/// A lazy logout races writers of a logged-in browser. Afterwards neither
/// the jar's token nor the pre-logout one may be logged in.
async fn lazy_logout_races_writers(backend: Backend, fw: Framework) {
    let (srv, in_flight) = race_server(&backend, fw, SessionConfig::default()).await;
    let n = trials();
    let kinds = ["logout_failed", "still_logged_in"];
    let mut tally = Tally::new("lazy-logout", backend.name(), fw, n, &kinds);
    for trial in 0..n {
        let user = format!("u{trial}");
        let b = start_browser(&srv, Some(&user)).await;
        let before = b.token();
        let mut paths = vec!["/busy/lazy/logout".to_owned()];
        paths.extend((0..WRITERS).map(|i| format!("/busy/set/w{i}/x")));
        in_flight.take_peak();
        let batch = b.staggered(&srv, &paths, STAGGER, CookieAt::Send).await;
        tally.note("overlap", usize::from(in_flight.take_peak() >= 2));
        tally.check("logout_failed", batch[0].status != StatusCode::OK, || {
            describe(&batch)
        });
        let jar = b.body(&srv, "/whoami").await;
        let old = b.peek(&srv, "/whoami", before.as_deref()).await.body;
        tally.check("still_logged_in", jar == user || old == user, || {
            format!("jar {jar:?}, old token {old:?}; {}", describe(&b.log()))
        });
    }
    report(&[tally]);
}

/// Periodic rotation is due; reads that rotate the token and a lazy logout
/// all carry the old token at once. The logout follows the rotation's
/// alias to the new session: no token the browser saw may stay logged in.
async fn lazy_logout_with_the_token_a_periodic_rotation_replaces(backend: Backend, fw: Framework) {
    let config = SessionConfig::default()
        .rotation_interval(Some(ROTATE_EVERY))
        .rotation_grace(Duration::from_secs(5));
    let (srv, in_flight) = race_server(&backend, fw, config).await;
    let n = trials();
    let kinds = ["logout_failed", "still_logged_in"];
    let mut tally = Tally::new("lazy-logout-rotation", backend.name(), fw, n, &kinds);
    for trial in 0..n {
        let user = format!("u{trial}");
        let b = start_browser(&srv, Some(&user)).await;
        backend
            .advance(ROTATE_EVERY + Duration::from_millis(10))
            .await;
        let mut paths = vec!["/busy/whoami".to_owned(); 3];
        paths.insert(1, "/busy/lazy/logout".to_owned());
        in_flight.take_peak();
        let batch = b.parallel(&srv, &paths).await;
        tally.note("overlap", usize::from(in_flight.take_peak() >= 2));
        tally.check("logout_failed", batch[1].status != StatusCode::OK, || {
            describe(&batch)
        });
        let mut tokens: Vec<String> = b
            .log()
            .iter()
            .filter_map(|e| e.new_token().map(str::to_owned))
            .collect();
        tokens.extend(batch[0].sent_token.clone());
        let mut alive = 0;
        for t in &tokens {
            if b.peek(&srv, "/whoami", Some(t)).await.body == user {
                alive += 1;
            }
        }
        tally.fail("still_logged_in", alive, || describe(&b.log()));
    }
    report(&[tally]);
}

/// A lazy login and a lazy logout of the same anonymous session at once.
/// Whichever runs first, the browser ends logged in or anonymous, and a
/// logout that ended the session (answered `bye`) ran before the login, so
/// the session it ended gave the login no data.
async fn lazy_logout_races_lazy_login_from_same_session(backend: Backend, fw: Framework) {
    let (srv, in_flight) = race_server(&backend, fw, SessionConfig::default()).await;
    let n = trials();
    let kinds = ["bad_state", "ended_data_carried", "bad_status"];
    let mut tally = Tally::new("lazy-login-logout", backend.name(), fw, n, &kinds);
    for trial in 0..n {
        let user = format!("u{trial}");
        let b = start_browser(&srv, None).await;
        let paths = [
            format!("/busy/lazy/login/{user}"),
            "/busy/lazy/logout".to_owned(),
        ];
        in_flight.take_peak();
        let batch = b.parallel(&srv, &paths).await;
        tally.note("overlap", usize::from(in_flight.take_peak() >= 2));
        let (login, logout) = (&batch[0], &batch[1]);
        let logout_won = logout.status == StatusCode::OK;
        tally.note("logout_first", usize::from(logout_won));
        // The logout either ended the session or found it replaced.
        let ok_status =
            login.status == StatusCode::OK && (logout_won || logout.status == StatusCode::CONFLICT);
        tally.check("bad_status", !ok_status, || describe(&batch));
        let who = b.body(&srv, "/whoami").await;
        tally.check("bad_state", who != user && who != ANONYMOUS, || {
            format!("jar answers {who:?}; {}", describe(&b.log()))
        });
        let carried = match login.new_token() {
            Some(t) => b.peek(&srv, "/get/seed", Some(t)).await.body != NONE,
            None => false,
        };
        tally.check("ended_data_carried", logout_won && carried, || {
            describe(&b.log())
        });
    }
    report(&[tally]);
}
