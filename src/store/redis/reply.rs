//! Decoding the parts of script replies without trusting their shape: a
//! session's hash fields, and the plain values the typed replies
//! (`replies.rs`) are made of. Anything unexpected is a store error, never
//! a panic.

use ::redis::Value;

use crate::store::{Data, Meta};
use crate::{Error, Result};

/// A store error naming the script and what was wrong.
pub(crate) fn bad(script: &str, what: impl std::fmt::Display) -> Error {
    Error::store(format!("unexpected reply from the {script} script: {what}"))
}

/// What kind of value a reply is, for error messages: never its content,
/// which may be session data.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) | Value::Okay => "a status",
        Value::Map(_) => "a map",
        Value::Set(_) => "a set",
        Value::Double(_) => "a double",
        Value::Boolean(_) => "a boolean",
        Value::ServerError(_) => "an error",
        _ => "an unexpected value",
    }
}

/// The elements of an array reply.
pub(crate) fn array(script: &str, v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(bad(
            script,
            format_args!("expected an array, got {}", kind(&other)),
        )),
    }
}

/// Text from a string reply; `None` for nil or `false` (which Lua turns into
/// nil); an error for anything else or for invalid UTF-8.
pub(crate) fn opt_text(script: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Nil | Value::Boolean(false) => Ok(None),
        Value::BulkString(b) => String::from_utf8(b.clone())
            .map(Some)
            .map_err(|_| bad(script, "a string is not UTF-8")),
        Value::SimpleString(s) => Ok(Some(s.clone())),
        Value::VerbatimString { text, .. } => Ok(Some(text.clone())),
        Value::Okay => Ok(Some("OK".to_owned())),
        other => Err(bad(
            script,
            format_args!("expected a string, got {}", kind(other)),
        )),
    }
}

/// Text from a string reply that must be present.
pub(crate) fn text(script: &str, v: &Value) -> Result<String> {
    opt_text(script, v)?.ok_or_else(|| bad(script, "a string is missing"))
}

/// An integer from an integer reply or a decimal string.
pub(crate) fn int(script: &str, v: &Value) -> Result<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        other => text(script, other)?
            .parse()
            .map_err(|_| bad(script, "expected an integer, got another string")),
    }
}

/// A session's metadata and data from its hash fields (`HGETALL` order:
/// field, value, field, value...). `Err` holds why the stored session is
/// unusable (corrupt); the caller treats it as unknown.
pub(crate) fn session_fields(fields: &[Value]) -> std::result::Result<(Meta, Data), String> {
    if fields.len() % 2 != 0 {
        return Err("odd number of hash elements".to_owned());
    }
    let mut meta = Meta {
        user_id: None,
        created_ms: 0,
        last_seen_ms: 0,
        token_issued_ms: 0,
        absolute_deadline_ms: 0,
        version: 0,
        user_agent: None,
        client_ip: None,
    };
    let mut seen = [false; 5];
    // The pieces of `@ua` (see `args::UA_FIELDS`), in any field order.
    let mut ua: [Option<&str>; 4] = [None; 4];
    let mut data = Data::new();
    for pair in fields.chunks_exact(2) {
        let field = bytes(&pair[0]).ok_or("a field name is not a string")?;
        let value = bytes(&pair[1]).ok_or("a field value is not a string")?;
        let field = std::str::from_utf8(field).map_err(|_| "a field name is not UTF-8")?;
        let value = std::str::from_utf8(value)
            .map_err(|_| format!("the value of field {field:?} is not UTF-8"))?;
        if let Some(key) = field.strip_prefix("d:") {
            let json = serde_json::from_str(value)
                .map_err(|e| format!("data key {key:?} is not valid JSON: {e}"))?;
            data.insert(key.to_owned(), json);
            continue;
        }
        let number = |slot: usize, seen: &mut [bool; 5]| {
            seen[slot] = true;
            value
                .parse::<i64>()
                .map_err(|_| format!("metadata field {field} is not an integer"))
        };
        match field {
            "@user" => meta.user_id = Some(value.to_owned()),
            "@ua" | "@ua1" | "@ua2" | "@ua3" => {
                let piece =
                    usize::from(field.as_bytes()[field.len() - 1].saturating_sub(b'0')).min(3);
                ua[if field == "@ua" { 0 } else { piece }] = Some(value);
            }
            "@ip" => meta.client_ip = Some(value.to_owned()),
            "@created" => meta.created_ms = number(0, &mut seen)?,
            "@seen" => meta.last_seen_ms = number(1, &mut seen)?,
            "@issued" => meta.token_issued_ms = number(2, &mut seen)?,
            "@deadline" => meta.absolute_deadline_ms = number(3, &mut seen)?,
            "@ver" => {
                // The scripts bump it with HINCRBY, which fails past i64::MAX:
                // a version out of this range would block every write.
                let ver = number(4, &mut seen)?;
                meta.version = u64::try_from(ver)
                    .ok()
                    .filter(|v| *v < 1 << 53)
                    .ok_or_else(|| "metadata field @ver is out of range".to_owned())?;
            }
            _ => {}
        }
    }
    if let Some(first) = ua[0] {
        let mut whole = first.to_owned();
        whole.extend(ua[1..].iter().map_while(|p| *p));
        meta.user_agent = Some(whole);
    }
    if seen.iter().all(|s| *s) {
        Ok((meta, data))
    } else {
        Err("a metadata field is missing".to_owned())
    }
}

