//! The rule for files that hold secrets (private keys, passwords), in one place: other users
//! get no permission at all, and the file's group may read it but not write it. So a key may be
//! mode 0600 and owned by the daemon's user, or mode 0640, owned by root with the daemon's
//! group, in which case the daemon can read its key but never change it. Beside the rule, the
//! two helpers that read a key file under it ([`read`]) and write a new file with its mode set
//! from the start ([`write`]), shared by the TLS certificates and the audit key.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

/// A file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file exists and replacing it was not asked for.
    #[error("{} already exists (pass --force to replace it)", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads `file`, which holds a secret (`what`), after checking that it is private.
pub fn read(file: &Path, what: &'static str) -> Result<Vec<u8>, PrivateFileError> {
    check(file, what)?;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| PrivateFileError::Read {
            file: file.to_path_buf(),
            source,
        })?;
    Ok(bytes)
}

/// Writes `contents` to `file` with permission bits `mode` from its creation on (through a
/// fresh temporary file renamed over it), refusing to replace an existing file unless `force`.
pub fn write(file: &Path, contents: &str, mode: u32, force: bool) -> Result<(), WriteError> {
    let io = |file: &Path| {
        let file = file.to_path_buf();
        move |source| WriteError::Io { file, source }
    };
    if !force && file.exists() {
        return Err(WriteError::Exists(file.to_path_buf()));
    }
    // A fresh temporary file of this file's own, so that `mode` applies to it for certain.
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = file.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&temporary);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(io(&temporary))?;
    out.write_all(contents.as_bytes()).map_err(io(&temporary))?;
    out.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, file).map_err(io(file))
}
