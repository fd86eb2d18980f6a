//! The project's one content hash, blake3: cache signatures, disk-cache checksums, and the
//! fingerprints nodes take of the files they read (`Node::fingerprint`) all use it.

use std::io;
use std::path::Path;

/// The 32-byte hash of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// The 32-byte hash of the file at `path`, read in pieces (a large file is never held whole).
pub fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(*hasher.finalize().as_bytes())
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
}
