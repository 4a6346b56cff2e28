//! What every hash in shipgate is taken over: canonical JSON, SHA-256 in hex, and the head of
//! the audit chain. A leaf: it imports nothing from this crate, so `audit`, `events` and
//! `incident` all build on it without building on each other. `audit` re-exports it all.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The `prev_hash` of the first entry of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Canonical JSON: the exact text every fingerprint and chain hash is taken over. An offline
/// verifier must reproduce it byte for byte:
///
/// - object members are sorted by key, comparing the keys' UTF-8 bytes (byte-wise, at every
///   depth). This is *not* RFC 8785 (JCS), which compares UTF-16 code units: the two orders
///   differ for keys holding a character from U+E000 to U+FFFF where another key, at the same
///   position, holds one above U+FFFF;
/// - array elements keep their order;
/// - no whitespace between tokens;
/// - strings are written as UTF-8, escaping only `"` as `\"`, `\` as `\\`, and the control
///   characters U+0000 to U+001F: `\b`, `\t`, `\n`, `\f`, `\r`, otherwise `\u00xx` (lower-case
///   hex); `/`, U+007F and every non-ASCII character are written as they are;
/// - numbers are written as `serde_json` writes them: integers (`i64`/`u64`) in plain decimal
///   whatever their size, floats in `serde_json`'s shortest round-trip form (no payload holds
///   a float);
/// - `true`, `false`, `null` as such.
///
/// The format is fixed: stored chains depend on it.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted_map: BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, sorted(v))).collect();
                let mut out = Map::new();
                for (k, v) in sorted_map {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// SHA-256 of `data`, as 64 lower-case hex digits.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The head of the chain: the last entry's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl ChainHead {
    pub fn genesis() -> Self {
        ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys() {
        assert_eq!(
            canonical_json(&json!({"b":1,"a":{"d":2,"c":3}})),
            r#"{"a":{"c":3,"d":2},"b":1}"#
        );
    }

    /// The format as documented, pinned: byte-wise key order (U+10000 after U+FFFD, where
    /// RFC 8785 puts it before), the escapes, integers beyond 2^53 in full.
    #[test]
    fn canonical_json_is_the_documented_format() {
        let v = json!({
            "\u{fffd}": 1,
            "\u{10000}": 2,
            "B": [3, 1],
            "a": "q\"b\\s/\u{1}\u{7f}\n\té",
            "big": 18_446_744_073_709_551_615u64,
            "neg": -9_007_199_254_740_993i64,
            "t": true,
            "n": null,
        });
        assert_eq!(
            canonical_json(&v),
            "{\"B\":[3,1],\"a\":\"q\\\"b\\\\s/\\u0001\u{7f}\\n\\té\",\"big\":18446744073709551615,\
             \"n\":null,\"neg\":-9007199254740993,\"t\":true,\"\u{fffd}\":1,\"\u{10000}\":2}"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
