//! [`Located<T>`]: a config value that remembers where it was written.
//!
//! Some values are checked after decoding (a rule's `condition` is compiled by the
//! reactor, a connector's URL is resolved when it starts); a field of type
//! `Located<String>` keeps the location so those later errors can still point at the
//! right line. It works like `toml`'s `Spanned`: it asks the deserializer for a newtype
//! struct with a magic name, which this crate's deserializer answers with the location
//! and the value. Any other format (JSON, for messages and tests) answers with just the
//! value, and the location is [`Location::unknown`].

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::{Serialize, Serializer};

use crate::de::{LOCATED_LOCATION_KEY, LOCATED_NAME, LOCATED_VALUE_KEY};
use crate::location::Location;

/// A value and the place in the configuration where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The decoded value.
    pub value: T,
    /// Where the value starts.
    pub location: Location,
}

impl<T> Located<T> {
    /// A value with a location.
    pub fn new(value: T, location: Location) -> Located<T> {
        Located { value, location }
    }

    /// The value, dropping the location.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for Located<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Located<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: fmt::Display> fmt::Display for Located<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

/// Serializes as the bare value: the location is metadata, not configuration.
impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(LOCATED_NAME, LocatedVisitor(PhantomData))
    }
}

struct LocatedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LocatedVisitor<T> {
    type Value = Located<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    /// Formats other than this crate's: the plain value, location unknown.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        T::deserialize(deserializer).map(|value| Located::new(value, Location::unknown()))
    }

    /// This crate's deserializer: the location, then the value.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let key: Option<String> = map.next_key()?;
        if key.as_deref() != Some(LOCATED_LOCATION_KEY) {
            return Err(de::Error::custom("this format gave a map where a located value was expected"));
        }
        let encoded: String = map.next_value()?;
        let location = decode_location(&encoded)
            .ok_or_else(|| de::Error::custom("malformed location from the configuration reader"))?;
        let key: Option<String> = map.next_key()?;
        if key.as_deref() != Some(LOCATED_VALUE_KEY) {
            return Err(de::Error::custom("missing value in a located value"));
        }
        let value: T = map.next_value()?;
        Ok(Located::new(value, location))
    }
}

/// `line:column:file` (the file last, since it may itself contain `:`).
pub(crate) fn encode_location(location: &Location) -> String {
    format!("{}:{}:{}", location.line, location.column, location.file)
}

fn decode_location(encoded: &str) -> Option<Location> {
    let mut parts = encoded.splitn(3, ':');
    let line = parts.next()?.parse().ok()?;
    let column = parts.next()?.parse().ok()?;
    let file = parts.next()?;
    Some(Location::new(file, line, column))
}

impl Located<serde_json::Value> {
    /// The value as a boolean switch (`enabled:` and the like): `true`/`false`, `yes`/`no`,
    /// `on`/`off` and wubot's `1`/`0` (any number: non-zero is true). `key` is the dotted
    /// path for the error, which says what was found.
    pub fn as_flag(&self, key: &str) -> Result<bool, crate::Diagnostic> {
        use serde_json::Value;
        match &self.value {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
            Value::String(s) if matches!(s.as_str(), "yes" | "on") => Ok(true),
            Value::String(s) if matches!(s.as_str(), "no" | "off") => Ok(false),
            other => {
                Err(crate::Diagnostic::at(&self.location, format!("{key}: expected true or false, found {other}")))
            }
        }
    }
}
