//! Smoke tests of the Redis topology harness (`support/redis_cluster.rs`,
//! `support/redis_sentinel.rs`): a 6-node Redis Cluster that routes keys,
//! fails over and reshards, and a Sentinel setup that promotes the replica
//! when the master dies. Each prints how long its steps took.
//!
//! They need `redis-server` and `redis-cli` (and fail, not skip, without).
#![cfg(feature = "redis")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::redis_cluster::{
    connect, key_slot, poll, query_on, unique_dir, RedisCluster, RedisProcess, SLOTS,
};
use support::redis_sentinel::RedisSentinel;
use support::RedisServer;

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    eprintln!("{what}: {:?}", start.elapsed());
    out
}

/// A key (`k<i>`) for each of `slots`.
fn key_per_slot(slots: &[u16]) -> BTreeMap<u16, String> {
    let wanted: BTreeSet<u16> = slots.iter().copied().collect();
    let mut keys = BTreeMap::new();
    for i in 0u64.. {
        if keys.len() == wanted.len() {
            break;
        }
        let key = format!("k{i}");
        let slot = key_slot(&key);
        if wanted.contains(&slot) {
            keys.entry(slot).or_insert(key);
        }
    }
    keys
}

#[test]
fn cluster_starts_and_routes_keys() {
    let cluster = timed("cluster start", RedisCluster::start);
    assert_eq!(cluster.nodes().len(), 6);
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "primaries: {primaries:?}");
    assert_eq!(cluster.replicas().len(), 3);
    let mut all_slots = BTreeSet::new();
    for &p in &primaries {
        assert_eq!(cluster.replicas_of(p).len(), 1, "replicas of {p}");
        all_slots.extend(cluster.slots_of(p));
    }
    assert_eq!(all_slots.len(), usize::from(SLOTS));

    // The CRC16 slot, hash tags included, is the server's.
    let any = primaries[0];
    for key in [
        "{user:42}:sessions",
        "{user:42}",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "{}",
        "a{b",
    ] {
        assert_eq!(
            cluster.command(any, &["CLUSTER", "KEYSLOT", key]).unwrap(),
            key_slot(key).to_string(),
            "slot of {key}"
        );
    }

    // One key on each primary, set through redis-cli -c (cluster-aware).
    let mut keys: BTreeMap<u16, String> = BTreeMap::new();
    for i in 0.. {
        let key = format!("session:{i}");
        keys.entry(cluster.primary_for_slot(key_slot(&key)))
            .or_insert(key);
        if keys.len() == 3 {
            break;
        }
    }
    for (&owner, key) in &keys {
        let slot = key_slot(key);
        let value = format!("value of {key}");
        assert_eq!(
            cluster
                .command(owner, &["CLUSTER", "KEYSLOT", key])
                .unwrap(),
            slot.to_string(),
            "CRC16 slot of {key}"
        );
        assert_eq!(cluster.cli(&["SET", key, &value]), "OK");
        // Plain connections: the owner has it, the other primaries redirect.
        assert_eq!(cluster.command(owner, &["GET", key]).unwrap(), value);
        for &other in primaries.iter().filter(|&&p| p != owner) {
            let err = cluster.command(other, &["GET", key]).unwrap_err();
            assert_eq!(err, format!("MOVED {slot} 127.0.0.1:{owner}"));
        }
        assert_eq!(cluster.cluster_command(&["GET", key]).unwrap(), value);
        assert_eq!(cluster.cli(&["GET", key]), value);
        // And it reached the owner's replica.
        let replica = cluster.replicas_of(owner)[0];
        poll(Duration::from_secs(10), "the key on the replica", || {
            let mut con = connect(replica)?;
            query_on(&mut con, replica, &["READONLY"])?;
            match query_on(&mut con, replica, &["GET", key])? {
                ::redis::Value::BulkString(b) if b == value.as_bytes() => Ok(()),
                other => Err(format!("replica has {other:?}")),
            }
        });
    }
}

#[test]
fn cluster_failover_promotes_a_replica() {
    let mut cluster = timed("cluster start", RedisCluster::start);
    let primary = cluster.primaries()[0];
    let replica = cluster.replicas_of(primary)[0];
    let slots = cluster.slots_of(primary);
    let key = key_per_slot(&slots[..1])[&slots[0]].clone();
    assert_eq!(cluster.cluster_command(&["SET", &key, "v1"]).unwrap(), "OK");

    timed("cluster manual failover", || cluster.failover(replica));
    assert!(cluster.primaries().contains(&replica));
    assert!(!cluster.primaries().contains(&primary));
    assert_eq!(cluster.replicas_of(replica), vec![primary]);
    assert_eq!(cluster.slots_of(replica), slots);
    assert_eq!(cluster.primary_for_slot(slots[0]), replica);
    assert_eq!(cluster.cluster_command(&["GET", &key]).unwrap(), "v1");

    // A crash of the new primary: its replica (the old primary) takes over.
    cluster.kill(replica);
    assert!(!cluster.is_running(replica));
    timed("cluster automatic failover after kill", || {
        cluster.wait_until_ok(Duration::from_secs(30))
    });
    assert_eq!(cluster.primary_for_slot(slots[0]), primary);
    assert_eq!(cluster.cluster_command(&["GET", &key]).unwrap(), "v1");

    // Restarted with its config file, it rejoins as a replica.
    timed("cluster restart and rejoin", || {
        cluster.restart(replica);
        cluster.wait_until_ok(Duration::from_secs(30));
    });
    assert_eq!(cluster.replicas_of(primary), vec![replica]);
    assert_eq!(cluster.primaries().len(), 3);
}

