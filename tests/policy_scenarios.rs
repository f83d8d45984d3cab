//! HTTP behaviour of login, logout, revocation, per-user limits, expiry and
//! rotation through the session middleware of axum and actix-web.
//!
//! Scenarios take a `support::Backend` and a `http_client::Framework`, and
//! run on every store × framework over real HTTP; time moves only with
//! `backend.advance`, and timeouts are a few seconds so a store with a real
//! clock costs a few seconds, not minutes.

mod http_client;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use sessionkit::{Error, MaxSessionsPolicy, Session, SessionConfig, SessionId};
use tokio::sync::Notify;

use http_client::*;
use support::Backend;

scenario_tests!(
    login_rotates_the_token_and_keeps_data,
    logout_during_an_in_flight_request_is_final,
    single_login_under_concurrent_logins_leaves_one_session,
    max_sessions_evict_oldest_evicts_least_recently_used,
    max_sessions_reject_new_refuses_and_changes_nothing,
    idle_timeout_expires_an_unused_session,
    idle_timeout_slides_with_use,
    absolute_timeout_is_not_extended_by_activity,
    absolute_timeout_is_not_extended_by_rotation,
    revoke_revoke_user_and_revoke_user_except,
    periodic_rotation_keeps_the_old_cookie_working_during_grace,
);

fn ids(list: &[sessionkit::SessionInfo]) -> Vec<String> {
    list.iter().map(|s| s.id.to_string()).collect()
}

// ---------------------------------------------------------------- 5. login

async fn login_rotates_the_token_and_keeps_data(backend: Backend, fw: Framework) {
    let manager = backend.manager(SessionConfig::default());
    let srv = with_layer(
        fw,
        routes().route(
            "/login-and-note/{user}",
            |session: Session, params: Vec<String>| async move {
                let [user] = <[String; 1]>::try_from(params).expect("one param");
                session.insert("before", "b")?;
                session.login(user).await?;
                session.insert("after", "a")?;
                Ok::<_, Error>("ok")
            },
        ),
        manager.clone(),
    )
    .await;

    let mut c = Client::new();
    c.body(&srv, "/set/cart/apple").await;
    let old = c.token().to_owned();
    let old_id = body_of(&srv, "/id", &old).await;

    let res = c.get(&srv, "/login/alice").await;
    assert_eq!(res.status, StatusCode::OK);
    let cookie = res.session_cookie().expect("login sets a new cookie");
    cookie.assert_default_attributes();
    assert_eq!(res.cache_control(), Some("no-store"));
    let new = cookie.value;
    assert_token_shape(&new);
    assert_ne!(new, old, "login must rotate the token");
    let new_id = res.body.clone();
    assert_ne!(new_id, old_id, "login must change the session id");
    assert_eq!(body_of(&srv, "/id", &new).await, new_id);

    // The data came along, and the user is bound.
    assert_eq!(body_of(&srv, "/get/cart", &new).await, "apple");
    assert_eq!(whoami(&srv, &new).await, "alice");
    assert_eq!(
        ids(&manager.sessions_of("alice").await.unwrap()),
        vec![new_id]
    );

    // The old cookie is dead: anonymous, without the data (fixation defence).
    assert_eq!(whoami(&srv, &old).await, ANONYMOUS);
    assert_eq!(body_of(&srv, "/get/cart", &old).await, NONE);
    assert_eq!(body_of(&srv, "/keys", &old).await, "");
    // A write with it (a request racing the login) is dropped: it sets no
    // cookie, so the browser keeps the new token, and reaches no session.
    let res = get_with(&srv, "/set/x/1", Some(&old)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.session_cookie().is_none(),
        "neither a new anonymous cookie nor a removal: {:?}",
        res.headers
    );
    assert_eq!(body_of(&srv, "/get/x", &old).await, NONE);
    assert_eq!(body_of(&srv, "/get/x", &new).await, NONE);
    assert_eq!(whoami(&srv, &old).await, ANONYMOUS);

    // Changes made in the login request, before and after the login, are kept.
    let mut d = Client::new();
    d.body(&srv, "/set/cart/pear").await;
    let before = d.token().to_owned();
    let res = d.get(&srv, "/login-and-note/bob").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_ne!(d.token(), before);
    assert_eq!(d.body(&srv, "/keys").await, "after,before,cart");
    assert_eq!(d.body(&srv, "/whoami").await, "bob");

    // Logging in from a client with no stored session also works.
    let mut e = Client::new();
    e.body(&srv, "/login/carol").await;
    assert_eq!(e.body(&srv, "/whoami").await, "carol");
}

