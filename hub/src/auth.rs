//! Tokens: HS256-signed JWTs whose claims grant read and write per database and store, checked
//! into core's [`Grants`] when a connection says hello.
//!
//! People and jobs (the bridge) get the same kind of token and the same checks. Claims:
//!
//! ```json
//! { "sub": "alice", "aud": "tidepool", "iat": 1700000000, "exp": 1700086400,
//!   "grants": { "read": { "app": ["todos", "notes"] }, "write": { "app": ["todos"] } } }
//! ```
//!
//! `"*"` as a store grants every store of the database (and as a database, every database).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tidepool_core::sync::{AllowAll, Authorizer, Grants};

/// The audience every Tidepool token names, so tokens minted with the same secret for another
/// service are refused.
pub const AUDIENCE: &str = "tidepool";

/// Shorter secrets make brute-forcing a signature plausible.
const MIN_SECRET_BYTES: usize = 32;

/// Why a token or secret could not be made or read.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: the secret has {len} bytes; at least {MIN_SECRET_BYTES} are required")]
    WeakSecret { path: PathBuf, len: usize },
    #[error("token: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

/// What a token grants, as it appears in the claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantClaims {
    #[serde(default)]
    pub read: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub write: BTreeMap<String, Vec<String>>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub grants: GrantClaims,
}

impl Claims {
    /// Claims for `sub` on one database, valid for `ttl` from `now` (seconds since the epoch).
    pub fn new(sub: &str, db: &str, read: &[String], write: &[String], now: u64, ttl: Duration) -> Claims {
        let mut grants = GrantClaims::default();
        if !read.is_empty() {
            grants.read.insert(db.to_owned(), read.to_vec());
        }
        if !write.is_empty() {
            grants.write.insert(db.to_owned(), write.to_vec());
        }
        Claims { sub: sub.to_owned(), aud: AUDIENCE.to_owned(), iat: now, exp: now.saturating_add(ttl.as_secs()), grants }
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Signs claims with the secret (HS256).
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret))?)
}

/// Reads a secret file: its bytes with surrounding whitespace removed.
pub fn load_secret(path: &Path) -> Result<Vec<u8>, AuthError> {
    let raw = std::fs::read(path).map_err(|source| AuthError::Io { path: path.to_owned(), source })?;
    let secret = raw.trim_ascii().to_vec();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthError::WeakSecret { path: path.to_owned(), len: secret.len() });
    }
    Ok(secret)
}

/// Reads the secret at `path`, creating it (32 random bytes as hex, owner-only permissions) if
/// it does not exist. Returns the secret and whether it was created.
pub fn load_or_create_secret(path: &Path) -> Result<(Vec<u8>, bool), AuthError> {
    if path.exists() {
        return Ok((load_secret(path)?, false));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let text = hex::encode(bytes);
    let io = |source| AuthError::Io { path: path.to_owned(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok((text.into_bytes(), true))
}

/// Verifies HS256 tokens: signature, audience and expiry. Other algorithms (`none` included)
/// are refused before the signature is looked at.
#[derive(Clone)]
pub struct JwtAuthorizer {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthorizer").finish_non_exhaustive()
    }
}

impl JwtAuthorizer {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        // A small allowance for clock skew between the minting machine and the hub.
        validation.leeway = 5;
        JwtAuthorizer { key: DecodingKey::from_secret(secret), validation }
    }

    /// The claims of a valid token.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        Ok(jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?.claims)
    }
}

impl Authorizer for JwtAuthorizer {
    fn authorize(&self, token: &str) -> Result<Grants, String> {
        match self.verify(token) {
            Ok(claims) => {
                tracing::debug!(sub = %claims.sub, "token accepted");
                Ok(Grants { read: claims.grants.read, write: claims.grants.write })
            }
            Err(e) => {
                // The detail stays in the hub's log; the client only learns "refused".
                tracing::info!(error = %e, "token refused");
                Err(e.to_string())
            }
        }
    }
}

/// How a hub authorizes: signed tokens, or everything for everyone in explicit development mode.
#[derive(Debug, Clone)]
pub enum HubAuth {
    Jwt(Box<JwtAuthorizer>),
    InsecureDev,
}

impl HubAuth {
    /// The one database a valid token is for, which decides the hub that serves it when
    /// several hubs share storage. `None` for a token spanning databases (`*` or several), an
    /// invalid one (the serving hub refuses it) and development mode.
    pub fn database(&self, token: &str) -> Option<String> {
        let HubAuth::Jwt(jwt) = self else { return None };
        let claims = jwt.verify(token).ok()?;
        let mut dbs = claims.grants.read.keys().chain(claims.grants.write.keys());
        let db = dbs.next()?;
        (db != "*" && dbs.all(|other| other == db)).then(|| db.clone())
    }
}

impl Authorizer for HubAuth {
    fn authorize(&self, token: &str) -> Result<Grants, String> {
        match self {
            HubAuth::Jwt(jwt) => jwt.authorize(token),
            HubAuth::InsecureDev => AllowAll.authorize(token),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use tidepool_core::StoreRef;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(ttl: u64, iat: u64) -> Claims {
        Claims::new("alice", "app", &["todos".into()], &["*".into()], iat, Duration::from_secs(ttl))
    }

    #[test]
    fn a_valid_token_grants_what_it_says() {
        let token = mint(SECRET, &claims(60, now_secs())).expect("mint");
        let grants = JwtAuthorizer::new(SECRET).authorize(&token).expect("valid");
        assert!(grants.can_read(&StoreRef::new("app", "todos")));
        assert!(!grants.can_read(&StoreRef::new("app", "notes")));
        assert!(grants.can_write(&StoreRef::new("app", "notes")));
        assert!(!grants.can_write(&StoreRef::new("other", "notes")));
    }

    #[test]
    fn expired_forged_and_unsigned_tokens_are_refused() {
        let auth = JwtAuthorizer::new(SECRET);
        let expired = mint(SECRET, &claims(60, now_secs() - 3600)).expect("mint");
        assert!(auth.authorize(&expired).is_err());

        let forged = mint(b"another secret that is long enough!", &claims(60, now_secs())).expect("mint");
        assert!(auth.authorize(&forged).is_err());

        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(60, now_secs())).expect("json"));
        assert!(auth.authorize(&format!("{header}.{body}.")).is_err());

        let mut other_audience = claims(60, now_secs());
        other_audience.aud = "elsewhere".into();
        assert!(auth.authorize(&mint(SECRET, &other_audience).expect("mint")).is_err());
        assert!(auth.authorize("not a token").is_err());
    }

    #[test]
    fn secrets_are_created_once_and_must_be_long() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        let (first, created) = load_or_create_secret(&path).expect("create");
        assert!(created);
        let (again, created) = load_or_create_secret(&path).expect("load");
        assert!(!created);
        assert_eq!(first, again);
        std::fs::write(dir.path().join("short"), "abc").expect("write");
        assert!(matches!(load_secret(&dir.path().join("short")), Err(AuthError::WeakSecret { .. })));
    }
}
