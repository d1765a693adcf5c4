//! Validated names: principals, groups and resources.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A string was not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} '{value}': {problem}")]
pub struct NameError {
    /// What kind of name was expected ("principal", "resource name", …).
    pub what: &'static str,
    /// The offending value, cut short when long.
    pub value: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn validate(value: &str, what: &'static str) -> Result<(), NameError> {
    let fail = |problem| NameError {
        what,
        value: value.chars().take(MAX_NAME_LEN).collect(),
        problem,
    };
    if value.is_empty() {
        return Err(fail("must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(fail("longer than 64 characters"));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(fail("must start with a letter or a digit"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(fail(
            "only ASCII letters, digits, '.', '_', '-' and '@' are allowed",
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates a name.
            pub fn parse(value: &str) -> Result<Self, NameError> {
                validate(value, $what)?;
                Ok(Self(value.to_owned()))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                validate(&value, $what)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// Who someone is: the identity of a client certificate and a key of the directory.
    Principal,
    "principal"
);
impl Principal {
    /// The account a lease's access is given to when the directory maps none for its
    /// provisioner: the principal's own name.
    pub fn default_account(&self) -> String {
        self.as_str().to_owned()
    }
}

name_type!(
    /// A group of the directory ("engineering", "security").
    GroupName,
    "group name"
);
name_type!(
    /// A resource of the policy ("prod-db-admin").
    ResourceName,
    "resource name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "engineer",
            "alice@example.com",
            "prod-db-admin",
            "a",
            "x.y_z-1",
        ] {
            assert_eq!(Principal::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_names_that_could_confuse_targets() {
        for bad in [
            "",
            "-x",
            "a b",
            "robert'); DROP TABLE",
            "é",
            "a\nb",
            &"x".repeat(65),
        ] {
            let error = ResourceName::parse(bad).unwrap_err();
            assert_eq!(error.what, "resource name");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<Principal>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<Principal>("\"not ok\"").is_err());
    }
}