// ---------------------------------------------------------------- 6. logout

async fn logout_during_an_in_flight_request_is_final(backend: Backend, fw: Framework) {
    let manager = backend.manager(SessionConfig::default());
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let srv = with_layer(
        fw,
        routes().route("/slow", {
            let entered = entered.clone();
            let release = release.clone();
            move |session: Session, _| {
                let entered = entered.clone();
                let release = release.clone();
                async move {
                    let cart: Option<String> = session.get("cart")?;
                    entered.notify_one();
                    release.notified().await;
                    session.insert("late", "written after logout")?;
                    Ok::<_, Error>(format!("slow done, cart={}", cart.unwrap_or_default()))
                }
            }
        }),
        manager.clone(),
    )
    .await;

    let mut c = Client::new();
    c.body(&srv, "/set/cart/apple").await;
    c.body(&srv, "/login/bob").await;
    let token = c.token().to_owned();
    assert_eq!(manager.sessions_of("bob").await.unwrap().len(), 1);

    let slow = tokio::spawn({
        let srv = srv.clone();
        let token = token.clone();
        async move { get_with(&srv, "/slow", Some(&token)).await }
    });
    entered.notified().await;

    let res = get_with(&srv, "/logout", Some(&token)).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, "bye"));
    let removal = res.session_cookie().expect("logout clears the cookie");
    assert!(removal.is_removal(), "{}", removal.raw);
    assert_eq!(removal.max_age(), Some(0), "{}", removal.raw);
    removal.assert_default_attributes();
    assert_eq!(res.cache_control(), Some("no-store"));
    assert!(manager.sessions_of("bob").await.unwrap().is_empty());

    release.notify_one();
    let res = slow.await.unwrap();
    // The response is kept...
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body, "slow done, cart=apple");
    // ...and tells the client to clear the cookie, with matching attributes.
    let removal = res
        .session_cookie()
        .expect("the in-flight request clears the cookie");
    assert_eq!(removal.value, "", "{}", removal.raw);
    assert_eq!(removal.max_age(), Some(0), "{}", removal.raw);
    removal.assert_default_attributes();
    assert_eq!(res.cache_control(), Some("no-store"));

    // The session did not come back.
    assert_eq!(whoami(&srv, &token).await, ANONYMOUS);
    assert_eq!(body_of(&srv, "/get/late", &token).await, NONE);
    assert_eq!(body_of(&srv, "/keys", &token).await, "");
    assert!(manager.sessions_of("bob").await.unwrap().is_empty());
}

// ---------------------------------------------------------------- 7. single login

