//! API keys: the listing of a stored key into proto, and the key name and
//! key id of requests.

use super::time::timestamp_from_nanos;
use crate::auth::keys;
use crate::error::Error;
use crate::proto::v1 as pb;
use crate::store::ApiKeyInfo;

/// Longest API key name, in characters.
const MAX_KEY_NAME_CHARS: usize = 200;

/// A stored key's listing (never its secret) as proto.
pub fn api_key_to_proto(info: ApiKeyInfo) -> pb::ApiKey {
    pb::ApiKey {
        prefix: keys::display_prefix(&info.id),
        key_id: info.id,
        tenant_id: info.tenant_id,
        name: info.name,
        created_at: Some(timestamp_from_nanos(info.created_at_nanos)),
        revoked_at: info.revoked_at_nanos.map(timestamp_from_nanos),
    }
}

/// A key name: trimmed, 1-200 characters, no control characters.
pub fn parse_key_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "is required"));
    }
    if name.chars().count() > MAX_KEY_NAME_CHARS {
        return Err(Error::invalid(
            "name",
            format!("is longer than {MAX_KEY_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "contains control characters"));
    }
    Ok(name.to_string())
}

/// A key id as `sm_<id>_…` embeds it: 16 hex digits.
pub fn parse_key_id(key_id: &str) -> Result<&str, Error> {
    if key_id.len() == 16 && key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(key_id)
    } else {
        Err(Error::invalid("key_id", "is not a key id (16 hex digits)"))
    }
}
