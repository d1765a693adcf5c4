//! Where an SSH certificate a grant signed goes: beside the public key it was signed for, as
//! OpenSSH looks for it (`id_ed25519.pub` → `id_ed25519-cert.pub`), or where the user says;
//! readable by the holder alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::CliError;

/// The credential holding the certificate line.
pub const CERTIFICATE: &str = "ssh_certificate";

/// Where OpenSSH looks for the certificate of the key whose public half is `public_key`.
pub fn beside(public_key: &Path) -> PathBuf {
    let name = public_key
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pub").unwrap_or(&name);
    public_key.with_file_name(format!("{stem}-cert.pub"))
}

/// Writes the certificate among `credentials` to `out` (mode 0600, replacing an older one)
/// and puts the file's path in its place; does nothing when there is none.
pub fn save(credentials: &mut HashMap<String, String>, out: &Path) -> Result<(), CliError> {
    let Some(line) = credentials.remove(CERTIFICATE) else {
        return Ok(());
    };
    crate::private_file::write(out, &format!("{}\n", line.trim()), 0o600, true)
        .map_err(|error| CliError::Usage(format!("writing the SSH certificate: {error}")))?;
    credentials.insert("ssh_certificate_file".to_owned(), out.display().to_string());
    Ok(())
}

/// The contents of `file`, an SSH public key, read at most to just past the size the daemon
/// accepts (it checks the rest).
pub fn read_public_key(file: &std::path::Path) -> Result<String, CliError> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|opened| {
            opened
                .take(crate::model::MAX_PUBLIC_KEY as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(|error| CliError::Usage(format!("--ssh-key {}: {error}", file.display())))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_goes_where_openssh_looks() {
        assert_eq!(
            beside(Path::new("/home/a/.ssh/id_ed25519.pub")),
            Path::new("/home/a/.ssh/id_ed25519-cert.pub")
        );
        assert_eq!(beside(Path::new("key")), Path::new("key-cert.pub"));
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("id-cert.pub");
        let mut credentials = HashMap::from([(
            CERTIFICATE.to_owned(),
            "ssh-ed25519-cert-v01@openssh.com AAAA".to_owned(),
        )]);
        save(&mut credentials, &out).unwrap();
        save(&mut credentials, &out).unwrap();
        assert!(
            std::fs::read_to_string(&out)
                .unwrap()
                .starts_with("ssh-ed25519-cert")
        );
        assert_eq!(
            credentials["ssh_certificate_file"],
            out.display().to_string()
        );
    }
}