async fn single_login_under_concurrent_logins_leaves_one_session(backend: Backend, fw: Framework) {
    let manager = backend.manager(SessionConfig::default().single_login(true));
    let srv = app(fw, manager.clone()).await;

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let srv = srv.clone();
            tokio::spawn(async move {
                let mut c = Client::new();
                c.body(&srv, &format!("/set/client/{i}")).await;
                let anonymous = c.token().to_owned();
                let res = c.get(&srv, "/login/carol").await;
                assert_eq!(res.status, StatusCode::OK, "{}", res.body);
                assert_ne!(c.token(), anonymous);
                (i, c.token().to_owned(), res.body)
            })
        })
        .collect();
    let mut logins = Vec::new();
    for t in tasks {
        logins.push(t.await.unwrap());
    }
    let distinct: HashSet<&String> = logins.iter().map(|(_, t, _)| t).collect();
    assert_eq!(distinct.len(), 20, "every login got its own token");

    let live = manager.sessions_of("carol").await.unwrap();
    assert_eq!(live.len(), 1, "single login left {} sessions", live.len());

    let mut authenticated = Vec::new();
    for (i, token, id) in &logins {
        if whoami(&srv, token).await == "carol" {
            authenticated.push((*i, token.clone(), id.clone()));
        }
    }
    assert_eq!(
        authenticated.len(),
        1,
        "exactly one cookie may still authenticate"
    );
    let (i, token, id) = &authenticated[0];
    assert_eq!(live[0].id.to_string(), *id);
    assert_eq!(body_of(&srv, "/get/client", token).await, i.to_string());
}

// ---------------------------------------------------------------- 8. max sessions

/// Logs `n` fresh clients in as `user`, the clock moving a little before
/// each; answers (token, session id) per client.
async fn login_clients(
    backend: &Backend,
    srv: &TestServer,
    user: &str,
    n: usize,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        backend.advance(TICK).await;
        let mut c = Client::new();
        let id = c.body(srv, &format!("/login/{user}")).await;
        out.push((c.token().to_owned(), id));
    }
    out
}

async fn max_sessions_evict_oldest_evicts_least_recently_used(backend: Backend, fw: Framework) {
    let config = SessionConfig::default()
        .max_sessions_per_user(3, MaxSessionsPolicy::EvictOldest)
        .touch_interval(Duration::from_millis(50));
    let manager = backend.manager(config);
    let srv = app(fw, manager.clone()).await;

    // Five logins in a row: the first two are evicted.
    let c = login_clients(&backend, &srv, "dave", 5).await;
    let live = manager.sessions_of("dave").await.unwrap();
    assert_eq!(live.len(), 3);
    let live_ids: HashSet<String> = ids(&live).into_iter().collect();
    let expected: HashSet<String> = c[2..].iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(live_ids, expected);
    // Most recently used first.
    assert_eq!(
        ids(&live),
        vec![c[4].1.clone(), c[3].1.clone(), c[2].1.clone()]
    );
    for (token, _) in &c[..2] {
        assert_eq!(whoami(&srv, token).await, ANONYMOUS);
    }
    for (token, _) in &c[2..] {
        assert_eq!(whoami(&srv, token).await, "dave");
    }

    // Using the oldest session before the next login saves it: the least
    // recently *used* one goes instead.
    let e = login_clients(&backend, &srv, "erin", 3).await;
    backend.advance(TICK).await;
    assert_eq!(whoami(&srv, &e[0].0).await, "erin"); // touch
    let more = login_clients(&backend, &srv, "erin", 1).await;
    assert_eq!(
        ids(&manager.sessions_of("erin").await.unwrap()),
        vec![more[0].1.clone(), e[0].1.clone(), e[2].1.clone()]
    );
    assert_eq!(
        whoami(&srv, &e[1].0).await,
        ANONYMOUS,
        "LRU session evicted"
    );
    assert_eq!(whoami(&srv, &e[0].0).await, "erin", "recently used kept");
    assert_eq!(whoami(&srv, &e[2].0).await, "erin");
    assert_eq!(whoami(&srv, &more[0].0).await, "erin");

    // Other users are not affected.
    for (token, _) in &c[2..] {
        assert_eq!(whoami(&srv, token).await, "dave");
    }
}

