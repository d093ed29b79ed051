//! Typed identifiers. Version, segment and node ids are never reused, which is
//! what lets anything keyed by them be cached without invalidation.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A data node's id. Chosen once when a datad first starts (or set by config)
/// and persisted in its data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Position of a shard within its segment's layout: `0..k` are data shards,
/// `k..k+m` parity; for a replicated segment, the replica number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardIndex(pub u8);

impl fmt::Display for ShardIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u128);

        impl $name {
            /// A fresh random id. 128 random bits make a collision practically
            /// impossible, so ids can be minted by any gateway without coordination.
            pub fn from_random(bytes: [u8; 16]) -> Self {
                Self(u128::from_be_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                u128::from_str_radix(s, 16).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// Names one segment: the unit of placement. Its shards live in files named
    /// by this id on the nodes of its placement.
    SegmentId
);
hex_id!(
    /// Names one immutable object version.
    VersionId
);
hex_id!(
    /// Names one client request to metad: every retry of it carries the same
    /// id, so metad applies it once (see `rpc::Command::Request`).
    RequestId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_round_trip_through_json() {
        let id = SegmentId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0123456789abcdef0011223344556677\"");
        assert_eq!(serde_json::from_str::<SegmentId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SegmentId>("\"xyz\"").is_err());
    }
}
