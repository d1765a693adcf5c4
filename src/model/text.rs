//! Bounded free text: reasons, tickets and comments.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A text field was unacceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Longer than the field allows.
    #[error("{what} is too long: {len} characters, at most {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Contains control characters (other than newline and tab where allowed).
    #[error("{what} contains control characters")]
    Control {
        /// The field.
        what: &'static str,
    },
    /// Contains whitespace where none is allowed.
    #[error("{what} must not contain whitespace")]
    Whitespace {
        /// The field.
        what: &'static str,
    },
    /// Empty after trimming.
    #[error("{what} must not be empty")]
    Empty {
        /// The field.
        what: &'static str,
    },
    /// Contains invisible formatting characters (bidi overrides, zero-width characters) that
    /// could make the text display as something else.
    #[error("{what} contains invisible formatting characters")]
    Format {
        /// The field.
        what: &'static str,
    },
}

/// Whether `c` is an invisible format character that can reorder or hide text in a terminal:
/// bidirectional controls, zero-width characters, invisible operators.
pub fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// `text` as one line that is safe to print in a terminal: newlines and tabs become `\n` and
/// `\t`, other control and format characters become U+FFFD.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || is_format(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn check(
    value: &str,
    what: &'static str,
    max: usize,
    multiline: bool,
) -> Result<String, TextError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(TextError::Empty { what });
    }
    let len = value.chars().count();
    if len > max {
        return Err(TextError::TooLong { what, len, max });
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t')))
    {
        return Err(TextError::Control { what });
    }
    if value.chars().any(is_format) {
        return Err(TextError::Format { what });
    }
    if !multiline && value.chars().any(char::is_whitespace) {
        return Err(TextError::Whitespace { what });
    }
    Ok(value.to_owned())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $multiline:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The most characters this field holds.
            pub const MAX_CHARS: usize = $max;

            /// Trims and checks the text; empty text is an error.
            pub fn parse(value: &str) -> Result<Self, TextError> {
                check(value, $what, $max, $multiline).map(Self)
            }

            /// Like [`Self::parse`], but empty or blank text means "not given".
            pub fn parse_optional(value: &str) -> Result<Option<Self>, TextError> {
                if value.trim().is_empty() {
                    Ok(None)
                } else {
                    Self::parse(value).map(Some)
                }
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = TextError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(text: $name) -> String {
                text.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_type!(
    /// Why someone asks for access or denies it.
    Reason,
    "reason",
    1024,
    true
);
text_type!(
    /// A ticket or incident reference ("INC-4411").
    Ticket,
    "ticket",
    128,
    false
);
text_type!(
    /// An approver's comment.
    Comment,
    "comment",
    1024,
    true
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_bounds() {
        assert_eq!(Reason::parse("  fix it ").unwrap().as_str(), "fix it");
        assert!(matches!(Reason::parse(" "), Err(TextError::Empty { .. })));
        assert!(matches!(
            Reason::parse(&"x".repeat(1025)),
            Err(TextError::TooLong { len: 1025, .. })
        ));
        assert!(matches!(
            Reason::parse("a\u{7}b"),
            Err(TextError::Control { .. })
        ));
        assert!(Reason::parse("line one\nline two").is_ok());
        assert!(matches!(
            Ticket::parse("INC 1"),
            Err(TextError::Whitespace { .. })
        ));
        assert_eq!(Ticket::parse_optional("").unwrap(), None);
        assert!(matches!(
            Reason::parse("ok\u{202E}kcatta"),
            Err(TextError::Format { .. })
        ));
        assert!(matches!(
            Comment::parse("a\u{200B}b"),
            Err(TextError::Format { .. })
        ));
    }

    #[test]
    fn one_line_cannot_fake_lines_or_reorder_text() {
        assert_eq!(
            one_line("a\ndecision  x approved"),
            "a\\ndecision  x approved"
        );
        assert_eq!(one_line("x\u{202E}y\u{1b}[2J"), "x\u{FFFD}y\u{FFFD}[2J");
    }
}
