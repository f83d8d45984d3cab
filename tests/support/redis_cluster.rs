//! A Redis Cluster of the test's own: 3 primaries and 3 replicas, each a
//! `redis-server` on free loopback ports, killed (and its files removed) on
//! drop.
//!
//! Every wait is a poll with a deadline, and every failure panics with what
//! was seen last: nothing here skips silently.
//!
//! The second half of this file holds the process and connection helpers
//! that [`redis_sentinel`](super::redis_sentinel) shares: [`RedisProcess`],
//! [`query`], [`connect`], [`run_redis_cli`], [`poll`].

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ::redis::Value;

use super::redis_server::{free_port, text};

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// How long [`RedisCluster::start`] waits for a created cluster to be ok.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running 6-node cluster (3 primaries, 3 replicas) that only this test
/// talks to.
pub struct RedisCluster {
    dir: PathBuf,
    nodes: Vec<RedisProcess>,
}

/// One node as a node's `CLUSTER NODES` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, ...
    pub flags: Vec<String>,
    /// The primary's id, for a replica.
    pub master_id: Option<String>,
    pub link_connected: bool,
    /// Inclusive slot ranges served.
    pub slots: Vec<(u16, u16)>,
    /// Whether a slot is being migrated to or imported from another node.
    pub open_slots: bool,
}

impl ClusterNode {
    pub fn is_primary(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }

    pub fn is_replica(&self) -> bool {
        self.flags.iter().any(|f| f == "slave")
    }

    fn is_myself(&self) -> bool {
        self.flags.iter().any(|f| f == "myself")
    }

    fn is_unhealthy(&self) -> bool {
        self.flags
            .iter()
            .any(|f| matches!(f.as_str(), "fail" | "fail?" | "handshake" | "noaddr"))
            || !self.link_connected
    }

    fn slot_count(&self) -> usize {
        self.slots.iter().map(|(a, b)| usize::from(b - a) + 1).sum()
    }
}

/// The cluster as its running nodes agree it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// Sorted by port.
    pub nodes: Vec<ClusterNode>,
}

impl ClusterView {
    fn by_id(&self, id: &str) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    fn by_port(&self, port: u16) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.port == port)
    }

    /// The port of the primary serving `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<u16> {
        self.nodes
            .iter()
            .find(|n| n.is_primary() && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .map(|n| n.port)
    }
}

/// One node's id, port, whether it is a primary, its primary's id and its
/// slots.
type NodeSummary = (String, u16, bool, Option<String>, Vec<(u16, u16)>);

/// What one node says: `CLUSTER INFO` fields and `CLUSTER NODES`.
struct NodeReport {
    port: u16,
    info: String,
    nodes: Vec<ClusterNode>,
    /// `master_link_status` from `INFO replication`, for a replica.
    master_link_up: Option<bool>,
}

impl NodeReport {
    fn field(&self, name: &str) -> Option<&str> {
        info_field(&self.info, name)
    }

