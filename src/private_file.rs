//! The rule for files that hold secrets (private keys, passwords), in one place: other users
//! get no permission at all, and the file's group may read it but not write it. So a key may be
//! mode 0600 and owned by the daemon's user, or mode 0640, owned by root with the daemon's
//! group, in which case the daemon can read its key but never change it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Mode bits a private file must not have: any for others, write for the group.
pub const FORBIDDEN_MODE: u32 = 0o027;

/// A private file cannot be checked, or is open to others.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// The file's metadata could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Others may read or write the file, or its group may write it.
    #[error(
        "{}: {what} is {} (mode {mode:04o}); run: chmod 600 {}",
        file.display(),
        exposure(*mode),
        file.display()
    )]
    Exposed {
        /// The file.
        file: PathBuf,
        /// What it holds: "private key", "password file".
        what: &'static str,
        /// Its permission bits.
        mode: u32,
    },
}

/// Who may do what with a file of `mode` that they should not.
fn exposure(mode: u32) -> String {
    let mut parts = Vec::new();
    match (mode & 0o004 != 0, mode & 0o002 != 0) {
        (true, true) => parts.push("readable and writable by others"),
        (true, false) => parts.push("readable by others"),
        (false, true) => parts.push("writable by others"),
        (false, false) => {}
    }
    if mode & 0o001 != 0 {
        parts.push("executable by others");
    }
    if mode & 0o020 != 0 {
        parts.push("writable by its group");
    }
    parts.join(", ")
}

/// Checks that `file`, holding `what`, follows the rule.
pub fn check(file: &Path, what: &'static str) -> Result<(), PrivateFileError> {
    let metadata = std::fs::metadata(file).map_err(|source| PrivateFileError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & FORBIDDEN_MODE != 0 {
        return Err(PrivateFileError::Exposed {
            file: file.to_path_buf(),
            what,
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_mode(mode: u32) -> Result<(), PrivateFileError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.key");
        std::fs::write(&file, "secret").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        check(&file, "private key")
    }

    #[test]
    fn owner_only_and_group_read_pass() {
        for mode in [0o600, 0o400, 0o640, 0o440, 0o700] {
            with_mode(mode).unwrap_or_else(|error| panic!("{mode:o}: {error}"));
        }
    }

    #[test]
    fn others_and_group_write_are_refused_with_the_fix() {
        for (mode, expected) in [
            (
                0o644,
                "private key is readable by others (mode 0644); run: chmod 600 ",
            ),
            (0o602, "is writable by others (mode 0602)"),
            (0o606, "readable and writable by others (mode 0606)"),
            (0o660, "is writable by its group (mode 0660)"),
            (0o601, "executable by others"),
            (
                0o666,
                "readable and writable by others, writable by its group",
            ),
        ] {
            let error = with_mode(mode).unwrap_err().to_string();
            assert!(error.contains(expected), "{mode:o}: {error}");
            assert!(error.contains("server.key"), "{error}");
        }
    }

    #[test]
    fn a_missing_file_says_so() {
        let error = check(Path::new("/nonexistent/key"), "private key").unwrap_err();
        assert!(matches!(error, PrivateFileError::Read { .. }), "{error}");
    }
}
