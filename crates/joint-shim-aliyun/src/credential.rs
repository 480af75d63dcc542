//! Access keys: AccessKey id + secret, optionally an STS security token.

use std::fmt;

/// Environment variable holding the AccessKey id.
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Environment variable holding the AccessKey secret.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Environment variable holding an STS security token.
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// An Alibaba Cloud credential. `Debug` never prints the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// AccessKey id (not secret).
    pub access_key_id: String,
    access_key_secret: String,
    security_token: Option<String>,
}

impl Credential {
    /// A long-lived AccessKey pair.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Credential {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: None,
        }
    }

    /// Attach an STS security token (temporary credentials).
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        let t = token.into();
        self.security_token = if t.is_empty() { None } else { Some(t) };
        self
    }

    /// From `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and the optional
    /// `ALIBABA_CLOUD_SECURITY_TOKEN`; an error names the missing variable.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`Credential::from_env`] with a custom lookup (tests, settings maps).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let id = get(ENV_ACCESS_KEY_ID)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{ENV_ACCESS_KEY_ID} is not set"))?;
        let secret = get(ENV_ACCESS_KEY_SECRET)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{ENV_ACCESS_KEY_SECRET} is not set"))?;
        let mut c = Credential::new(id, secret);
        if let Some(t) = get(ENV_SECURITY_TOKEN) {
            c = c.with_security_token(t);
        }
        Ok(c)
    }

    /// The secret (for signing code only).
    pub fn access_key_secret(&self) -> &str {
        &self.access_key_secret
    }

    /// The STS token, if any.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_deref()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let c = Credential::new("AKID", "very-secret").with_security_token("tok-secret");
        let d = format!("{c:?}");
        assert!(d.contains("AKID"), "{d}");
        assert!(
            !d.contains("very-secret") && !d.contains("tok-secret"),
            "{d}"
        );
    }

    #[test]
    fn lookup_names_the_missing_variable() {
        let e = Credential::from_lookup(|k| (k == ENV_ACCESS_KEY_ID).then(|| "id".to_string()))
            .unwrap_err();
        assert!(e.contains(ENV_ACCESS_KEY_SECRET), "{e}");
        let c = Credential::from_lookup(|k| match k {
            ENV_ACCESS_KEY_ID => Some("id".into()),
            ENV_ACCESS_KEY_SECRET => Some("s".into()),
            ENV_SECURITY_TOKEN => Some("t".into()),
            _ => None,
        })
        .expect("complete");
        assert_eq!(c.security_token(), Some("t"));
        assert_eq!(c.access_key_secret(), "s");
    }
}
