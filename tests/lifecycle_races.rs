//! Races in token handling when one browser sends several requests at once:
//! periodic rotation, login, explicit rotation and revocation racing plain
//! reads and writes, and a commit that fails after a login.
//!
//! Each scenario runs `SESSIONKIT_RACE_TRIALS` trials (default 100) with a
//! shared-jar [`Browser`], counts every failure by kind, prints one
//! `lifecycle: scenario=...` line per backend × framework and then asserts
//! the counts are zero. A race hits in some trials only, so the counts, not
//! one failure, tell how the code behaves.
//!
//! The racing requests go to `/busy/...` twins of the standard routes (and
//! `/rotate`, `/revoke-me`), whose handlers await a random 0-5 ms before
//! their work, as real handlers await a database or a password hash.
//! Without an await, an in-memory store runs a whole request (load, handler,
//! commit) without yielding, so on actix's one worker thread two requests
//! never interleave and the races cannot happen at all. `overlap=` (not a
//! failure) counts the trials in which at least two racing handlers were in
//! flight together on the server, i.e. each loaded before the other
//! committed.

mod http_client;
mod support;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use sessionkit::{Error, Session, SessionConfig, SessionManager, StoreFailure};

use http_client::{
    busy_routes, routes, with_layer, Framework, Routes, TestServer, ANONYMOUS, NONE,
};
use support::browser::{describe, start_browser, CookieAt};
use support::failing_store::FailingStore;
use support::race::{busy, report, trials, InFlight, Tally, ROTATE_EVERY, STAGGER, WRITERS};
use support::Backend;

scenario_tests!(@topologies
    parallel_requests_after_rotation_interval,
    login_races_writers_with_pre_login_token,
    rotate_races_writers,
    revoke_races_login_from_same_session,
    commit_failure_after_login_keeps_a_working_token,
    late_token_answers_keep_a_working_token,
    continue_mode_stand_in_refuses_logout_and_rotate,
);

/// The standard routes, plus busy twins of those that race and the racing
/// operations, all counted in `in_flight`.
fn race_routes(in_flight: &InFlight) -> Routes {
    busy_routes(in_flight)
        .route(
            "/busy/login/{user}",
            busy(in_flight, |s: Session, p: Vec<String>| async move {
                s.login(p[0].clone()).await?;
                Ok(s.id().map_or_else(|| NONE.to_owned(), |id| id.to_string()))
            }),
        )
        .route(
            "/rotate",
            busy(in_flight, |s: Session, _| async move {
                s.rotate().await?;
                Ok("rotated".to_owned())
            }),
        )
        // "Revoke this device" from the device itself; answers whether the
        // revoke ended a live session, which tells the test who won.
        .route(
            "/revoke-me",
            busy(in_flight, |s: Session, _| async move {
                let Some(id) = s.id() else {
                    return Ok("none".to_owned());
                };
                let ended = s.manager().revoke(&id).await?;
                Ok(if ended { "revoked" } else { "gone" }.to_owned())
            }),
        )
}

// ---------------------------------------------------------------- (a)

