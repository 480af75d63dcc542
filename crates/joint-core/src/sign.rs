//! Signed envelopes: an HMAC-SHA256 tag over the envelope, keyed by a deployment key.
//!
//! The tag is `{key_id}:{hex(hmac)}` over the envelope's JSON with `tag` absent. Verification
//! looks the key up by id, so keys rotate by deploying a keyring that holds the new key first (it
//! signs) and the old key second (it still verifies) until no event signed with the old key can
//! arrive. Any change to the event — another run id, step, branch, input or function — breaks the
//! tag, so an event cannot be replayed into another run.

use std::fmt;

use sha2::Sha256;

use crate::envelope::Envelope;

/// Why a keyring could not be made, or an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// `JOINT_KEYS` (or the keys given) is malformed.
    #[error("bad keys: {0}")]
    Keys(String),
    /// The event carries no tag, and this deployment requires signed events.
    #[error(
        "refused event: the event for {instance} is not signed and this deployment requires signed events"
    )]
    Unsigned {
        /// The instance the event addresses.
        instance: String,
    },
    /// The tag is not `id:hex`.
    #[error("refused event: the tag of the event for {instance} is malformed")]
    Malformed {
        /// The instance the event addresses.
        instance: String,
    },
    /// The tag names a key this deployment does not hold.
    #[error(
        "refused event: the event for {instance} is signed with key '{key}', which this deployment does not hold (it holds {held})"
    )]
    UnknownKey {
        /// The instance the event addresses.
        instance: String,
        /// The key id in the tag.
        key: String,
        /// The ids held.
        held: String,
    },
    /// The signature does not match the event.
    #[error(
        "refused event: the signature of the event for {instance} does not match: it was forged or altered (another run, step, branch or input)"
    )]
    Forged {
        /// The instance the event addresses.
        instance: String,
    },
}

/// HMAC-SHA256 (RFC 2104), from the `hmac` crate.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut m = match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Constant-time equality (`subtle`): how long a comparison takes says nothing about where two
/// tags differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Deployment keys: the first signs, all verify.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("secrets", &"<redacted>")
            .finish()
    }
}

