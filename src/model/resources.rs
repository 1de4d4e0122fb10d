//! Resource limits as users write them (`memory = "256m"`, `cpus = 0.5`) and as Docker wants
//! them (bytes, nano-CPUs). Parsing happens during deserialization so a bad value is reported
//! with the file, line and column of the key that holds it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Docker refuses containers with less memory than this.
const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// A sanity bound: more than this on one app is a typo, not a plan.
const MAX_MEMORY: u64 = 1024 * 1024 * 1024 * 1024;

/// A memory limit in bytes, written as `"256m"`, `"1g"`, `"512k"` or a plain byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Memory(pub u64);

impl Memory {
    /// Parses Docker's notation: a number with an optional b/k/m/g suffix (binary units).
    pub fn parse(text: &str) -> Result<Memory, String> {
        let t = text.trim();
        let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((i, _)) => t.split_at(i),
            None => (t, ""),
        };
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1 << 10,
            "m" | "mb" => 1 << 20,
            "g" | "gb" => 1 << 30,
            _ => {
                return Err(format!(
                    "memory {text:?} has an unknown unit; write e.g. \"256m\" or \"1g\""
                ))
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("memory {text:?} is not a size; write e.g. \"256m\""))?;
        let bytes = n
            .checked_mul(factor)
            .filter(|b| *b <= MAX_MEMORY)
            .ok_or_else(|| format!("memory {text:?} is larger than 1 TiB"))?;
        if bytes < MIN_MEMORY {
            return Err(format!("memory {text:?} is below Docker's minimum of 6m"));
        }
        Ok(Memory(bytes))
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b.is_multiple_of(1 << 30) {
            write!(f, "{}g", b >> 30)
        } else if b.is_multiple_of(1 << 20) {
            write!(f, "{}m", b >> 20)
        } else if b.is_multiple_of(1 << 10) {
            write!(f, "{}k", b >> 10)
        } else {
            write!(f, "{b}")
        }
    }
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bytes(u64),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("memory must be a string such as \"256m\" or a byte count")
        })? {
            Raw::Text(t) => Memory::parse(&t).map_err(serde::de::Error::custom),
            Raw::Bytes(n) => Memory::parse(&n.to_string()).map_err(serde::de::Error::custom),
        }
    }
}

/// A CPU limit in CPUs (`0.5` = half a core), kept as nano-CPUs so it hashes exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Cpus(pub i64);

impl Cpus {
    /// Converts a user's CPU count; rejects zero, negatives, NaN and absurd values.
    pub fn from_cpus(cpus: f64) -> Result<Cpus, String> {
        if !cpus.is_finite() || !(0.01..=1024.0).contains(&cpus) {
            return Err(format!("cpus {cpus} must be between 0.01 and 1024"));
        }
        Ok(Cpus((cpus * 1e9).round() as i64))
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0 as f64 / 1e9)
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Float(f64),
            Int(i64),
        }
        let v = match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("cpus must be a number such as 0.5"))?
        {
            Raw::Float(f) => f,
            Raw::Int(i) => i as f64,
        };
        Cpus::from_cpus(v).map_err(serde::de::Error::custom)
    }
}

/// Limits as they appear in a manifest, berth.toml or template.toml: each may be left out.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceOverrides {
    /// Memory limit; the first of manifest, berth.toml, template, built-in that sets it wins.
    pub memory: Option<Memory>,
    /// CPU limit, resolved the same way.
    pub cpus: Option<Cpus>,
}

/// The built-in limits when nothing else says: docs/reference/files-on-disk.md's 256m and half a core.
pub const DEFAULT_MEMORY: Memory = Memory(256 << 20);
/// See [`DEFAULT_MEMORY`].
pub const DEFAULT_CPUS: Cpus = Cpus(500_000_000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_sizes() {
        assert_eq!(Memory::parse("256m").unwrap().0, 256 << 20);
        assert_eq!(Memory::parse("1G").unwrap().0, 1 << 30);
        assert_eq!(Memory::parse("8192k").unwrap().0, 8 << 20);
        assert_eq!(Memory::parse("10485760").unwrap().0, 10 << 20);
        assert_eq!(Memory::parse("256m").unwrap().to_string(), "256m");
    }

    #[test]
    fn rejects_bad_sizes() {
        for bad in [
            "",
            "m",
            "12x",
            "-5m",
            "1m",
            "1.5g",
            "99999999999999g",
            "256 m m",
        ] {
            assert!(Memory::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpus_are_bounded_and_exact() {
        assert_eq!(Cpus::from_cpus(0.5).unwrap().0, 500_000_000);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 5000.0] {
            assert!(Cpus::from_cpus(bad).is_err(), "{bad}");
        }
    }
}
