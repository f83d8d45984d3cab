//! The slot map of a Redis Cluster, as `CLUSTER SLOTS` reports it: which
//! primary serves each hash slot. Only the client-side cache needs it (it
//! keeps one tracked connection per primary and routes calls itself); the
//! plain path lets redis-rs's `ClusterConnection` route.

use std::collections::BTreeSet;

use ::redis::{FromRedisValue, ParsingError, Value};

/// One range of slots and the address (`host:port`) of its primary.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    start: u16,
    end: u16,
    primary: String,
}

/// One row of `CLUSTER SLOTS`: `[start, end, [host, port, id, ...], replicas...]`.
impl FromRedisValue for Range {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        let Value::Array(items) = v else {
            return Err("a CLUSTER SLOTS row is not an array".into());
        };
        let mut items = items.into_iter();
        let (Some(start), Some(end), Some(node)) = (items.next(), items.next(), items.next())
        else {
            return Err("a CLUSTER SLOTS row has fewer than 3 items".into());
        };
        let start = u16::from_redis_value(start)?;
        let end = u16::from_redis_value(end)?;
        let Value::Array(node) = node else {
            return Err("a CLUSTER SLOTS node is not an array".into());
        };
        let mut node = node.into_iter();
        let (Some(host), Some(port)) = (node.next(), node.next()) else {
            return Err("a CLUSTER SLOTS node has no host and port".into());
        };
        let host = String::from_redis_value(host)?;
        let port = u16::from_redis_value(port)?;
        Ok(Range {
            start,
            end,
            primary: format!("{host}:{port}"),
        })
    }
}

/// Which primary serves each slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// Sorted by `start`, not overlapping.
    ranges: Vec<Range>,
}

impl SlotMap {
    /// Decodes a `CLUSTER SLOTS` reply. Rows whose primary has no known
    /// address (an empty host) are skipped: their slots count as unserved
    /// until the next refresh.
    pub(crate) fn from_reply(v: Value) -> Result<SlotMap, ParsingError> {
        let mut ranges: Vec<Range> = Vec::from_redis_value(v)?;
        ranges.retain(|r| !r.primary.starts_with(':') && r.start <= r.end);
        ranges.sort_by_key(|r| r.start);
        Ok(SlotMap { ranges })
    }

    /// The primary (`host:port`) serving `slot`, if any.
    pub(crate) fn primary(&self, slot: u16) -> Option<&str> {
        let i = self.ranges.partition_point(|r| r.start <= slot);
        let r = self.ranges.get(i.checked_sub(1)?)?;
        (slot <= r.end).then_some(r.primary.as_str())
    }

    /// Every primary's address.
    pub(crate) fn primaries(&self) -> BTreeSet<String> {
        self.ranges.iter().map(|r| r.primary.clone()).collect()
    }

    /// Whether no slot is known (never fetched, or an empty reply).
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(start: i64, end: i64, host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ]),
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(9999),
            ]),
        ])
    }

    #[test]
    fn finds_the_primary_of_each_slot() {
        let map = SlotMap::from_reply(Value::Array(vec![
            row(5461, 10922, "127.0.0.1", 7001),
            row(0, 5460, "127.0.0.1", 7000),
            row(10923, 16383, "127.0.0.1", 7002),
        ]))
        .unwrap();
        assert_eq!(map.primary(0), Some("127.0.0.1:7000"));
        assert_eq!(map.primary(5460), Some("127.0.0.1:7000"));
        assert_eq!(map.primary(5461), Some("127.0.0.1:7001"));
        assert_eq!(map.primary(16383), Some("127.0.0.1:7002"));
        assert_eq!(map.primaries().len(), 3);
    }

    #[test]
    fn gaps_and_bad_rows() {
        let map = SlotMap::from_reply(Value::Array(vec![row(10, 20, "h", 1)])).unwrap();
        assert_eq!(map.primary(9), None);
        assert_eq!(map.primary(21), None);
        assert_eq!(map.primary(15), Some("h:1"));
        assert!(SlotMap::from_reply(Value::Array(vec![Value::Int(3)])).is_err());
        assert!(SlotMap::from_reply(Value::Array(vec![]))
            .unwrap()
            .is_empty());
        let unknown = SlotMap::from_reply(Value::Array(vec![row(0, 5, "", 7000)])).unwrap();
        assert!(unknown.is_empty());
    }
}