impl Keyring {
    /// Keys as (id, secret); the first signs. Ids are 1-32 characters of `[A-Za-z0-9_-]`;
    /// secrets at least 16 bytes.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Result<Keyring, SignError> {
        if keys.is_empty() {
            return Err(SignError::Keys("a keyring needs at least one key".into()));
        }
        for (id, secret) in &keys {
            let ok_id = !id.is_empty()
                && id.len() <= 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok_id {
                return Err(SignError::Keys(format!(
                    "key id '{id}' must be 1-32 characters of A-Z a-z 0-9 - _"
                )));
            }
            if secret.len() < 16 {
                return Err(SignError::Keys(format!(
                    "key '{id}' is {} bytes; use at least 16",
                    secret.len()
                )));
            }
        }
        Ok(Keyring { keys })
    }

    /// Parse `id:hexsecret,id2:hexsecret2` (the format of `JOINT_KEYS`).
    pub fn parse(spec: &str) -> Result<Keyring, SignError> {
        let mut keys = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, secret) = part
                .split_once(':')
                .ok_or_else(|| SignError::Keys("each key must be written id:hexsecret".into()))?;
            let secret = hex::decode(secret.trim())
                .map_err(|_| SignError::Keys(format!("key '{id}': the secret is not hex")))?;
            keys.push((id.trim().to_string(), secret));
        }
        Keyring::new(keys)
    }

    /// Ids, signing key first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    fn body(env: &Envelope) -> Vec<u8> {
        let mut e = env.clone();
        e.tag = None;
        e.encode()
    }

    /// Tag `env` with the signing key (replacing any tag).
    pub fn sign(&self, env: &mut Envelope) {
        let (id, secret) = &self.keys[0];
        let mac = hmac_sha256(secret, &Self::body(env));
        env.tag = Some(format!("{id}:{}", hex::encode(mac)));
    }

    /// Check `env`'s tag.
    pub fn verify(&self, env: &Envelope) -> Result<(), SignError> {
        let instance = env.instance_id();
        let Some(tag) = env.tag.as_deref() else {
            return Err(SignError::Unsigned { instance });
        };
        let Some((id, mac)) = tag.split_once(':') else {
            return Err(SignError::Malformed { instance });
        };
        let Some((_, secret)) = self.keys.iter().find(|(k, _)| k == id) else {
            return Err(SignError::UnknownKey {
                instance,
                key: id.chars().take(32).collect(),
                held: self.ids().join(", "),
            });
        };
        let Ok(mac) = hex::decode(mac) else {
            return Err(SignError::Malformed { instance });
        };
        let want = hmac_sha256(secret, &Self::body(env));
        if !ct_eq(&mac, &want) {
            return Err(SignError::Forged { instance });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{ENVELOPE_VERSION, Input};

    #[test]
    fn rfc4231_vectors() {
        // Test case 1
        let mac = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(
            hex::encode(mac),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block size
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn env() -> Envelope {
        Envelope {
            v: ENVELOPE_VERSION,
            workflow: "wf".into(),
            workflow_id: "run-a".into(),
            function: "B".into(),
            step: 1,
            branch: vec![],
            vars: Default::default(),
            input: Input::Inline(serde_json::json!({"x": 1.5, "s": "é"})),
            home: "a".into(),
            def_hash: "h".into(),
            trace: None,
            tag: None,
        }
    }

    #[test]
    fn sign_verify_rotate_and_refuse() {
        let old = Keyring::parse("k1:00112233445566778899aabbccddeeff").unwrap();
        let mut e = env();
        old.sign(&mut e);
        assert!(e.tag.as_deref().unwrap().starts_with("k1:"));
        // Survives the wire.
        let back = Envelope::decode(&e.encode(), 1 << 20).unwrap();
        old.verify(&back).unwrap();
        // Rotation: the new keyring signs with k2 and still accepts k1.
        let both = Keyring::parse(
            "k2:ffeeddccbbaa99887766554433221100, k1:00112233445566778899aabbccddeeff",
        )
        .unwrap();
        both.verify(&back).unwrap();
        let mut e2 = env();
        both.sign(&mut e2);
        assert!(e2.tag.as_deref().unwrap().starts_with("k2:"));
        assert!(
            matches!(old.verify(&e2).unwrap_err(), SignError::UnknownKey { key, .. } if key == "k2")
        );
        // Replayed into another run: refused.
        let mut replay = back.clone();
        replay.workflow_id = "run-b".into();
        let e = old.verify(&replay).unwrap_err();
        assert!(matches!(e, SignError::Forged { .. }), "{e}");
        assert!(e.to_string().contains("does not match"), "{e}");
        let mut altered = back.clone();
        altered.input = Input::Inline(serde_json::json!({"x": 2}));
        assert!(old.verify(&altered).is_err());
        // Unsigned: refused.
        assert!(matches!(
            old.verify(&env()).unwrap_err(),
            SignError::Unsigned { .. }
        ));
        let mut bad = back;
        bad.tag = Some("k1:zz".into());
        assert!(matches!(
            old.verify(&bad).unwrap_err(),
            SignError::Malformed { .. }
        ));
        bad.tag = Some("nocolon".into());
        assert!(
            old.verify(&bad)
                .unwrap_err()
                .to_string()
                .contains("malformed")
        );
    }

    #[test]
    fn keyrings_validate_and_redact() {
        assert!(Keyring::parse("").is_err());
        assert!(
            Keyring::parse("k1:0011")
                .unwrap_err()
                .to_string()
                .contains("at least 16")
        );
        assert!(Keyring::parse("k 1:00112233445566778899aabbccddeeff").is_err());
        assert!(
            Keyring::parse("k1:xyz")
                .unwrap_err()
                .to_string()
                .contains("not hex")
        );
        let k = Keyring::parse("k1:00112233445566778899aabbccddeeff").unwrap();
        let dbg = format!("{k:?}");
        assert!(dbg.contains("k1") && dbg.contains("redacted") && !dbg.contains("0011"));
    }
}
