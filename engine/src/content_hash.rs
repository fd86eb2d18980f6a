//! The project's one content hash, blake3: cache signatures, disk-cache checksums, the dynamic prompts'
//! seeded choices, and the fingerprints nodes take of the files they read (`Node::fingerprint`) all use
//! it.

use std::io;
use std::path::Path;

/// The 32-byte hash of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// The 32-byte hash of the file at `path`, read in pieces (a large file is never held whole).
pub fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = Hasher::new();
    io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize())
}

/// A hash in lower-case hex (64 characters).
pub fn to_hex(hash: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    hash.iter().fold(String::with_capacity(64), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// A hash fed in pieces: the same as [`hash_bytes`] of the pieces one after the other. It is also an
/// [`io::Write`], so a reader can be copied into it.
#[derive(Debug, Clone, Default)]
pub struct Hasher(blake3::Hasher);

impl Hasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    /// The hash of everything added so far.
    pub fn finalize(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

impl io::Write for Hasher {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_hashes_as_its_bytes() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("data.bin");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(hash_file(&path).unwrap(), hash_bytes(&bytes));
        assert_ne!(hash_bytes(&bytes), hash_bytes(&bytes[1..]));
        assert!(hash_file(&folder.path().join("absent")).is_err());
    }

    #[test]
    fn pieces_hash_as_their_concatenation() {
        let mut hasher = Hasher::new();
        hasher.update(b"kino").update(b"").update(b"graph");
        assert_eq!(hasher.finalize(), hash_bytes(b"kinograph"));
        // blake3's published hash of no input.
        assert_eq!(
            to_hex(&Hasher::new().finalize()),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}