    /// What must be equal on every node: ids, ports, roles, primaries and
    /// slots (not the flags, which differ for a node that is down).
    fn summary(&self) -> Vec<NodeSummary> {
        let mut out: Vec<_> = self
            .nodes
            .iter()
            .map(|n| {
                (
                    n.id.clone(),
                    n.port,
                    n.is_primary(),
                    n.master_id.clone(),
                    n.slots.clone(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

impl RedisCluster {
    /// Starts 6 nodes, joins them with `redis-cli --cluster create
    /// --cluster-replicas 1` and waits until every node reports
    /// `cluster_state:ok` with all 16384 slots assigned and all nodes agree.
    /// Retries on other ports if a port was taken meanwhile.
    pub fn start() -> Self {
        Self::start_named("cluster")
    }

    /// [`start`](Self::start), its files (and so every node's command line)
    /// under `sessionkit-<kind>-<pid>-<n>` ([`unique_dir`]).
    pub fn start_named(kind: &str) -> Self {
        require_redis_cli();
        let mut last_error = String::new();
        for attempt in 1..=3 {
            let dir = unique_dir(kind);
            let mut cluster = RedisCluster {
                dir,
                nodes: Vec::new(),
            };
            if let Err(e) = cluster.spawn_nodes(6) {
                last_error = e;
                eprintln!("RedisCluster::start attempt {attempt}: {last_error}");
                continue;
            }
            let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
            args.extend(
                cluster
                    .nodes
                    .iter()
                    .map(|n| format!("127.0.0.1:{}", n.port)),
            );
            args.extend(
                ["--cluster-replicas", "1", "--cluster-yes"]
                    .iter()
                    .map(|s| (*s).to_owned()),
            );
            let out = cluster.dir.join(format!("create-{attempt}.out"));
            match run_redis_cli(&args, &out, Duration::from_secs(60)) {
                Ok(_) => {
                    cluster.wait_until_ok(START_TIMEOUT);
                    return cluster;
                }
                Err(e) => {
                    last_error = e;
                    eprintln!("RedisCluster::start attempt {attempt}: {last_error}");
                }
            }
        }
        panic!("the Redis Cluster did not start: {last_error}");
    }

    /// Spawns `count` empty cluster-enabled nodes, each retried on other
    /// ports if its ports were taken.
    fn spawn_nodes(&mut self, count: usize) -> Result<(), String> {
        let mut taken = BTreeSet::new();
        for _ in 0..count {
            let mut last_error = String::new();
            let mut started = None;
            for _ in 0..10 {
                let [port, bus_port] = distinct_free_ports(&mut taken);
                let conf = self.dir.join(format!("nodes-{port}.conf"));
                let args = vec![
                    "--port".into(),
                    port.to_string(),
                    "--cluster-port".into(),
                    bus_port.to_string(),
                    "--bind".into(),
                    "127.0.0.1".into(),
                    "--dir".into(),
                    self.dir.display().to_string(),
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    conf.display().to_string(),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    // A replica always counts as fresh enough to fail over,
                    // however long its link was down (a loaded machine, a
                    // node just restarted): failovers are never refused.
                    "--cluster-replica-validity-factor".into(),
                    "0".into(),
                    // Replicas stay where the test put them.
                    "--cluster-allow-replica-migration".into(),
                    "no".into(),
                    "--save".into(),
                    "".into(),
                    "--appendonly".into(),
                    "no".into(),
                    // A full resync (a restarted node) starts at once, not
                    // after the default 5 s.
                    "--repl-diskless-sync-delay".into(),
                    "0".into(),
                    // Keeps the command line (and so the dir in it) as
                    // started, for the watchdog of a shared cluster
                    // (`support::shared`), which finds its nodes by it.
                    "--set-proc-title".into(),
                    "no".into(),
                ];
                let log = self.dir.join(format!("node-{port}.log"));
                match RedisProcess::spawn(port, args, log) {
                    Ok(p) => {
                        started = Some(p);
                        break;
                    }
                    Err(e) => last_error = e,
                }
            }
            match started {
                Some(p) => self.nodes.push(p),
                None => return Err(format!("a cluster node did not start: {last_error}")),
            }
        }
        Ok(())
    }

    /// `redis://127.0.0.1:<port>` of every node, primaries and replicas,
    /// running or not.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|n| url(n.port)).collect()
    }

    /// Ports of every node, running or not.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self, port: u16) -> String {
        url(port)
    }

    /// Ports of the nodes serving slots, as the running nodes agree.
    pub fn primaries(&self) -> Vec<u16> {
        self.view()
            .nodes
            .iter()
            .filter(|n| n.is_primary() && !n.slots.is_empty())
            .map(|n| n.port)
            .collect()
    }

    /// Ports of the replicas (running or not), as the running nodes agree.
    pub fn replicas(&self) -> Vec<u16> {
        self.view()
            .nodes
            .iter()
            .filter(|n| n.is_replica())
            .map(|n| n.port)
            .collect()
    }

    /// Ports of the replicas of the primary on `primary_port`.
    pub fn replicas_of(&self, primary_port: u16) -> Vec<u16> {
        let view = self.view();
        let id = &view
            .by_port(primary_port)
            .unwrap_or_else(|| panic!("no cluster node on port {primary_port}"))
            .id;
        view.nodes
            .iter()
            .filter(|n| n.master_id.as_ref() == Some(id))
            .map(|n| n.port)
            .collect()
    }

    /// The port of the primary that the replica on `replica_port` follows.
    pub fn primary_of(&self, replica_port: u16) -> u16 {
        let view = self.view();
        let replica = view
            .by_port(replica_port)
            .unwrap_or_else(|| panic!("no cluster node on port {replica_port}"));
        let master_id = replica
            .master_id
            .as_ref()
            .unwrap_or_else(|| panic!("127.0.0.1:{replica_port} is not a replica"));
        view.by_id(master_id)
            .unwrap_or_else(|| panic!("unknown primary {master_id}"))
            .port
    }

    /// The port of the primary serving `slot`.
    pub fn primary_for_slot(&self, slot: u16) -> u16 {
        assert!(slot < SLOTS, "slot {slot} out of range");
        self.view()
            .owner(slot)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// The slots served by the node on `port`, ascending.
    pub fn slots_of(&self, port: u16) -> Vec<u16> {
        let view = self.view();
        let node = view
            .by_port(port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"));
        node.slots.iter().flat_map(|&(a, b)| a..=b).collect()
    }

    /// The node id (`CLUSTER MYID`) of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        query_text(port, &["CLUSTER", "MYID"]).unwrap_or_else(|e| panic!("CLUSTER MYID: {e}"))
    }

    /// Whether the node on `port` is running (not [`kill`](Self::kill)ed).
    pub fn is_running(&self, port: u16) -> bool {
        self.process(port).is_running()
    }

    /// The cluster as its running nodes agree it is (polls up to 15 s for
    /// them to agree, then panics).
    pub fn view(&self) -> ClusterView {
        poll(
            Duration::from_secs(15),
            "the cluster nodes to agree",
            || self.reports().and_then(|r| agreed_view(&r)),
        )
    }

    /// Runs one command on the node on `port` (a plain connection: a key
    /// served elsewhere gets `Err("MOVED <slot> 127.0.0.1:<port>")`).
    pub fn command(&self, port: u16, args: &[&str]) -> Result<String, String> {
        query_text(port, args)
    }

    /// Runs one command the way a cluster-aware client would: starting at a
    /// running node and following `MOVED` and `ASK` redirections (and
    /// waiting out `TRYAGAIN` / `CLUSTERDOWN` for up to 10 s).
    pub fn cluster_command(&self, args: &[&str]) -> Result<String, String> {
        let mut port = self.running_ports()[0];
        let mut asking = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut hops = 0;
        loop {
            let mut con = connect(port)?;
            if asking {
                query_on(&mut con, port, &["ASKING"])?;
            }
            let reply = query_on(&mut con, port, args).map(|v| text(&v));
            let redirect = |e: &str| -> Option<u16> {
                e.rsplit(':').next().and_then(|p| p.trim().parse().ok())
            };
            match reply {
                Err(e) if e.starts_with("MOVED ") || e.starts_with("ASK ") => {
                    hops += 1;
                    if hops > 5 {
                        return Err(format!("too many redirections, last: {e}"));
                    }
                    asking = e.starts_with("ASK ");
                    port = redirect(&e).ok_or_else(|| format!("bad redirection: {e}"))?;
                }
                Err(e)
                    if (e.starts_with("TRYAGAIN") || e.starts_with("CLUSTERDOWN"))
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Runs `redis-cli -c` (the cluster-aware CLI, following redirections)
    /// against a running node with `args` and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.running_ports()[0];
        let mut all: Vec<String> = vec![
            "-c".into(),
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let out = self.dir.join("cli.out");
        run_redis_cli(&all, &out, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("redis-cli -c {args:?}: {e}"))
            .trim()
            .to_owned()
    }

    /// `CLUSTER FAILOVER` on the replica on `replica_port` (`FORCE` if its
    /// primary was killed), retried if the manual failover timed out; waits
    /// until it reports role master and the cluster is ok again.
    pub fn failover(&mut self, replica_port: u16) {
        let deadline = Instant::now() + Duration::from_secs(40);
        let primary = self.primary_of(replica_port);
        let mut force = !self.is_running(primary);
        let mut last = String::new();
        let mut promoted = false;
        while !promoted && Instant::now() < deadline {
            let mut cmd = vec!["CLUSTER", "FAILOVER"];
            if force {
                cmd.push("FORCE");
            }
            match query_text(replica_port, &cmd) {
                Ok(_) => {}
                Err(e) => {
                    // "Master is down or failed, please use CLUSTER FAILOVER FORCE"
                    force |= e.contains("FORCE");
                    last = e;
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            // Redis gives up a manual failover after 5 s (CLUSTER_MF_TIMEOUT).
            let attempt_end = (Instant::now() + Duration::from_secs(7)).min(deadline);
            while Instant::now() < attempt_end {
                if role(replica_port).as_deref() == Ok("master") {
                    promoted = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !promoted {
                last = format!("still a replica 7 s after {cmd:?}; retrying");
                eprintln!("RedisCluster::failover(127.0.0.1:{replica_port}): {last}");
            }
        }
        assert!(
            promoted,
            "127.0.0.1:{replica_port} was not promoted within 40 s: {last}"
        );
        let left = deadline.saturating_duration_since(Instant::now());
        self.wait_until_ok(left.max(Duration::from_secs(10)));
        let view = self.view();
        assert!(
            view.by_port(replica_port).is_some_and(|n| n.is_primary()),
            "127.0.0.1:{replica_port} reports master, but the cluster does not agree: {view:?}"
        );
    }

    /// SIGKILLs the node on `port` (as a crash would); its cluster config
    /// file stays, so [`restart`](Self::restart) brings it back.
    pub fn kill(&mut self, port: u16) {
        self.process_mut(port).kill();
    }

    /// Starts the killed node on `port` again, with the same arguments and
    /// cluster config file, so that it rejoins (a former primary whose slots
    /// were failed over comes back as a replica). Returns once the process
    /// answers; use [`wait_until_ok`](Self::wait_until_ok) to wait for it to
    /// be part of a healthy cluster again.
    pub fn restart(&mut self, port: u16) {
        let process = self.process_mut(port);
        process.kill();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match process.start() {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("RedisCluster::restart(127.0.0.1:{port}): {e}; retrying");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => panic!("cluster node 127.0.0.1:{port} did not restart: {e}"),
            }
        }
    }

    /// Waits until every running node reports `cluster_state:ok`, all 16384
    /// slots assigned and ok, knows every node, sees no running node as
    /// failing, has no slot being migrated, every running replica's link to
    /// its primary is up, every slot is served by a running node, and all
    /// running nodes agree on roles and slots. Panics after `timeout` with
    /// what was wrong last.
    pub fn wait_until_ok(&self, timeout: Duration) {
        poll(timeout, "the cluster to be ok", || self.health());
    }

    fn health(&self) -> Result<ClusterView, String> {
        let reports = self.reports()?;
        let running = self.running_ports();
        for r in &reports {
            let at = format!("127.0.0.1:{}", r.port);
            if r.field("cluster_state") != Some("ok") {
                return Err(format!("{at}: cluster_state is not ok:\n{}", r.info));
            }
            for field in ["cluster_slots_assigned", "cluster_slots_ok"] {
                if r.field(field) != Some("16384") {
                    return Err(format!("{at}: {field} is not 16384:\n{}", r.info));
                }
            }
            let known = r.field("cluster_known_nodes").unwrap_or("?");
            if known != self.nodes.len().to_string() {
                return Err(format!("{at}: knows {known} nodes"));
            }
            for n in &r.nodes {
                if n.open_slots {
                    return Err(format!("{at}: 127.0.0.1:{} has open slots", n.port));
                }
                if !n.is_myself() && running.contains(&n.port) && n.is_unhealthy() {
                    return Err(format!(
                        "{at} sees running node 127.0.0.1:{} as {:?} (link connected: {})",
                        n.port, n.flags, n.link_connected
                    ));
                }
            }
            if r.master_link_up == Some(false) {
                return Err(format!("{at}: replica whose master link is not up"));
            }
        }
        let view = agreed_view(&reports)?;
        for n in &view.nodes {
            if n.is_primary() && !n.slots.is_empty() && !running.contains(&n.port) {
                return Err(format!(
                    "127.0.0.1:{} is killed but still serves {} slots",
                    n.port,
                    n.slot_count()
                ));
            }
        }
        Ok(view)
    }

    /// Moves `slots` slots from the primary on `from_port` to the one on
    /// `to_port` (with their keys) with `redis-cli --cluster reshard`, then
    /// waits until the cluster is ok and checks the counts. A reshard that
    /// fails halfway is repaired with `redis-cli --cluster fix` and resumed.
    pub fn reshard(&mut self, from_port: u16, to_port: u16, slots: u32) {
        self.wait_until_ok(Duration::from_secs(30));
        let from_before = self.slots_of(from_port).len();
        let to_before = self.slots_of(to_port).len();
        assert!(
            from_before >= slots as usize,
            "127.0.0.1:{from_port} serves only {from_before} slots, cannot move {slots}"
        );
        let from_id = self.node_id(from_port);
        let to_id = self.node_id(to_port);
        let mut left = slots as usize;
        let mut last = String::new();
        for attempt in 1..=3 {
            let args: Vec<String> = [
                "--cluster".to_owned(),
                "reshard".to_owned(),
                format!("127.0.0.1:{from_port}"),
                "--cluster-from".to_owned(),
                from_id.clone(),
                "--cluster-to".to_owned(),
                to_id.clone(),
                "--cluster-slots".to_owned(),
                left.to_string(),
                "--cluster-yes".to_owned(),
            ]
            .into();
            let out = self.dir.join(format!("reshard-{attempt}.out"));
            match run_redis_cli(&args, &out, Duration::from_secs(120)) {
                Ok(_) => {
                    last.clear();
                    break;
                }
                Err(e) => {
                    last = e;
                    eprintln!("RedisCluster::reshard attempt {attempt} failed: {last}");
                    let fix: Vec<String> = [
                        "--cluster".to_owned(),
                        "fix".to_owned(),
                        format!("127.0.0.1:{from_port}"),
                        "--cluster-yes".to_owned(),
                    ]
                    .into();
                    let out = self.dir.join(format!("fix-{attempt}.out"));
                    if let Err(e) = run_redis_cli(&fix, &out, Duration::from_secs(60)) {
                        eprintln!("RedisCluster::reshard: redis-cli --cluster fix: {e}");
                    }
                    self.wait_until_ok(Duration::from_secs(30));
                    let moved = self.slots_of(to_port).len().saturating_sub(to_before);
                    left = (slots as usize).saturating_sub(moved);
                    if left == 0 {
                        last.clear();
                        break;
                    }
                }
            }
        }
        assert!(last.is_empty(), "reshard failed 3 times: {last}");
        self.wait_until_ok(Duration::from_secs(30));
        let from_after = self.slots_of(from_port).len();
        let to_after = self.slots_of(to_port).len();
        assert_eq!(
            (from_after, to_after),
            (from_before - slots as usize, to_before + slots as usize),
            "slot counts of 127.0.0.1:{from_port} and 127.0.0.1:{to_port} after moving {slots}"
        );
    }

    fn running_ports(&self) -> Vec<u16> {
        let ports: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.port)
            .collect();
        assert!(!ports.is_empty(), "no cluster node is running");
        ports
    }

    fn process(&self, port: u16) -> &RedisProcess {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    fn process_mut(&mut self, port: u16) -> &mut RedisProcess {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// What every running node says.
    fn reports(&self) -> Result<Vec<NodeReport>, String> {
        self.running_ports()
            .into_iter()
            .map(|port| {
                let mut con = connect(port)?;
                let info = text(&query_on(&mut con, port, &["CLUSTER", "INFO"])?);
                let nodes =
                    parse_cluster_nodes(&text(&query_on(&mut con, port, &["CLUSTER", "NODES"])?))
                        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
                let me = nodes
                    .iter()
                    .find(|n| n.is_myself())
                    .ok_or_else(|| format!("127.0.0.1:{port}: no myself in CLUSTER NODES"))?;
                let master_link_up = if me.is_replica() {
                    let repl = text(&query_on(&mut con, port, &["INFO", "replication"])?);
                    Some(info_field(&repl, "master_link_status") == Some("up"))
                } else {
                    None
                };
                Ok(NodeReport {
                    port,
                    info,
                    nodes,
                    master_link_up,
                })
            })
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The view all `reports` agree on.
fn agreed_view(reports: &[NodeReport]) -> Result<ClusterView, String> {
    let first = reports.first().ok_or("no node answered")?;
    let summary = first.summary();
    for r in &reports[1..] {
        if r.summary() != summary {
            return Err(format!(
                "127.0.0.1:{} and 127.0.0.1:{} disagree:\n{:?}\nversus\n{:?}",
                first.port, r.port, first.nodes, r.nodes
            ));
        }
    }
    let mut nodes = first.nodes.clone();
    nodes.sort_by_key(|n| n.port);
    Ok(ClusterView { nodes })
}

/// Parses `CLUSTER NODES`.
pub fn parse_cluster_nodes(reply: &str) -> Result<Vec<ClusterNode>, String> {
    let mut out = Vec::new();
    for line in reply.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("bad CLUSTER NODES line: {line}"));
        }
        // 127.0.0.1:7000@17000[,hostname]
        let address = fields[1].split(['@', ',']).next().unwrap_or("");
        let port = address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("bad address in: {line}"))?;
        let mut slots = Vec::new();
        let mut open_slots = false;
        for s in &fields[8..] {
            if s.starts_with('[') {
                open_slots = true;
                continue;
            }
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let a: u16 = a.parse().map_err(|_| format!("bad slot {s} in: {line}"))?;
            let b: u16 = b.parse().map_err(|_| format!("bad slot {s} in: {line}"))?;
            slots.push((a, b));
        }
        slots.sort_unstable();
        out.push(ClusterNode {
            id: fields[0].to_owned(),
            port,
            flags: fields[2].split(',').map(str::to_owned).collect(),
            master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
            link_connected: fields[7] == "connected",
            slots,
            open_slots,
        });
    }
    Ok(out)
}

/// The hash slot of `key` (CRC16/XMODEM of the key or of its `{hash tag}`,
/// modulo 16384), as `CLUSTER KEYSLOT` computes it.
pub fn key_slot(key: impl AsRef<[u8]>) -> u16 {
    let key = key.as_ref();
    let hashed = match key.iter().position(|&c| c == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

// ---------------------------------------------------------------------------
// Process and connection helpers (shared with redis_sentinel.rs).
// ---------------------------------------------------------------------------

/// `redis://127.0.0.1:<port>`.
pub fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// A fresh, empty temporary directory of this test process.
pub fn unique_dir(kind: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sessionkit-{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// `N` free ports, distinct from each other and from `taken` (which they
/// are added to).
pub fn distinct_free_ports<const N: usize>(taken: &mut BTreeSet<u16>) -> [u16; N] {
    let mut out = [0; N];
    for slot in &mut out {
        *slot = loop {
            let port = free_port();
            if taken.insert(port) {
                break port;
            }
        };
    }
    out
}

/// Calls `f` every 100 ms until it returns `Ok`, and panics with its last
/// error once `timeout` has passed.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("waited {timeout:?} for {what}; last: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A blocking connection to `127.0.0.1:<port>` with 2 s connect and 5 s
/// read/write timeouts.
pub fn connect(port: u16) -> Result<::redis::Connection, String> {
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    for result in [
        con.set_read_timeout(Some(Duration::from_secs(5))),
        con.set_write_timeout(Some(Duration::from_secs(5))),
    ] {
        result.map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    }
    Ok(con)
}

/// One command on `con`; an error reply becomes `Err("<CODE> <detail>")`
/// as Redis sent it (`"MOVED 3999 127.0.0.1:7002"`).
pub fn query_on(con: &mut ::redis::Connection, port: u16, args: &[&str]) -> Result<Value, String> {
    let mut cmd = ::redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<Value>(con) {
        Ok(Value::ServerError(e)) => Err(match e.details() {
            Some(d) => format!("{} {d}", e.code()),
            None => e.code().to_owned(),
        }),
        Ok(v) => Ok(v),
        Err(e) => Err(match (e.code(), e.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            (Some(code), None) => code.to_owned(),
            _ => format!("127.0.0.1:{port} {args:?}: {e}"),
        }),
    }
}

/// One command on a fresh connection to `127.0.0.1:<port>`.
pub fn query(port: u16, args: &[&str]) -> Result<Value, String> {
    query_on(&mut connect(port)?, port, args)
}

/// [`query`], its reply as text (arrays joined by newlines).
pub fn query_text(port: u16, args: &[&str]) -> Result<String, String> {
    query(port, args).map(|v| text(&v))
}

/// The first element of `ROLE`: `master`, `slave` or `sentinel`.
pub fn role(port: u16) -> Result<String, String> {
    match query(port, &["ROLE"])? {
        Value::Array(items) => items.first().map(text).ok_or_else(|| "empty ROLE".into()),
        other => Err(format!("unexpected ROLE reply {other:?}")),
    }
}

/// `name:value` out of an `INFO`-style reply.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

const REDIS_CLI_MISSING: &str = "redis-cli not found: install it with \
    `apt-get install redis-server` (redis-cli comes with redis-tools)";

/// Panics with an install hint if there is no `redis-cli`.
pub fn require_redis_cli() {
    match Command::new("redis-cli")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{REDIS_CLI_MISSING}"),
        Err(e) => panic!("could not run redis-cli: {e}"),
    }
}

/// Runs `redis-cli args`, its output (stdout and stderr) going to `out`;
/// killed after `timeout`. `Ok(output)` if it exited 0 and printed no
/// `[ERR]`.
pub fn run_redis_cli(args: &[String], out: &Path, timeout: Duration) -> Result<String, String> {
    let file = File::create(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let file2 = file.try_clone().map_err(|e| e.to_string())?;
    let spawned = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{REDIS_CLI_MISSING}"),
        Err(e) => return Err(format!("could not run redis-cli: {e}")),
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = std::fs::read_to_string(out).unwrap_or_default();
    match status {
        Some(s) if s.success() && !output.contains("[ERR]") => Ok(output),
        Some(s) => Err(format!(
            "redis-cli {args:?} exited with {s}:\n{}",
            tail(&output)
        )),
        None => Err(format!(
            "redis-cli {args:?} still running after {timeout:?}, killed:\n{}",
            tail(&output)
        )),
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A `redis-server` process (a node, a sentinel) on a known port, its output
/// appended to a log file; SIGKILLed on drop.
pub struct RedisProcess {
    pub port: u16,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts `redis-server args` (which must make it listen on `port`) and
    /// waits until it answers `PING` as the process started (so a port taken
    /// by another server is an error, not a false start).
    pub fn spawn(port: u16, args: Vec<String>, log: PathBuf) -> Result<Self, String> {
        let mut process = RedisProcess {
            port,
            args,
            log,
            child: None,
        };
        process.start()?;
        Ok(process)
    }

    /// (Re)starts the process with the same arguments; see [`spawn`](Self::spawn).
    pub fn start(&mut self) -> Result<(), String> {
        self.kill();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("open {}: {e}", self.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let spawned = Command::new("redis-server")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server not found: install it with `apt-get install redis-server`")
            }
            Err(e) => panic!("could not start redis-server: {e}"),
        };
        let pid = child.id().to_string();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status),
                _ => None,
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited with {status}:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            if let Ok(info) = query_text(self.port, &["INFO", "server"]) {
                if info_field(&info, "process_id") == Some(pid.as_str()) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "redis-server on port {} did not answer within 15 s:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The last lines of the process's log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        tail(&text)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