/// The data of `d:<key>` pairs (`HGETALL` order); other fields are skipped.
/// `Err` holds why they do not decode.
pub(crate) fn data_fields(fields: &[Value]) -> std::result::Result<Data, String> {
    if fields.len() % 2 != 0 {
        return Err("odd number of hash elements".to_owned());
    }
    let mut data = Data::new();
    for pair in fields.chunks_exact(2) {
        let field = bytes(&pair[0]).ok_or("a field name is not a string")?;
        let Some(key) = field.strip_prefix(b"d:") else {
            continue;
        };
        let key = std::str::from_utf8(key).map_err(|_| "a field name is not UTF-8")?;
        let value = bytes(&pair[1]).ok_or("a field value is not a string")?;
        let json = serde_json::from_slice(value)
            .map_err(|e| format!("data key {key:?} is not valid JSON: {e}"))?;
        data.insert(key.to_owned(), json);
    }
    Ok(data)
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<Value> {
        pairs.iter().flat_map(|(f, v)| [bulk(f), bulk(v)]).collect()
    }

    const META: [(&str, &str); 5] = [
        ("@created", "1"),
        ("@seen", "2"),
        ("@issued", "3"),
        ("@deadline", "4"),
        ("@ver", "5"),
    ];

    #[test]
    fn decodes_a_session() {
        let mut pairs = META.to_vec();
        pairs.extend([
            ("@user", "u"),
            ("d:n", "7"),
            ("d:s", "\"x\""),
            ("@ua", "ua"),
        ]);
        let (meta, data) = session_fields(&fields(&pairs)).unwrap();
        assert_eq!(meta.user_id.as_deref(), Some("u"));
        let mut split = META.to_vec();
        split.extend([("@ua2", "c"), ("@ua", "a"), ("@ua1", "b")]);
        let (split, _) = session_fields(&fields(&split)).unwrap();
        assert_eq!(
            split.user_agent.as_deref(),
            Some("abc"),
            "pieces joined in order"
        );
        assert_eq!(
            (meta.created_ms, meta.last_seen_ms, meta.token_issued_ms),
            (1, 2, 3)
        );
        assert_eq!((meta.absolute_deadline_ms, meta.version), (4, 5));
        assert_eq!(meta.user_agent.as_deref(), Some("ua"));
        assert_eq!(meta.client_ip, None);
        assert_eq!(data["n"], serde_json::json!(7));
        assert_eq!(data["s"], serde_json::json!("x"));
    }

    #[test]
    fn rejects_corrupt_sessions() {
        let mut bad_json = META.to_vec();
        bad_json.push(("d:k", "{not json"));
        assert!(session_fields(&fields(&bad_json)).is_err());
        assert!(session_fields(&fields(&META[1..])).is_err());
        let mut bad_num = META.to_vec();
        bad_num[0] = ("@created", "soon");
        assert!(session_fields(&fields(&bad_num)).is_err());
        assert!(session_fields(&[bulk("odd")]).is_err());
        assert!(session_fields(&[Value::Int(1), bulk("x")]).is_err());
        let mut bad_utf8 = fields(&META);
        bad_utf8.extend([bulk("d:k"), Value::BulkString(vec![0xff, 0xfe])]);
        assert!(session_fields(&bad_utf8).is_err());
    }

    #[test]
    fn unexpected_shapes_are_errors_not_panics() {
        assert!(array("t", Value::Int(1)).is_err());
        assert!(int("t", &Value::Array(vec![])).is_err());
        assert!(int("t", &bulk("x")).is_err());
        assert_eq!(int("t", &bulk("-3")).unwrap(), -3);
        assert!(text("t", &Value::Nil).is_err());
        assert_eq!(opt_text("t", &Value::Nil).unwrap(), None);
    }
}
