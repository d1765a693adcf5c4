//! The bearer token the identity provider sends. Read from a private file (mode 0600 or
//! stricter, as every key file); kept only as an HMAC tag under a key made at start, so that
//! checking a presented token takes the same time whatever it shares with the real one, and
//! the token itself is never held in memory after loading nor shown by `Debug`.

use std::path::Path;

use ring::hmac;
use ring::rand::SystemRandom;

/// The shortest token accepted: 128 bits as hex.
pub const MIN_TOKEN_BYTES: usize = 32;

/// A loaded token.
pub struct Token {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Reads the token in `file` (whitespace around it ignored).
    pub fn load(file: &Path) -> Result<Self, String> {
        let bytes = crate::private_file::read(file, "SCIM token").map_err(|e| e.to_string())?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("{}: the SCIM token must be text", file.display()))?;
        Self::new(text.trim()).map_err(|problem| format!("{}: {problem}", file.display()))
    }

    /// The token `text`.
    pub fn new(text: &str) -> Result<Self, String> {
        if text.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the SCIM token is {} characters long; use at least {MIN_TOKEN_BYTES} random ones (e.g. `openssl rand -hex 32`)",
                text.len()
            ));
        }
        if !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the SCIM token must be printable ASCII without spaces".to_owned());
        }
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| "no randomness to protect the SCIM token with".to_owned())?;
        let tag = hmac::sign(&key, text.as_bytes());
        Ok(Self { key, tag })
    }

    /// Whether `presented` is the token, in time that does not depend on how much of it is.
    pub fn verify(&self, presented: &[u8]) -> bool {
        hmac::verify(&self.key, presented, self.tag.as_ref()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_verifies_and_debug_hides_it() {
        let token = Token::new("0123456789abcdef0123456789abcdef").unwrap();
        assert!(token.verify(b"0123456789abcdef0123456789abcdef"));
        assert!(!token.verify(b"0123456789abcdef0123456789abcdeF"));
        assert!(!token.verify(b""));
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert!(Token::new("short").unwrap_err().contains("at least"));
    }
}