/// Periodic rotation is due, and six requests carry the old token at once.
/// Every one must keep the user logged in and every acknowledged write must
/// land (the grace exists so in-flight requests with the old token work).
async fn parallel_requests_after_rotation_interval(backend: Backend, fw: Framework) {
    let config = SessionConfig::default()
        .rotation_interval(Some(ROTATE_EVERY))
        .rotation_grace(Duration::from_secs(5));
    let in_flight = InFlight::default();
    let srv = with_layer(fw, race_routes(&in_flight), backend.manager(config)).await;
    let n = trials();
    let kinds = ["logged_out", "lost_writes", "bad_responses"];
    let mut tally = Tally::new("a", backend.name(), fw, n, &kinds);
    for trial in 0..n {
        let user = format!("u{trial}");
        let b = start_browser(&srv, Some(&user)).await;
        backend
            .advance(ROTATE_EVERY + Duration::from_millis(10))
            .await;

        let mut paths = vec!["/busy/whoami".to_owned(); 3];
        paths.extend((0..3).map(|i| format!("/busy/set/k{trial}_{i}/v")));
        in_flight.take_peak();
        let batch = b.parallel(&srv, &paths).await;
        tally.note("overlap", usize::from(in_flight.take_peak() >= 2));

        let bad = batch
            .iter()
            .filter(|e| e.status != StatusCode::OK || (e.path == "/busy/whoami" && e.body != user))
            .count();
        tally.fail("bad_responses", bad, || describe(&batch));

        let who = b.body(&srv, "/whoami").await;
        tally.check("logged_out", who != user, || {
            format!("jar answers {who:?}; {}", describe(&b.log()))
        });
        let mut lost = 0;
        for (i, e) in batch[3..].iter().enumerate() {
            if e.status == StatusCode::OK
                && b.body(&srv, &format!("/get/k{trial}_{i}")).await != "v"
            {
                lost += 1;
            }
        }
        tally.fail("lost_writes", lost, || describe(&b.log()));
    }
    report(&[tally]);
}

// ---------------------------------------------------------------- (b), (c)

/// One race of a token-changing request (`racer`, first in the batch)
/// against writers of the same browser, `trials` times. The jar must end
/// logged in as the user, and no writer may set a cookie: a writer that
/// answers with a cookie of its own (a fresh anonymous session, or a
/// removal) can land after the racer's and log the browser out.
async fn race_writers(
    backend: &Backend,
    fw: Framework,
    (srv, in_flight): &(TestServer, InFlight),
    scenario: &str,
    logged_in_first: bool,
    cookie_at: CookieAt,
) -> Tally {
    let n = trials();
    let logged_out = if logged_in_first {
        "logged_out"
    } else {
        "not_logged_in"
    };
    let mut tally = Tally::new(
        scenario,
        backend.name(),
        fw,
        n,
        &[logged_out, "anon_cookie"],
    );
    for trial in 0..n {
        let user = format!("u{trial}");
        let b = start_browser(srv, logged_in_first.then_some(user.as_str())).await;
        let racer = if logged_in_first {
            "/rotate".to_owned()
        } else {
            format!("/busy/login/{user}")
        };
        let mut paths = vec![racer];
        paths.extend((0..WRITERS).map(|i| format!("/busy/set/w{i}/x")));
        in_flight.take_peak();
        let batch = b.staggered(srv, &paths, STAGGER, cookie_at).await;
        tally.note("overlap", usize::from(in_flight.take_peak() >= 2));
        let writers = &batch[1..];

        let cookies = writers.iter().filter(|w| w.id_cookies > 0).count();
        tally.fail("anon_cookie", cookies, || describe(&b.log()));
        let who = b.body(srv, "/whoami").await;
        tally.check(logged_out, who != user, || {
            format!("jar answers {who:?}; {}", describe(&b.log()))
        });
    }
    tally
}

/// The race routes on a default config, and their in-flight count.
async fn race_server(backend: &Backend, fw: Framework) -> (TestServer, InFlight) {
    let in_flight = InFlight::default();
    let manager = backend.manager(SessionConfig::default());
    (
        with_layer(fw, race_routes(&in_flight), manager).await,
        in_flight,
    )
}

/// A login races writers that carry the pre-login token; then the same with
/// each request carrying the jar's cookie at its own send (writers sent
/// after the login's response carry the new token).
async fn login_races_writers_with_pre_login_token(backend: Backend, fw: Framework) {
    let srv = race_server(&backend, fw).await;
    let batch = race_writers(&backend, fw, &srv, "b", false, CookieAt::BatchStart).await;
    let send = race_writers(&backend, fw, &srv, "b-send-time", false, CookieAt::Send).await;
    report(&[batch, send]);
}