fn dbsize(cluster: &RedisCluster, port: u16) -> usize {
    let reply = cluster.command(port, &["DBSIZE"]).unwrap();
    reply.parse().unwrap()
}

#[test]
fn cluster_reshard_moves_slots() {
    const MOVE: u32 = 100;
    let mut cluster = timed("cluster start", RedisCluster::start);
    let primaries = cluster.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let from_slots = cluster.slots_of(from);
    let to_slots = cluster.slots_of(to);

    // A key in every slot of `from`, so that the reshard migrates keys.
    let keys = key_per_slot(&from_slots);
    let mut con = connect(from).unwrap();
    let mut pipe = ::redis::pipe();
    for key in keys.values() {
        pipe.cmd("SET").arg(key).arg(format!("v-{key}")).ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    assert_eq!(dbsize(&cluster, from), from_slots.len());
    assert_eq!(dbsize(&cluster, to), 0);

    timed(&format!("cluster reshard of {MOVE} slots"), || {
        cluster.reshard(from, to, MOVE)
    });
    let after_from: BTreeSet<u16> = cluster.slots_of(from).into_iter().collect();
    let after_to: BTreeSet<u16> = cluster.slots_of(to).into_iter().collect();
    let moved: Vec<u16> = from_slots
        .iter()
        .copied()
        .filter(|s| !after_from.contains(s))
        .collect();
    assert_eq!(moved.len(), MOVE as usize);
    assert!(moved.iter().all(|s| after_to.contains(s)));
    assert!(to_slots.iter().all(|s| after_to.contains(s)));
    assert_eq!(after_to.len(), to_slots.len() + MOVE as usize);

    // The keys moved with their slots.
    assert_eq!(dbsize(&cluster, from), from_slots.len() - MOVE as usize);
    assert_eq!(dbsize(&cluster, to), MOVE as usize);
    for slot in &moved {
        let key = &keys[slot];
        let value = format!("v-{key}");
        assert_eq!(cluster.primary_for_slot(*slot), to);
        assert_eq!(cluster.command(to, &["GET", key]).unwrap(), value);
        assert_eq!(
            cluster.command(from, &["GET", key]).unwrap_err(),
            format!("MOVED {slot} 127.0.0.1:{to}")
        );
    }
    let key = &keys[&moved[0]];
    assert_eq!(cluster.cli(&["GET", key]), format!("v-{key}"));
    assert_eq!(
        cluster.cluster_command(&["GET", key]).unwrap(),
        format!("v-{key}")
    );
}

#[test]
fn sentinel_promotes_the_replica_when_the_master_dies() {
    let mut setup = timed("sentinel start", RedisSentinel::start);
    assert_eq!(setup.master_name(), "mymaster");
    assert_eq!(setup.sentinel_urls().len(), 3);
    let [master, replica] = setup.data_ports()[..] else {
        panic!("two data nodes expected");
    };
    assert_eq!(setup.master_port(), master);
    assert_eq!(setup.master_url(), format!("redis://127.0.0.1:{master}"));

    let mut con = connect(master).unwrap();
    query_on(&mut con, master, &["SET", "k", "v"]).unwrap();
    query_on(&mut con, master, &["WAIT", "1", "5000"]).unwrap();
    drop(con);

    let start = Instant::now();
    assert_eq!(setup.kill_master(), master);
    let new_master = setup.wait_for_new_master(Duration::from_secs(20));
    let took = start.elapsed();
    eprintln!("sentinel failover (kill to new master on all sentinels): {took:?}");
    assert_eq!(new_master, replica);
    assert_eq!(setup.master_port(), replica);
    assert!(
        took < Duration::from_secs(15),
        "the sentinel failover took {took:?}"
    );

    let mut con = connect(replica).unwrap();
    let value = query_on(&mut con, replica, &["GET", "k"]).unwrap();
    assert_eq!(value, ::redis::Value::BulkString(b"v".to_vec()));
    query_on(&mut con, replica, &["SET", "k", "v2"]).expect("the new master takes writes");
}

#[test]
fn a_taken_port_is_an_error_not_a_false_start() {
    // What the port-conflict retries rely on: a process that cannot listen
    // is reported, even though something else answers PING on its port.
    let other = RedisServer::start();
    let dir = unique_dir("taken-port");
    let port = other.port();
    let args = [
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let err = RedisProcess::spawn(port, args, dir.join("node.log"))
        .err()
        .expect("a redis-server on a taken port must not count as started");
    assert!(err.contains("exited"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
