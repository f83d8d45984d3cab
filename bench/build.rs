//! Records the resolved versions of the peers (from the workspace's
//! Cargo.lock) so the report names exactly what was measured.

fn main() {
    let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    println!("cargo:rerun-if-changed={lock_path}");
    let lock = std::fs::read_to_string(lock_path).unwrap_or_default();
    for (krate, var) in [
        ("tower-sessions", "PEER_TOWER_SESSIONS"),
        (
            "tower-sessions-redis-store",
            "PEER_TOWER_SESSIONS_REDIS_STORE",
        ),
        ("actix-session", "PEER_ACTIX_SESSION"),
        ("fred", "PEER_FRED"),
        ("axum", "PEER_AXUM"),
        ("actix-web", "PEER_ACTIX_WEB"),
    ] {
        let versions: Vec<&str> = lock
            .split("[[package]]")
            .filter(|p| p.contains(&format!("\nname = \"{krate}\"\n")))
            .filter_map(|p| {
                p.lines()
                    .find_map(|l| l.strip_prefix("version = \""))
                    .map(|v| v.trim_end_matches('"'))
            })
            .collect();
        let version = if versions.is_empty() {
            "?".to_owned()
        } else {
            versions.join("/")
        };
        println!("cargo:rustc-env={var}={version}");
    }
}
