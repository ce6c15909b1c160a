//! Who may use the review station: local accounts (argon2id password hashes in a users file the
//! integrator keeps beside the record) and the sessions of those logged in, each with its own
//! CSRF token, ending after an idle or an absolute time limit.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::integrity::bundle::write_atomic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads cases and cells, and signs off.
    Reviewer,
    /// Reads only.
    Viewer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// argon2id PHC string.
    pub hash: String,
}

/// The users file: a JSON list of [`User`].
#[derive(Debug, Default)]
pub struct Users {
    users: Vec<User>,
}

pub const MIN_PASSWORD_CHARS: usize = 10;

/// A hash that verifies nothing, checked against when the name is unknown, so that a wrong
/// name takes as long to refuse as a wrong password.
fn decoy_hash() -> String {
    Argon2::default()
        .hash_password(b"decoy", &SaltString::generate(&mut OsRng))
        .map(|h| h.to_string())
        .unwrap_or_default()
}

impl Users {
    pub fn load(path: &Path) -> Result<Users> {
        let text = crate::integrity::input::read_text(path, "users file")?;
        let users: Vec<User> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a users file (a JSON list of users)", path.display()))?;
        for u in &users {
            PasswordHash::new(&u.hash)
                .map_err(|e| anyhow::anyhow!("{}: user {:?}: bad password hash: {e}", path.display(), u.name))?;
        }
        Ok(Users { users })
    }

    /// Adds or replaces `name` in the users file at `path` (created if missing).
    pub fn add(path: &Path, name: &str, role: Role, password: &str) -> Result<()> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        ensure!(valid, "user name {name:?}: use 1-64 letters, digits, '.', '_' or '-'");
        ensure!(
            password.chars().count() >= MIN_PASSWORD_CHARS,
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        );
        let mut users = if path.exists() { Users::load(path)?.users } else { Vec::new() };
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?
            .to_string();
        users.retain(|u| u.name != name);
        users.push(User { name: name.to_string(), role, hash });
        write_atomic(path, (serde_json::to_string_pretty(&users)? + "\n").as_bytes())
    }

    /// The user if `password` is theirs.
    pub fn check(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.users.iter().find(|u| u.name == name);
        let hash = user.map(|u| u.hash.clone()).unwrap_or_else(decoy_hash);
        let ok =
            PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
        user.filter(|_| ok)
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    started: Instant,
    seen: Instant,
}

/// Logged-in sessions by their cookie token.
pub struct Sessions {
    by_token: HashMap<String, Session>,
    pub idle: Duration,
    pub absolute: Duration,
}

/// 32 random bytes, hex: a session token or CSRF token.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    pub fn new(idle: Duration, absolute: Duration) -> Result<Sessions> {
        if idle.is_zero() || absolute < idle {
            bail!("sessions need an idle limit above 0 and an absolute limit no shorter than it");
        }
        Ok(Sessions { by_token: HashMap::new(), idle, absolute })
    }

    /// A new session for `user`; -> its token.
    pub fn start(&mut self, user: &User) -> String {
        let now = Instant::now();
        self.by_token.retain(|_, s| !expired(s, now, self.idle, self.absolute));
        let token = random_token();
        let session =
            Session { user: user.name.clone(), role: user.role, csrf: random_token(), started: now, seen: now };
        self.by_token.insert(token.clone(), session);
        token
    }

    /// The live session of `token` (its idle clock restarted), or None.
    pub fn get(&mut self, token: &str) -> Option<Session> {
        let now = Instant::now();
        let (idle, absolute) = (self.idle, self.absolute);
        match self.by_token.get_mut(token) {
            Some(s) if !expired(s, now, idle, absolute) => {
                s.seen = now;
                Some(s.clone())
            }
            Some(_) => {
                self.by_token.remove(token);
                None
            }
            None => None,
        }
    }

    pub fn end(&mut self, token: &str) {
        self.by_token.remove(token);
    }
}

fn expired(s: &Session, now: Instant, idle: Duration, absolute: Duration) -> bool {
    now.duration_since(s.seen) > idle || now.duration_since(s.started) > absolute
}

/// Compares two tokens in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_checks_only_for_its_user_and_short_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("ks-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.json");
        let _ = std::fs::remove_file(&path);
        Users::add(&path, "ana", Role::Reviewer, "correct horse battery").unwrap();
        Users::add(&path, "ben", Role::Viewer, "another long secret").unwrap();
        assert!(Users::add(&path, "cy", Role::Viewer, "short").is_err());
        assert!(Users::add(&path, "../x", Role::Viewer, "long enough secret").is_err());
        let users = Users::load(&path).unwrap();
        assert_eq!(users.check("ana", "correct horse battery").map(|u| u.role), Some(Role::Reviewer));
        assert!(users.check("ana", "another long secret").is_none());
        assert!(users.check("nobody", "correct horse battery").is_none());
        assert!(!std::fs::read_to_string(&path).unwrap().contains("correct horse"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sessions_end_when_idle_or_ended() {
        let user = User { name: "ana".into(), role: Role::Viewer, hash: String::new() };
        let mut sessions = Sessions::new(Duration::from_millis(50), Duration::from_secs(60)).unwrap();
        let token = sessions.start(&user);
        assert_eq!(sessions.get(&token).map(|s| s.user), Some("ana".into()));
        assert!(sessions.get("not-a-token").is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(sessions.get(&token).is_none(), "an idle session expires");
        let token = sessions.start(&user);
        sessions.end(&token);
        assert!(sessions.get(&token).is_none());
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("abc", "ab"));
    }
}
