//! `RedisStore` over TLS (`rediss://`, the `redis-tls` feature): a
//! `redis-server` of the test's own with a TLS port and a certificate signed
//! by a CA made here (with the `openssl` command), with and without the
//! client-side cache (whose tracked connection must keep the TLS settings).
#![cfg(feature = "redis-tls")]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sessionkit::redis::RedisStore;
use sessionkit::store::{LoadOutcome, NewSession, SessionStore, Timeouts};
use support::records::{anon_id, client, data};
use support::redis_server::free_port;
use support::RedisServer;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl not found ({e}): install it with `apt-get install openssl`")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1, in `dir`.
fn make_certs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=sessionkit test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
}

async fn round_trip(store: &RedisStore) {
    let timeouts = Timeouts {
        idle: Duration::from_secs(60),
        absolute: Duration::from_secs(600),
        touch_interval: Duration::from_secs(10),
    };
    let d = data(&[("cart", json!([1, 2]))]);
    let id = anon_id();
    let c = client();
    store
        .create(
            &id,
            NewSession {
                data: &d,
                client: &c,
            },
            &timeouts,
        )
        .await
        .expect("create over TLS");
    for _ in 0..2 {
        match store.load(&id, &timeouts).await.expect("load over TLS") {
            LoadOutcome::Live(l) => assert_eq!(l.data.get("cart"), Some(&json!([1, 2]))),
            other => panic!("the session written over TLS is not there: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_over_tls_with_and_without_the_cache() {
    let dir = std::env::temp_dir().join(format!("sessionkit-tls-{}", std::process::id()));
    make_certs(&dir);
    let tls_port = free_port().to_string();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let certs = || ::redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(&ca).unwrap()),
    };

    let plain = RedisStore::builder()
        .client(::redis::Client::build_with_tls(url.as_str(), certs()).unwrap())
        .build()
        .await
        .expect("connect over TLS");
    round_trip(&plain).await;

    let cached = RedisStore::builder()
        .client(::redis::Client::build_with_tls(url.as_str(), certs()).unwrap())
        .client_cache(100)
        .build()
        .await
        .expect("connect over TLS with the cache");
    round_trip(&cached).await;
    let stats = cached.client_cache_stats().expect("cache on");
    assert!(
        stats.hits >= 1,
        "the second load is a hit over the TLS tracked link: {stats:?}"
    );

    // An untrusted certificate is refused: the system roots do not hold our CA.
    let refused = RedisStore::builder().url(url.as_str()).build().await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA must be refused"
    );

    // Every connection of the stores came in on the TLS port, the cache's
    // tracked one (flag `t`) included; only this check used the plain port.
    let clients = server.command(&["CLIENT", "LIST"]);
    eprintln!("CLIENT LIST:\n{clients}");
    let tls_addr = format!("laddr=127.0.0.1:{tls_port} ");
    let ours: Vec<&str> = clients
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .collect();
    assert!(ours.len() >= 2, "the stores' connections: {ours:?}");
    assert!(
        ours.iter().all(|l| l.contains(&tls_addr)),
        "a store connection without TLS: {ours:?}"
    );
    assert!(
        ours.iter().any(|l| l.contains(" flags=t ")),
        "the tracked connection of the cache is not there: {ours:?}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
