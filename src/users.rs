//! Users, roles and login sessions of the review page, in the station's database.
//!
//! Passwords are hashed with Argon2id (PHC string, random salt). A login creates a session: a random 256-bit
//! token (only its SHA-256 is stored, so a copy of the database holds no usable session) and a random CSRF token
//! the page must send back with every state-changing request. Sessions expire after `web.session_hours`.
//! Operators review parts; technicians also change the threshold.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::Clock;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("user name: expected 1 to 64 letters, digits, '.', '_' or '-', got \"{0}\"")]
    BadName(String),
    #[error("role: expected \"operator\" or \"technician\", got \"{0}\"")]
    BadRole(String),
    #[error("password: expected at least 8 characters")]
    WeakPassword,
    #[error("user \"{0}\" already exists")]
    Exists(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("no random numbers from the OS: {0}")]
    Random(String),
    #[error("no user \"{0}\"")]
    NoUser(String),
    #[error(
        "user \"{0}\" has {1} reviews or audit entries: disable them instead, the audit trail keeps their name"
    )]
    HasHistory(String, i64),
}

impl UserError {
    /// A mistake in what was asked (a bad name, role or password, an unknown or existing user), not a failure.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            UserError::Sqlite(_) | UserError::Hash(_) | UserError::Random(_)
        )
    }
}

/// A user as `station user list` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub created_us: i64,
    pub disabled_us: Option<i64>,
    /// When their latest session began (their last login), if any is still stored.
    pub last_login_us: Option<i64>,
}

