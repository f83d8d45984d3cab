//! Per-user operations of `SessionManager`, on every backend.

mod support;

use sessionkit::store::ClientInfo;
use sessionkit::{SessionConfig, SessionManager};
use support::Backend;

async fn logged_in(manager: &SessionManager, user: &str) -> sessionkit::SessionId {
    let session = manager.load(None, ClientInfo::default()).await.unwrap();
    session.login(user).await.unwrap();
    manager.commit(&session).await.unwrap();
    session.id().expect("stored after login")
}

async fn revoke_of_user_only_ends_the_users_own_sessions(b: Backend) {
    let manager = b.manager(SessionConfig::default());
    let ada = logged_in(&manager, "ada").await;
    let ada2 = logged_in(&manager, "ada").await;
    let bob = logged_in(&manager, "bob").await;

    assert!(
        !manager.revoke_of_user("ada", &bob).await.unwrap(),
        "another user's session is refused"
    );
    assert_eq!(manager.sessions_of("bob").await.unwrap().len(), 1);
    assert!(
        !manager.revoke_of_user("bob", &ada).await.unwrap(),
        "and the other way round"
    );

    assert!(manager.revoke_of_user("ada", &ada2).await.unwrap());
    let left: Vec<_> = manager
        .sessions_of("ada")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, vec![ada.clone()]);
    assert!(
        !manager.revoke_of_user("ada", &ada2).await.unwrap(),
        "an ended session is not ended twice"
    );
}

async fn logout_everywhere_ends_all_the_users_sessions_and_clears_this_cookie(b: Backend) {
    let manager = b.manager(SessionConfig::default());
    let other_device = logged_in(&manager, "ada").await;
    let bob = logged_in(&manager, "bob").await;
    let session = manager.load(None, ClientInfo::default()).await.unwrap();
    session.login("ada").await.unwrap();
    manager.commit(&session).await.unwrap();

    assert_eq!(session.logout_everywhere().await.unwrap(), 2);
    assert!(session.user_id().is_none() && session.id().is_none());
    let headers = manager.commit(&session).await.unwrap();
    let cookie = headers
        .iter()
        .find(|(n, _, _)| *n == "set-cookie")
        .map(|(_, v, _)| v.to_owned())
        .expect("this request clears its cookie");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert!(manager.sessions_of("ada").await.unwrap().is_empty());
    assert!(
        !manager.revoke(&other_device).await.unwrap(),
        "already ended"
    );
    assert_eq!(manager.sessions_of("bob").await.unwrap()[0].id, bob);
}

backend_tests!(
    revoke_of_user_only_ends_the_users_own_sessions,
    logout_everywhere_ends_all_the_users_sessions_and_clears_this_cookie,
);