async fn max_sessions_reject_new_refuses_and_changes_nothing(backend: Backend, fw: Framework) {
    let manager = backend
        .manager(SessionConfig::default().max_sessions_per_user(2, MaxSessionsPolicy::RejectNew));
    let srv = app(fw, manager.clone()).await;

    let c = login_clients(&backend, &srv, "frank", 2).await;

    let mut third = Client::new();
    third.body(&srv, "/set/cart/pear").await;
    let anonymous = third.token().to_owned();
    let res = third.get(&srv, "/login/frank").await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    assert!(res.body.contains('2'), "body names the limit: {}", res.body);
    assert!(
        res.session_cookie().is_none(),
        "a refused login changes no cookie"
    );
    assert_eq!(third.token(), anonymous);

    assert_eq!(third.body(&srv, "/get/cart").await, "pear");
    assert_eq!(third.body(&srv, "/whoami").await, ANONYMOUS);
    let live = ids(&manager.sessions_of("frank").await.unwrap());
    assert_eq!(live.len(), 2);
    for (token, id) in &c {
        assert!(live.contains(id));
        assert_eq!(whoami(&srv, token).await, "frank");
    }

    // After one logs out, the third client may log in, keeping its data.
    body_of(&srv, "/logout", &c[0].0).await;
    let res = third.get(&srv, "/login/frank").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_ne!(third.token(), anonymous);
    assert_eq!(third.body(&srv, "/get/cart").await, "pear");
    assert_eq!(manager.sessions_of("frank").await.unwrap().len(), 2);
}

// ---------------------------------------------------------------- 9. expiry

async fn idle_timeout_expires_an_unused_session(backend: Backend, fw: Framework) {
    let manager = backend.manager(
        SessionConfig::default()
            .idle_timeout(Duration::from_secs(2))
            .absolute_timeout(Duration::from_secs(4)),
    );
    let srv = app(fw, manager.clone()).await;
    let mut anon = Client::new();
    anon.body(&srv, "/set/a/1").await;
    let mut user = Client::new();
    user.body(&srv, "/login/gina").await;
    assert_eq!(manager.sessions_of("gina").await.unwrap().len(), 1);

    backend.advance(Duration::from_secs(3)).await;

    let res = get_with(&srv, "/get/a", Some(anon.token())).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, NONE));
    assert!(res.session_cookie().is_none());
    assert_eq!(whoami(&srv, user.token()).await, ANONYMOUS);
    assert!(manager.sessions_of("gina").await.unwrap().is_empty());
    // A write gets a new session, not the expired one back.
    let res = get_with(&srv, "/set/b/1", Some(anon.token())).await;
    assert_ne!(res.expect_token(), anon.token());
}

async fn idle_timeout_slides_with_use(backend: Backend, fw: Framework) {
    let srv = app(
        fw,
        backend.manager(
            SessionConfig::default()
                .idle_timeout(Duration::from_secs(2))
                .touch_interval(Duration::from_millis(100)),
        ),
    )
    .await;
    let mut c = Client::new();
    c.body(&srv, "/set/a/1").await;
    let token = c.token().to_owned();

    // Read-only use every 1.5 s keeps it alive well past 2 s.
    for _ in 0..2 {
        backend.advance(Duration::from_millis(1500)).await;
        assert_eq!(body_of(&srv, "/get/a", &token).await, "1");
    }
}

async fn absolute_timeout_is_not_extended_by_activity(backend: Backend, fw: Framework) {
    let srv = app(
        fw,
        backend.manager(
            SessionConfig::default()
                .idle_timeout(Duration::from_secs(2))
                .absolute_timeout(Duration::from_secs(4))
                .touch_interval(Duration::from_millis(100)),
        ),
    )
    .await;
    let mut c = Client::new();
    assert_eq!(c.body(&srv, "/incr").await, "1");
    let token = c.token().to_owned();

    backend.advance(Duration::from_millis(1500)).await;
    assert_eq!(c.body(&srv, "/incr").await, "2");
    backend.advance(Duration::from_millis(1500)).await;
    assert_eq!(c.body(&srv, "/get/n").await, "2");
    assert_eq!(c.token(), token);

    // 4.5 s after creation, 1.5 s after the last use: gone.
    backend.advance(Duration::from_millis(1500)).await;
    assert_eq!(body_of(&srv, "/get/n", &token).await, NONE);
    let res = c.get(&srv, "/incr").await;
    assert_eq!(res.body, "1", "a fresh session starts counting again");
    assert_ne!(res.expect_token(), token);
}