/// As the login race, with a logged-in browser whose racing request calls
/// `Session::rotate`.
async fn rotate_races_writers(backend: Backend, fw: Framework) {
    let srv = race_server(&backend, fw).await;
    let batch = race_writers(&backend, fw, &srv, "c", true, CookieAt::BatchStart).await;
    let send = race_writers(&backend, fw, &srv, "c-send-time", true, CookieAt::Send).await;
    report(&[batch, send]);
}

// ---------------------------------------------------------------- (d)

/// A login and a revoke of the same anonymous session at once. Whichever
/// wins, a revoked session's data must not live on: when the revoke ended
/// the session (answered `revoked`), no token the browser saw may lead to a
/// logged-in session holding its `seed`.
async fn revoke_races_login_from_same_session(backend: Backend, fw: Framework) {
    let (srv, in_flight) = race_server(&backend, fw).await;
    let n = trials();
    let kinds = ["revoked_data_carried", "bad_state"];
    let mut tally = Tally::new("d", backend.name(), fw, n, &kinds);
    for trial in 0..n {
        let user = format!("u{trial}");
        let b = start_browser(&srv, None).await;
        let paths = [format!("/busy/login/{user}"), "/revoke-me".to_owned()];
        in_flight.take_peak();
        let batch = b.parallel(&srv, &paths).await;
        let (login, revoke) = (&batch[0], &batch[1]);
        tally.note("overlap", usize::from(in_flight.take_peak() >= 2));
        let revoke_won = revoke.status == StatusCode::OK && revoke.body == "revoked";
        tally.note("revoke_won", usize::from(revoke_won));

        let who = b.body(&srv, "/whoami").await;
        tally.check("bad_state", who != user && who != ANONYMOUS, || {
            format!("jar answers {who:?}; {}", describe(&b.log()))
        });
        let mut tokens: Vec<String> = login.new_token().into_iter().map(str::to_owned).collect();
        tokens.extend(b.token().filter(|t| !tokens.contains(t)));
        let mut carried = false;
        for t in &tokens {
            if b.peek(&srv, "/whoami", Some(t)).await.body == user {
                carried |= revoke_won && b.peek(&srv, "/get/seed", Some(t)).await.body != NONE;
            }
        }
        tally.check("revoked_data_carried", carried, || describe(&b.log()));
    }
    report(&[tally]);
}

// ---------------------------------------------------------------- (e)

/// The login's store step succeeds, the commit's save after it fails. The
/// client must still end with a token that works: the new one (the failed
/// response carried its cookie) or the old one (the login was undone).
async fn commit_failure_after_login_keeps_a_working_token(backend: Backend, fw: Framework) {
    let mut tallies = Vec::new();
    for mode in [StoreFailure::Reject, StoreFailure::Continue] {
        let failing = Arc::new(FailingStore::new(backend.store()));
        let config = SessionConfig::default().on_store_failure(mode);
        let manager = SessionManager::from_arc(failing.clone(), config);
        let armed = failing.clone();
        let routes = routes().route("/login-then-write/{user}", move |session: Session, p| {
            let armed = armed.clone();
            async move {
                session.login(p[0].clone()).await?;
                armed.fail_next_save();
                session.insert("after", "x")?;
                Ok::<_, Error>("ok")
            }
        });
        let srv = with_layer(fw, routes, manager).await;
        let n = trials();
        let scenario = format!("e-{mode:?}").to_lowercase();
        let kinds = ["no_working_token", "injection_unused"];
        let mut tally = Tally::new(&scenario, backend.name(), fw, n, &kinds);
        for trial in 0..n {
            let user = format!("u{trial}");
            let b = start_browser(&srv, None).await;
            b.send(&srv, &format!("/login-then-write/{user}")).await;
            // A save that never came would make this trial pass vacuously.
            let unused = failing.disarm();
            tally.check("injection_unused", unused, || describe(&b.log()));
            let who = b.body(&srv, "/whoami").await;
            let seed = b.body(&srv, "/get/seed").await;
            let works = who == user || (who == ANONYMOUS && seed == "1");
            tally.check("no_working_token", !works, || {
                format!("whoami={who:?} seed={seed:?}; {}", describe(&b.log()))
            });
        }
        tallies.push(tally);
    }
    report(&tallies);
}

