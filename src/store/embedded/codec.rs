//! Encoding of stored values: JSON, so that fields added later can default when old records
//! are read and history stays readable across upgrades.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// Encodes a value for storage.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our records are plain structs, enums, strings, integers and maps with string keys:
    // serializing them to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Decodes a stored value.
pub fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
        table,
        message: error.to_string(),
    })
}
