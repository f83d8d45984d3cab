//! The watchdog of a topology shared by a test binary (see `shared.rs`,
//! `postgres_server.rs`): a `static` is never dropped, so the processes it
//! started would outlive the binary without it.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// A process, in a process group of its own (so a Ctrl-C of `cargo test`
/// does not take it down first), that polls this process every second; once
/// it is gone (or a zombie), SIGKILLs every process whose command line holds
/// `sessionkit-<kind>-<pid>-` (the directories [`unique_dir`] gives this
/// process for `kind`, every start attempt included) and removes those
/// directories.
///
/// The pattern reaches the shell through the environment, not its command
/// line, so that `pkill -f` does not match the shell itself.
///
/// [`unique_dir`]: super::redis_cluster::unique_dir
pub fn watchdog(kind: &str) -> Child {
    let pid = std::process::id();
    let name = format!("sessionkit-{kind}-{pid}-");
    let dirs = std::env::temp_dir().join(&name);
    // Alive: signalable and, where there is a /proc, not a zombie (an
    // exited process whose parent has not reaped it yet).
    let script = r#"alive() {
    kill -0 "$SK_PID" 2>/dev/null || return 1
    [ -r "/proc/$SK_PID/stat" ] || return 0
    s=$(cat "/proc/$SK_PID/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [ "${s%% *}" != Z ]
}
while alive; do sleep 1; done
pkill -KILL -f "$SK_PATTERN"
rm -rf "$SK_DIRS"*"#;
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("SK_PID", pid.to_string())
        .env("SK_PATTERN", &name)
        .env("SK_DIRS", &dirs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start the watchdog of the shared {kind}: {e}"))
}