async fn absolute_timeout_is_not_extended_by_rotation(backend: Backend, fw: Framework) {
    let srv = with_layer(
        fw,
        routes().route("/rotate", |session: Session, _| async move {
            session.rotate().await?;
            Ok::<_, Error>("rotated")
        }),
        backend.manager(
            SessionConfig::default()
                .idle_timeout(Duration::from_secs(2))
                .absolute_timeout(Duration::from_secs(4))
                .touch_interval(Duration::from_millis(100))
                .rotation_interval(Some(Duration::from_secs(1)))
                .rotation_grace(Duration::from_secs(1)),
        ),
    )
    .await;
    let mut c = Client::new();
    c.body(&srv, "/set/a/1").await;
    let t1 = c.token().to_owned();

    // Periodic rotation at 1.5 s.
    backend.advance(Duration::from_millis(1500)).await;
    assert_eq!(c.body(&srv, "/get/a").await, "1");
    let t2 = c.token().to_owned();
    assert_ne!(t2, t1, "periodic rotation");

    // Explicit rotation at 3 s: the old token stops working at once.
    backend.advance(Duration::from_millis(1500)).await;
    let res = c.get(&srv, "/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let t3 = c.token().to_owned();
    assert!(t3 != t2 && t3 != t1, "explicit rotation");
    assert_eq!(body_of(&srv, "/get/a", &t2).await, NONE);
    assert_eq!(body_of(&srv, "/get/a", &t3).await, "1");

    // 4.5 s after creation, 1.5 s after the last rotation: gone all the same.
    backend.advance(Duration::from_millis(1500)).await;
    let res = get_with(&srv, "/get/a", Some(&t3)).await;
    assert_eq!((res.status, res.body.as_str()), (StatusCode::OK, NONE));
    assert!(res.session_cookie().is_none());
}

// ---------------------------------------------------------------- 13. revoke

async fn revoke_revoke_user_and_revoke_user_except(backend: Backend, fw: Framework) {
    let manager = backend.manager(SessionConfig::default());
    let srv = app(fw, manager.clone()).await;

    let long_ua = "x".repeat(1000);
    let agents = ["ua-0", "ua-1", "ua-2", long_ua.as_str()];
    let mut clients = Vec::new();
    let mut by_id: HashMap<String, String> = HashMap::new();
    for ua in agents {
        let mut c = Client::with_user_agent(ua);
        let id = c.body(&srv, "/login/hank").await;
        assert_eq!(c.body(&srv, "/id").await, id, "/id shows the session id");
        by_id.insert(id.clone(), ua.to_owned());
        clients.push((c, id));
    }
    let mut ivy = Client::with_user_agent("ivy-ua");
    ivy.body(&srv, "/login/ivy").await;

    let list = manager.sessions_of("hank").await.unwrap();
    assert_eq!(list.len(), 4);
    let listed: HashSet<String> = ids(&list).into_iter().collect();
    assert_eq!(listed, by_id.keys().cloned().collect::<HashSet<_>>());
    for info in &list {
        assert_eq!(info.user_id, "hank");
        let ua = info.user_agent.as_deref().expect("user agent recorded");
        let sent = &by_id[&info.id.to_string()];
        if sent.len() > 256 {
            assert!(ua.len() <= 256 && sent.starts_with(ua), "UA not truncated");
        } else {
            assert_eq!(ua, sent);
        }
    }

    // revoke: one session.
    let id0: SessionId = clients[0].1.parse().unwrap();
    assert!(manager.revoke(&id0).await.unwrap());
    assert!(!manager.revoke(&id0).await.unwrap(), "already revoked");
    assert_eq!(clients[0].0.body(&srv, "/whoami").await, ANONYMOUS);
    for (c, _) in &mut clients[1..] {
        assert_eq!(c.body(&srv, "/whoami").await, "hank");
    }
    assert_eq!(manager.sessions_of("hank").await.unwrap().len(), 3);

    // revoke_user_except: all but one.
    let keep: SessionId = clients[2].1.parse().unwrap();
    assert_eq!(manager.revoke_user_except("hank", &keep).await.unwrap(), 2);
    for i in [1, 3] {
        assert_eq!(clients[i].0.body(&srv, "/whoami").await, ANONYMOUS);
    }
    assert_eq!(clients[2].0.body(&srv, "/whoami").await, "hank");
    assert_eq!(
        ids(&manager.sessions_of("hank").await.unwrap()),
        vec![clients[2].1.clone()]
    );

    // revoke_user: everything.
    assert_eq!(manager.revoke_user("hank").await.unwrap(), 1);
    assert_eq!(clients[2].0.body(&srv, "/whoami").await, ANONYMOUS);
    assert!(manager.sessions_of("hank").await.unwrap().is_empty());
    assert_eq!(manager.revoke_user("hank").await.unwrap(), 0);

    // Another user was never touched.
    assert_eq!(ivy.body(&srv, "/whoami").await, "ivy");
    let ivy_list = manager.sessions_of("ivy").await.unwrap();
    assert_eq!(ivy_list.len(), 1);
    assert_eq!(ivy_list[0].user_agent.as_deref(), Some("ivy-ua"));
}

// ---------------------------------------------------------------- 15. rotation

async fn periodic_rotation_keeps_the_old_cookie_working_during_grace(
    backend: Backend,
    fw: Framework,
) {
    let srv = app(
        fw,
        backend.manager(
            SessionConfig::default()
                .rotation_interval(Some(Duration::from_secs(1)))
                .rotation_grace(Duration::from_secs(1)),
        ),
    )
    .await;
    let mut c = Client::new();
    c.body(&srv, "/set/a/1").await;
    let t1 = c.token().to_owned();
    let id1 = body_of(&srv, "/id", &t1).await;
    // Not due yet: no new cookie.
    get_with(&srv, "/get/a", Some(&t1))
        .await
        .assert_ok_without_cookie("before the rotation interval");

    backend.advance(Duration::from_millis(1500)).await;

    let res = get_with(&srv, "/get/a", Some(&t1)).await;
    assert_eq!(res.body, "1");
    let cookie = res.session_cookie().expect("rotation sends a new cookie");
    cookie.assert_default_attributes();
    assert_eq!(res.cache_control(), Some("no-store"));
    let t2 = cookie.value;
    assert_token_shape(&t2);
    assert_ne!(t2, t1);
    let id2 = body_of(&srv, "/id", &t2).await;
    assert_ne!(id2, id1);

    // Within the grace the old cookie still reads and writes the same session
    // (without being rotated again).
    let res = get_with(&srv, "/get/a", Some(&t1)).await;
    assert_eq!(res.body, "1");
    res.assert_ok_without_cookie("old token during grace");
    get_with(&srv, "/set/b/2", Some(&t1))
        .await
        .assert_ok_without_cookie("write with the old token during grace");
    assert_eq!(body_of(&srv, "/get/b", &t2).await, "2");
    assert_eq!(body_of(&srv, "/keys", &t2).await, "a,b");

    // After the grace only the new token works (and is itself rotated).
    backend.advance(Duration::from_millis(1500)).await;
    assert_eq!(body_of(&srv, "/keys", &t1).await, "");
    let res = get_with(&srv, "/keys", Some(&t2)).await;
    assert_eq!(res.body, "a,b");
    let t3 = res.expect_token();
    assert!(t3 != t1 && t3 != t2);
    assert_eq!(body_of(&srv, "/keys", &t3).await, "a,b");
}
