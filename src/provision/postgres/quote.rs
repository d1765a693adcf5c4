//! Quoting for the statements PostgreSQL cannot parameterize (`GRANT`, `REVOKE`, `CREATE`,
//! `ALTER` and `DROP ROLE`): every name goes through [`quote_ident`] and every value through
//! [`quote_literal`], so no principal, account or role name can change a statement's meaning.
//! Catalog queries take names as `$n` parameters instead.

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`). Longer ones are silently cut,
/// which would make a name mean another role, so they are refused.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A name or value cannot be put into a statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuoteError(String);

impl From<QuoteError> for crate::provision::ProvisionError {
    fn from(error: QuoteError) -> Self {
        Self(error.0)
    }
}

/// Why `name` cannot be a PostgreSQL identifier, or `None` when it can.
pub fn identifier_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_IDENTIFIER_BYTES {
        Some("must be at most 63 bytes (PostgreSQL would cut it to another name)")
    } else if name.contains('\0') {
        Some("must not contain NUL")
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}

/// `name` as a quoted identifier: wrapped in `"`, with every `"` doubled. Refuses names that
/// [`identifier_problem`] finds fault with.
pub fn quote_ident(name: &str) -> Result<String, QuoteError> {
    if let Some(problem) = identifier_problem(name) {
        return Err(QuoteError(format!("role name {name:?} {problem}")));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `value` as a string literal: wrapped in `'`, with every `'` doubled; a value with a
/// backslash becomes an `E'…'` literal with its backslashes doubled, which means the same
/// whatever `standard_conforming_strings` says. Refuses NUL, which no literal can hold.
pub fn quote_literal(value: &str) -> Result<String, QuoteError> {
    if value.contains('\0') {
        return Err(QuoteError("a value must not contain NUL".to_owned()));
    }
    let doubled = value.replace('\'', "''");
    Ok(if value.contains('\\') {
        format!("E'{}'", doubled.replace('\\', "\\\\"))
    } else {
        format!("'{doubled}'")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_wrapped_and_their_quotes_doubled() {
        assert_eq!(quote_ident("alice").unwrap(), "\"alice\"");
        assert_eq!(quote_ident("Alice").unwrap(), "\"Alice\"");
        assert_eq!(
            quote_ident("bob\"; DROP TABLE canary; --").unwrap(),
            "\"bob\"\"; DROP TABLE canary; --\""
        );
        assert_eq!(quote_ident("o'brien").unwrap(), "\"o'brien\"");
        assert_eq!(quote_ident("zoë").unwrap(), "\"zoë\"");
        assert_eq!(quote_ident("\"").unwrap(), "\"\"\"\"");
        assert_eq!(quote_ident("a\\b").unwrap(), "\"a\\b\"");
    }

    #[test]
    fn identifiers_postgres_would_misread_are_refused() {
        for bad in ["", "a\0b", "a\nb", "\u{7f}"] {
            assert!(quote_ident(bad).is_err(), "{bad:?}");
        }
        let longest = "x".repeat(MAX_IDENTIFIER_BYTES);
        assert!(quote_ident(&longest).is_ok());
        assert!(quote_ident(&format!("{longest}x")).is_err());
        // 62 bytes of ASCII and one two-byte letter: 64 bytes.
        assert!(quote_ident(&format!("{}ë", "x".repeat(62))).is_err());
        let error = quote_ident("a\0b").unwrap_err();
        assert_eq!(
            error.to_string(),
            "role name \"a\\0b\" must not contain NUL"
        );
    }

    #[test]
    fn literals_double_quotes_and_escape_backslashes() {
        assert_eq!(quote_literal("plain").unwrap(), "'plain'");
        assert_eq!(quote_literal("o'brien").unwrap(), "'o''brien'");
        assert_eq!(quote_literal("'; --").unwrap(), "'''; --'");
        assert_eq!(quote_literal("a\\b'c").unwrap(), "E'a\\\\b''c'");
        assert_eq!(
            quote_literal("2026-11-22T10:00:00.000Z").unwrap(),
            "'2026-11-22T10:00:00.000Z'"
        );
        assert!(quote_literal("a\0").is_err());
    }
}
