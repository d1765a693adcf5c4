//! OpenSSH key revocation lists (`PROTOCOL.krl`): the file hosts name in sshd's `RevokedKeys`.
//! Only what certificate revocation by serial needs is written — a header and, per CA, a
//! certificates section holding one serial list — and read back (serial lists, ranges and
//! bitmaps, as `ssh-keygen -k` writes them; any other section is refused, so a read-back never
//! misses what a file revokes).

use std::collections::{BTreeMap, BTreeSet};

/// `"SSHKRL\n\0"`.
const MAGIC: u64 = 0x5353_484b_524c_0a00;
const FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
/// The most serials a range or bitmap read back may revoke.
const MAX_EXPANDED: u64 = 1_000_000;

/// A KRL that revokes certificates by serial.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Krl {
    /// Grows with every change (sshd ignores it; operators compare it).
    pub version: u64,
    /// When it was written, unix seconds.
    pub generated: u64,
    /// A free comment.
    pub comment: String,
    /// Revoked serials, by the CA's public key (its SSH wire encoding).
    pub revoked: BTreeMap<Vec<u8>, BTreeSet<u64>>,
}

/// A KRL that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a KRL this elevated can read: {0}")]
pub struct KrlError(String);

impl Krl {
    /// Whether the certificate with `serial` signed by `ca` is revoked.
    pub fn is_revoked(&self, ca: &[u8], serial: u64) -> bool {
        self.revoked
            .get(ca)
            .is_some_and(|serials| serials.contains(&serial))
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.generated.to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        string(&mut out, b"");
        string(&mut out, self.comment.as_bytes());
        for (ca, serials) in &self.revoked {
            // Serial 0 means "no serial" to OpenSSH and cannot be revoked.
            let serials: Vec<u64> = serials.iter().copied().filter(|s| *s != 0).collect();
            if serials.is_empty() {
                continue;
            }
            let mut list = Vec::with_capacity(serials.len() * 8);
            for serial in serials {
                list.extend_from_slice(&serial.to_be_bytes());
            }
            let mut section = Vec::new();
            string(&mut section, ca);
            string(&mut section, b"");
            section.push(CERT_SERIAL_LIST);
            string(&mut section, &list);
            out.push(SECTION_CERTIFICATES);
            string(&mut out, &section);
        }
        out
    }

    /// Reads a KRL written by [`Krl::encode`] (or by `ssh-keygen -k` with serials).
    pub fn decode(bytes: &[u8]) -> Result<Self, KrlError> {
        let mut input = Reader(bytes);
        if input.u64()? != MAGIC {
            return Err(KrlError("no KRL magic".into()));
        }
        let format = input.u32()?;
        if format != FORMAT_VERSION {
            return Err(KrlError(format!("format version {format}")));
        }
        let version = input.u64()?;
        let generated = input.u64()?;
        let _flags = input.u64()?;
        let _reserved = input.string()?;
        let comment = String::from_utf8_lossy(input.string()?).into_owned();
        let mut revoked: BTreeMap<Vec<u8>, BTreeSet<u64>> = BTreeMap::new();
        while !input.0.is_empty() {
            let kind = input.byte()?;
            let data = input.string()?;
            if kind != SECTION_CERTIFICATES {
                return Err(KrlError(format!("section type {kind}")));
            }
            let mut section = Reader(data);
            let ca = section.string()?.to_vec();
            let _reserved = section.string()?;
            let serials = revoked.entry(ca).or_default();
            while !section.0.is_empty() {
                let kind = section.byte()?;
                let mut data = Reader(section.string()?);
                match kind {
                    CERT_SERIAL_LIST => {
                        while !data.0.is_empty() {
                            serials.insert(data.u64()?);
                        }
                    }
                    CERT_SERIAL_RANGE => {
                        let (low, high) = (data.u64()?, data.u64()?);
                        if high < low
                            || high - low > MAX_EXPANDED
                            || serials.len() as u64 + (high - low) > MAX_EXPANDED
                        {
                            return Err(KrlError(format!("a range of {low}..={high}")));
                        }
                        serials.extend(low..=high);
                    }
                    CERT_SERIAL_BITMAP => {
                        // Bit N (from the least significant) revokes offset + N.
                        let offset = data.u64()?;
                        let bitmap = data.string()?;
                        if bitmap.len() as u64 * 8 > MAX_EXPANDED {
                            return Err(KrlError(format!("a bitmap of {} bytes", bitmap.len())));
                        }
                        for (index, byte) in bitmap.iter().rev().enumerate() {
                            for bit in 0..8 {
                                if byte & (1 << bit) != 0 {
                                    let serial = offset
                                        .checked_add(index as u64 * 8 + bit)
                                        .ok_or_else(|| KrlError("a bitmap past 2^64".into()))?;
                                    serials.insert(serial);
                                }
                            }
                        }
                    }
                    other => {
                        return Err(KrlError(format!("certificate section type {other:#x}")));
                    }
                }
                if serials.len() as u64 > MAX_EXPANDED {
                    return Err(KrlError("too many serials".into()));
                }
            }
        }
        Ok(Self {
            version,
            generated,
            comment,
            revoked,
        })
    }
}

fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    // A KRL's strings are far below 4 GiB: its serials are 8 bytes each.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KrlError> {
        if self.0.len() < n {
            return Err(KrlError("truncated".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, KrlError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, KrlError> {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(bytes))
    }

    fn u64(&mut self) -> Result<u64, KrlError> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(bytes))
    }

    fn string(&mut self) -> Result<&'a [u8], KrlError> {
        let length = self.u32()? as usize;
        self.take(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_damage_is_refused() {
        let mut krl = Krl {
            version: 3,
            generated: 1_700_000_000,
            comment: "elevate".into(),
            ..Krl::default()
        };
        krl.revoked
            .entry(b"ca-one".to_vec())
            .or_default()
            .extend([7, 42, 0]);
        krl.revoked.entry(b"ca-two".to_vec()).or_default().insert(9);
        let bytes = krl.encode();
        assert_eq!(&bytes[..8], b"SSHKRL\n\0");
        let read = Krl::decode(&bytes).unwrap();
        assert!(read.is_revoked(b"ca-one", 42));
        assert!(read.is_revoked(b"ca-two", 9));
        assert!(!read.is_revoked(b"ca-two", 42));
        assert!(!read.is_revoked(b"ca-one", 0), "serial 0 is never written");
        assert_eq!(read.version, 3);
        assert!(Krl::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(Krl::decode(b"not a krl at all").is_err());
    }
}