/// A login or explicit rotation lands in the store but its answer comes
/// after the store timeout (a stalled network or server): the old token is
/// retired by then, so the request must adopt the new one rather than
/// report the timeout and leave the client with no working token. Not a
/// race (the delay is fixed), so a few trials are enough.
async fn late_token_answers_keep_a_working_token(backend: Backend, fw: Framework) {
    let failing = Arc::new(FailingStore::new(backend.store()));
    let config = SessionConfig::default().store_timeout(Duration::from_millis(150));
    let manager = SessionManager::from_arc(failing.clone(), config);
    let routes = routes().route("/rotate-now", |session: Session, _| async move {
        session.rotate().await?;
        Ok::<_, Error>("rotated")
    });
    let srv = with_layer(fw, routes, manager).await;
    let n = 4;
    let kinds = [
        "login_failed",
        "rotate_failed",
        "no_working_token",
        "data_lost",
    ];
    let mut tally = Tally::new("late", backend.name(), fw, n, &kinds);
    for trial in 0..n {
        let user = format!("u{trial}");
        let b = start_browser(&srv, None).await;
        failing.delay_token_answers(Duration::from_millis(400));
        let login = b.send(&srv, &format!("/login/{user}")).await;
        tally.check("login_failed", login.status != StatusCode::OK, || {
            describe(&b.log())
        });
        let rotate = b.send(&srv, "/rotate-now").await;
        tally.check("rotate_failed", rotate.status != StatusCode::OK, || {
            describe(&b.log())
        });
        failing.delay_token_answers(Duration::ZERO);
        let who = b.body(&srv, "/whoami").await;
        tally.check("no_working_token", who != user, || describe(&b.log()));
        let seed = b.body(&srv, "/get/seed").await;
        tally.check("data_lost", seed != "1", || describe(&b.log()));
    }
    report(&[tally]);
}

/// Under `StoreFailure::Continue` a request whose load failed gets a stand-in
/// session. Logging it out or rotating it cannot reach the real session, so
/// answering `Ok` would tell the user they are logged out (or rotated) while
/// the real session lives on: the calls must fail.
async fn continue_mode_stand_in_refuses_logout_and_rotate(backend: Backend, fw: Framework) {
    let failing = Arc::new(FailingStore::new(backend.store()));
    let config = SessionConfig::default().on_store_failure(StoreFailure::Continue);
    let manager = SessionManager::from_arc(failing.clone(), config);
    let routes = routes().route("/stand-in/{op}", |session: Session, p| async move {
        match p[0].as_str() {
            "logout" => session.logout().await?,
            "rotate" => session.rotate().await?,
            "logout_everywhere" => {
                session.logout_everywhere().await?;
            }
            other => panic!("no operation {other:?}"),
        }
        Ok::<_, Error>("done")
    });
    let srv = with_layer(fw, routes, manager).await;
    let n = trials();
    let ops = [
        ("logout", "ok_logout"),
        ("rotate", "ok_rotate"),
        ("logout_everywhere", "ok_logout_everywhere"),
    ];
    let mut kinds: Vec<&'static str> = ops.iter().map(|(_, k)| *k).collect();
    kinds.push("injection_unused");
    let mut tally = Tally::new("f", backend.name(), fw, n, &kinds);
    for trial in 0..n {
        for (op, kind) in ops {
            let b = start_browser(&srv, Some(&format!("u{trial}"))).await;
            failing.fail_next_load();
            let e = b.send(&srv, &format!("/stand-in/{op}")).await;
            let unused = failing.disarm();
            tally.check("injection_unused", unused, || describe(&b.log()));
            tally.check(kind, e.status == StatusCode::OK, || describe(&b.log()));
        }
    }
    report(&[tally]);
}