pub fn list_users(conn: &Connection) -> Result<Vec<UserRow>, UserError> {
    let mut stmt = conn.prepare(
        "SELECT u.name, u.role, u.created_us, u.disabled_us,
                (SELECT max(created_us) FROM sessions s WHERE s.user_id = u.id)
         FROM users u ORDER BY u.name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(UserRow {
            name: r.get(0)?,
            role: r.get(1)?,
            created_us: r.get(2)?,
            disabled_us: r.get(3)?,
            last_login_us: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn user_id(conn: &Connection, name: &str) -> Result<i64, UserError> {
    conn.query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| UserError::NoUser(name.to_string()))
}

/// Disables (or enables again) a user; disabling ends their sessions at once.
pub fn set_disabled(conn: &Connection, name: &str, disabled: bool) -> Result<(), UserError> {
    let id = user_id(conn, name)?;
    let at = disabled.then(|| Clock::new().now_us());
    conn.execute(
        "UPDATE users SET disabled_us = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    if disabled {
        conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    }
    Ok(())
}

/// Deletes a user who never reviewed or changed anything (else they must be disabled: the audit trail names them).
pub fn delete_user(conn: &Connection, name: &str) -> Result<(), UserError> {
    let id = user_id(conn, name)?;
    let history: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM reviews WHERE user_id = ?1) + (SELECT count(*) FROM audit WHERE user_id = ?1)",
        [id],
        |r| r.get(0),
    )?;
    if history > 0 {
        return Err(UserError::HasHistory(name.to_string(), history));
    }
    conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    conn.execute("DELETE FROM users WHERE id = ?1", [id])?;
    Ok(())
}

/// Sets a new password; the user's sessions end (a leaked password stops working everywhere).
pub fn set_password(conn: &Connection, name: &str, password: &str) -> Result<(), UserError> {
    let id = user_id(conn, name)?;
    let hash = hash_password(password)?;
    conn.execute(
        "UPDATE users SET password_hash = ?2 WHERE id = ?1",
        params![id, hash],
    )?;
    conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
    Ok(())
}

/// An Argon2id PHC string of a password of at least 8 characters.
fn hash_password(password: &str) -> Result<String, UserError> {
    if password.chars().count() < 8 {
        return Err(UserError::WeakPassword);
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| UserError::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| UserError::Hash(e.to_string()))?
        .to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Technician,
}

impl Role {
    pub fn parse(text: &str) -> Result<Role, UserError> {
        match text {
            "operator" => Ok(Role::Operator),
            "technician" => Ok(Role::Technician),
            other => Err(UserError::BadRole(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Technician => "technician",
        }
    }
}

/// A logged-in user, as a request sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionUser {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    /// Must come back in `X-CSRF-Token` on every state-changing request.
    pub csrf_token: String,
}

/// A new session: the token goes into the cookie, never into the database.
pub struct NewSession {
    pub token: String,
    pub user: SessionUser,
}

fn random_hex(bytes: usize) -> Result<String, UserError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| UserError::Random(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn token_hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// Adds a user; the password is hashed with Argon2id.
pub fn add_user(
    conn: &Connection,
    name: &str,
    role: Role,
    password: &str,
) -> Result<i64, UserError> {
    let name_ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return Err(UserError::BadName(name.to_string()));
    }
    let hash = hash_password(password)?;
    let inserted = conn.execute(
        "INSERT INTO users (name, role, password_hash, created_us) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(name) DO NOTHING",
        params![name, role.as_str(), hash, Clock::new().now_us()],
    )?;
    if inserted == 0 {
        return Err(UserError::Exists(name.to_string()));
    }
    Ok(conn.last_insert_rowid())
}

/// Checks a name and password; on success opens a session of `hours`. `None`: wrong name or password (the
/// caller must not say which).
pub fn login(
    conn: &Connection,
    name: &str,
    password: &str,
    hours: u64,
) -> Result<Option<NewSession>, UserError> {
    let row: Option<(i64, String, String)> = conn
        .query_row(
            "SELECT id, role, password_hash FROM users WHERE name = ?1 AND disabled_us IS NULL",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((user_id, role, stored)) = row else {
        // Spend the same time as a real check, so timing does not tell which names exist.
        let _ = Argon2::default().hash_password(
            password.as_bytes(),
            &SaltString::encode_b64(&[0; 16]).map_err(|e| UserError::Hash(e.to_string()))?,
        );
        return Ok(None);
    };
    let parsed = PasswordHash::new(&stored).map_err(|e| UserError::Hash(e.to_string()))?;
    if Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Ok(None);
    }
    let token = random_hex(32)?;
    let csrf_token = random_hex(16)?;
    let now = Clock::new().now_us();
    let expires = now + (hours as i64) * 3_600_000_000;
    conn.execute("DELETE FROM sessions WHERE expires_us < ?1", [now])?;
    conn.execute(
        "INSERT INTO sessions (token_sha256, user_id, csrf_token, created_us, expires_us) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash(&token), user_id, csrf_token, now, expires],
    )?;
    Ok(Some(NewSession {
        token,
        user: SessionUser {
            user_id,
            name: name.to_string(),
            role: Role::parse(&role)?,
            csrf_token,
        },
    }))
}

/// The user of a live session token, if any.
pub fn session(conn: &Connection, token: &str) -> Result<Option<SessionUser>, UserError> {
    let row: Option<(i64, String, String, String)> = conn
        .query_row(
            "SELECT u.id, u.name, u.role, s.csrf_token FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_sha256 = ?1 AND s.expires_us > ?2 AND u.disabled_us IS NULL",
            params![token_hash(token), Clock::new().now_us()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    row.map(|(user_id, name, role, csrf_token)| {
        Ok(SessionUser {
            user_id,
            name,
            role: Role::parse(&role)?,
            csrf_token,
        })
    })
    .transpose()
}

/// Ends a session.
pub fn logout(conn: &Connection, token: &str) -> Result<(), UserError> {
    conn.execute(
        "DELETE FROM sessions WHERE token_sha256 = ?1",
        [token_hash(token)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open_database(&dir.path().join("s.sqlite")).unwrap();
        (dir, conn)
    }

    #[test]
    fn password_is_hashed_and_checked() {
        let (_dir, conn) = db();
        add_user(&conn, "ana", Role::Operator, "correct horse").unwrap();
        let stored: String = conn
            .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        assert!(login(&conn, "ana", "wrong password", 1).unwrap().is_none());
        assert!(login(&conn, "bob", "correct horse", 1).unwrap().is_none());
        let s = login(&conn, "ana", "correct horse", 1).unwrap().unwrap();
        let user = session(&conn, &s.token).unwrap().unwrap();
        assert_eq!((user.name.as_str(), user.role), ("ana", Role::Operator));
        assert_eq!(user.csrf_token, s.user.csrf_token);
        logout(&conn, &s.token).unwrap();
        assert!(session(&conn, &s.token).unwrap().is_none());
    }

    #[test]
    fn bad_users_are_refused_with_the_reason() {
        let (_dir, conn) = db();
        let err = |r: Result<i64, UserError>| r.unwrap_err().to_string();
        assert!(err(add_user(&conn, "a b", Role::Operator, "longenough")).contains("user name"));
        assert!(err(add_user(&conn, "ana", Role::Operator, "short")).contains("at least 8"));
        assert!(
            Role::parse("admin")
                .unwrap_err()
                .to_string()
                .contains("\"admin\"")
        );
        add_user(&conn, "ana", Role::Technician, "longenough").unwrap();
        assert!(
            err(add_user(&conn, "ana", Role::Operator, "longenough")).contains("already exists")
        );
    }

    #[test]
    fn expired_sessions_are_refused() {
        let (_dir, conn) = db();
        add_user(&conn, "ana", Role::Operator, "longenough").unwrap();
        let s = login(&conn, "ana", "longenough", 1).unwrap().unwrap();
        conn.execute("UPDATE sessions SET expires_us = 0", [])
            .unwrap();
        assert!(session(&conn, &s.token).unwrap().is_none());
    }
}
