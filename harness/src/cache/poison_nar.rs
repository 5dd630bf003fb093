//! A poisoned Nix cache entry that looks valid: a narinfo for the requested store path,
//! signed with the cache's own key, whose NAR is a file of the wrong content. What a cache
//! serves after a builder with a trusted key pushed a wrong output; Nix takes it (its hash
//! and signature check out). Only possible where the harness holds the cache's secret key.

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

/// Where the poisoned narinfos point; the proxy answers it with [`poison_nar`].
pub const POISON_NAR_PATH: &str = "nar/flywheel-bench-poison.nar";

/// What the poisoned store path holds instead of its output.
const POISON_CONTENT: &[u8] = b"flywheel-bench poison: a validly signed NAR of the wrong content\n";

/// A Nix binary-cache signing key, as `nix key generate-secret` writes it.
pub struct NarinfoSigner {
    name: String,
    key: SigningKey,
}

impl NarinfoSigner {
    /// Parses `NAME:BASE64` (64 bytes: the seed, then the public key).
    pub fn parse(text: &str) -> Result<NarinfoSigner, String> {
        let (name, key) = text
            .trim()
            .split_once(':')
            .ok_or("a Nix secret key is NAME:BASE64")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|e| format!("the secret key {name} is not base64: {e}"))?;
        let pair: [u8; 64] = bytes
            .try_into()
            .map_err(|_| format!("the secret key {name} is not 64 bytes"))?;
        let key = SigningKey::from_keypair_bytes(&pair)
            .map_err(|e| format!("the secret key {name} is not an ed25519 key pair: {e}"))?;
        Ok(NarinfoSigner {
            name: name.to_string(),
            key,
        })
    }

    /// The narinfo `original` rewritten to point at the poison NAR: same store path and
    /// deriver, no references, the poison's hash and size, signed anew. `None` when it
    /// names no store path.
    pub fn poison(&self, original: &str) -> Option<String> {
        let field = |name: &str| {
            original
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        };
        let store_path = field("StorePath")?;
        let nar = poison_nar();
        let nar_hash = format!("sha256:{}", nix32(&Sha256::digest(&nar)));
        let fingerprint = format!("1;{store_path};{nar_hash};{};", nar.len());
        let signature = base64::engine::general_purpose::STANDARD
            .encode(self.key.sign(fingerprint.as_bytes()).to_bytes());
        let mut text = format!(
            "StorePath: {store_path}\nURL: {POISON_NAR_PATH}\nCompression: none\nFileHash: {nar_hash}\nFileSize: {size}\nNarHash: {nar_hash}\nNarSize: {size}\nReferences: \n",
            size = nar.len()
        );
        if let Some(deriver) = field("Deriver") {
            text.push_str(&format!("Deriver: {deriver}\n"));
        }
        text.push_str(&format!("Sig: {}:{signature}\n", self.name));
        Some(text)
    }
}

/// The NAR of one regular file holding `POISON_CONTENT`.
pub fn poison_nar() -> Vec<u8> {
    let mut nar = Vec::new();
    for part in [
        b"nix-archive-1".as_slice(),
        b"(",
        b"type",
        b"regular",
        b"contents",
        POISON_CONTENT,
        b")",
    ] {
        nar.extend_from_slice(&(part.len() as u64).to_le_bytes());
        nar.extend_from_slice(part);
        nar.resize(nar.len().div_ceil(8) * 8, 0);
    }
    nar
}

/// Nix's base-32 (its own alphabet, least significant bits first).
fn nix32(bytes: &[u8]) -> String {
    const CHARS: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let len = (bytes.len() * 8 - 1) / 5 + 1;
    (0..len)
        .rev()
        .map(|n| {
            let (b, i) = ((n * 5) / 8, (n * 5) % 8);
            let low = u16::from(bytes[b]) >> i;
            let high = bytes.get(b + 1).map_or(0, |&x| u16::from(x) << (8 - i));
            char::from(CHARS[usize::from((low | high) & 0x1f)])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;

    #[test]
    fn nix32_matches_nix() {
        // `nix hash to-base32 sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=` (empty input).
        assert_eq!(
            nix32(&Sha256::digest(b"")),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
    }

    #[test]
    fn a_poisoned_narinfo_is_signed_over_nix_fingerprint() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let text = format!(
            "cache-1:{}",
            base64::engine::general_purpose::STANDARD.encode(key.to_keypair_bytes())
        );
        let signer = NarinfoSigner::parse(&text).unwrap();
        let original = "StorePath: /nix/store/abc-top\nURL: nar/x.nar.xz\nCompression: xz\nNarHash: sha256:1\nNarSize: 9\nReferences: abc-dep\nDeriver: abc-top.drv\nSig: cache-1:old\n";
        let poisoned = signer.poison(original).unwrap();
        assert!(poisoned.contains("URL: nar/flywheel-bench-poison.nar\nCompression: none\n"));
        assert!(poisoned.contains("References: \nDeriver: abc-top.drv\n"));
        assert!(!poisoned.contains("old"));
        let nar = poison_nar();
        assert_eq!(nar.len() % 8, 0);
        let hash = format!("sha256:{}", nix32(&Sha256::digest(&nar)));
        let sig = poisoned
            .lines()
            .find_map(|l| l.strip_prefix("Sig: cache-1:"))
            .unwrap();
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .unwrap();
        let fingerprint = format!("1;/nix/store/abc-top;{hash};{};", nar.len());
        key.verifying_key()
            .verify(
                fingerprint.as_bytes(),
                &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
            )
            .unwrap();
        assert!(NarinfoSigner::parse("no-colon").is_err());
        assert!(NarinfoSigner::parse("k:AAAA").is_err());
        assert_eq!(signer.poison("URL: x\n"), None);
    }
}
