//! `elevated certs revoke` and `list-revoked`: the certificate deny list and its CRL. (Making
//! certificates is `crate::tls::issue`'s, called directly.)

use std::path::Path;
use std::time::Duration;

use super::CommandError;
use crate::clock::{Clock, SystemClock};
use crate::tls::revoked::{self, Revoked, Target};

/// Adds a certificate to the deny list and says what happened.
pub(super) fn revoke(
    dir: &Path,
    serial: Option<String>,
    name: Option<String>,
    reason: &str,
) -> Result<(), CommandError> {
    let target = match (serial, name) {
        (Some(serial), _) => Target::Serial(serial.parse()?),
        (None, Some(name)) => Target::Name(name),
        (None, None) => {
            return Err(CommandError::Usage(
                "name the certificate: --serial S or --name NAME".into(),
            ));
        }
    };
    let file = dir.join(revoked::FILE_NAME);
    let shown = |entry: &revoked::Revocation| {
        if entry.name.is_empty() {
            entry.serial.to_string()
        } else {
            format!("{} ({})", entry.serial, entry.name)
        }
    };
    match revoked::revoke(dir, &target, reason, SystemClock.now())? {
        Revoked::Added(entry) => println!(
            "revoked {} in {}; the daemon refuses it from its next call on",
            shown(&entry),
            file.display()
        ),
        Revoked::Already(entry) => println!(
            "{} was revoked already, at {}; {} is unchanged",
            shown(&entry),
            entry.revoked_at,
            file.display()
        ),
    }
    Ok(())
}

/// Writes a CRL of the deny list and says what it holds.
pub(super) fn write_crl(dir: &Path, crl: &Path, valid_for: Duration) -> Result<(), CommandError> {
    let listed = revoked::write_crl(dir, crl, valid_for, SystemClock.now())?;
    println!(
        "wrote {} listing {listed} certificate(s), valid for {}",
        crl.display(),
        humantime::format_duration(valid_for)
    );
    Ok(())
}

/// Prints the deny list, one certificate a line.
pub(super) fn list_revoked(dir: &Path) -> Result<(), CommandError> {
    let entries = revoked::load(&dir.join(revoked::FILE_NAME))?;
    if entries.is_empty() {
        println!("no revoked certificates");
    }
    for entry in entries {
        println!(
            "{}\t{}\t{}\t{}",
            entry.serial,
            if entry.name.is_empty() {
                "-"
            } else {
                &entry.name
            },
            entry.revoked_at,
            crate::model::one_line(&entry.reason)
        );
    }
    Ok(())
}
