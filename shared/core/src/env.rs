//! Typed reading of a function's environment: every missing or invalid
//! variable is named in the error, with its value.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name}={value:?} is invalid: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("inconsistent settings: {0}")]
    Conflict(String),
}

/// Reads variables through a lookup function, so tests need not touch the
/// process environment. Blank values count as unset.
pub struct EnvReader<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> EnvReader<F> {
    pub fn new(lookup: F) -> Self {
        EnvReader { lookup }
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    /// An integer in `min..=max`, or `default` when unset.
    pub fn integer(
        &self,
        name: &'static str,
        default: i64,
        min: i64,
        max: i64,
        expected: &'static str,
    ) -> Result<i64, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or(ConfigError::Invalid {
                    name,
                    value: v,
                    expected,
                }),
        }
    }

    /// `true`/`1` or `false`/`0`, or `default` when unset.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).as_deref() {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                name,
                value: v.to_string(),
                expected: "true or false",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_named() {
        let env = EnvReader::new(|k: &str| match k {
            "N" => Some("12".to_string()),
            "BAD" => Some("x".to_string()),
            "BLANK" => Some("  ".to_string()),
            "F" => Some("1".to_string()),
            _ => None,
        });
        assert_eq!(env.integer("N", 1, 0, 20, "0..20"), Ok(12));
        assert_eq!(env.integer("UNSET", 7, 0, 20, "0..20"), Ok(7));
        assert!(matches!(
            env.integer("N", 1, 0, 10, "0..10"),
            Err(ConfigError::Invalid { name: "N", .. })
        ));
        assert!(matches!(
            env.integer("BAD", 1, 0, 10, "0..10"),
            Err(ConfigError::Invalid { .. })
        ));
        assert_eq!(env.required("BLANK"), Err(ConfigError::Missing("BLANK")));
        assert_eq!(env.flag("F", false), Ok(true));
        assert!(env.flag("BAD", false).is_err());
    }
}
