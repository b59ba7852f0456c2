use crate::StoreError;
use std::fmt;
use std::str::FromStr;

/// An opaque, ordered place in the global log. Its text form (`<commit>-<prepare>`, e.g.
/// `812-3`) round-trips and is what the command API hands out as a consistency token.
///
/// On PostgreSQL the parts are (transaction id, sequence); on KurrentDB the commit and prepare
/// positions. Positions of different backends are not comparable with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position {
    pub commit: u64,
    pub prepare: u64,
}

impl Position {
    pub const fn new(commit: u64, prepare: u64) -> Self {
        Self { commit, prepare }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.commit, self.prepare)
    }
}

impl FromStr for Position {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::InvalidPosition(s.chars().take(64).collect());
        let (commit, prepare) = s.split_once('-').ok_or_else(bad)?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(commit) || !digits(prepare) {
            return Err(bad());
        }
        Ok(Self {
            commit: commit.parse().map_err(|_| bad())?,
            prepare: prepare.parse().map_err(|_| bad())?,
        })
    }
}

impl serde::Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_text_and_orders_by_commit_then_prepare() {
        let p = Position::new(812, 3);
        assert_eq!(p.to_string(), "812-3");
        assert_eq!("812-3".parse::<Position>().unwrap(), p);
        assert!(Position::new(1, 9) < Position::new(2, 0));
        assert!(Position::new(2, 0) < Position::new(2, 1));
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "",
            "1",
            "a-1",
            "1-",
            "-1",
            "1-2-3",
            "99999999999999999999999-1",
            "1 -2",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }
}
