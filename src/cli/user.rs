//! `station user add|list|disable|enable|delete|passwd`: the review page's users. A password comes from the
//! first line of stdin (`--password-stdin`) or an echo-less prompt. Disabling a user or changing their password
//! ends their sessions at once; a user who reviewed anything can be disabled but not deleted (the audit trail
//! names them). Mistakes in the request (bad name, role, password, unknown user) exit with code 2.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};

use super::{ConfigArg, UserAction, load_config};
use crate::users::{self, Role};

pub(super) fn run(action: UserAction) -> anyhow::Result<()> {
    match action {
        UserAction::Add {
            config,
            name,
            role,
            password_stdin,
        } => add(&config, &name, &role, password_stdin),
        UserAction::List { config } => list(&config),
        UserAction::Disable { config, name } => change(&config, &name, "disabled", |c| {
            users::set_disabled(c, &name, true)
        }),
        UserAction::Enable { config, name } => change(&config, &name, "enabled", |c| {
            users::set_disabled(c, &name, false)
        }),
        UserAction::Delete { config, name } => {
            change(&config, &name, "deleted", |c| users::delete_user(c, &name))
        }
        UserAction::Passwd {
            config,
            name,
            password_stdin,
        } => {
            let password = password(&name, password_stdin)?;
            change(
                &config,
                &name,
                "given a new password (sessions ended)",
                |c| users::set_password(c, &name, &password),
            )
        }
    }
}

fn password(name: &str, from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))?;
        if rpassword::prompt_password("again: ")? != first {
            bail!("the passwords differ");
        }
        Ok(first)
    } else {
        bail!("no terminal to ask for the password: pass --password-stdin and pipe it in");
    }
}

fn add(arg: &ConfigArg, name: &str, role: &str, password_stdin: bool) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let role = Role::parse(role)?;
    let password = password(name, password_stdin)?;
    let db = &config.record.database;
    let conn = crate::store::open_database(db)?;
    users::add_user(&conn, name, role, &password)
        .with_context(|| format!("cannot add user {name} to {}", db.display()))?;
    println!("added {} {name} to {}", role.as_str(), db.display());
    Ok(())
}

fn list(arg: &ConfigArg) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let conn = crate::store::open_database(&config.record.database)?;
    // A wall-clock time in microseconds as `YYYY-MM-DD HH:MM:SS` (UTC), by SQLite's own calendar.
    let time = |us: Option<i64>| {
        us.and_then(|us| {
            conn.query_row("SELECT datetime(?1 / 1000000, 'unixepoch')", [us], |r| {
                r.get::<_, String>(0)
            })
            .ok()
        })
        .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<24} {:<11} {:<20} {:<20} last login",
        "name", "role", "created", "disabled"
    );
    for u in users::list_users(&conn)? {
        println!(
            "{:<24} {:<11} {:<20} {:<20} {}",
            u.name,
            u.role,
            time(Some(u.created_us)),
            time(u.disabled_us),
            time(u.last_login_us)
        );
    }
    Ok(())
}

fn change(
    arg: &ConfigArg,
    name: &str,
    done: &str,
    f: impl FnOnce(&rusqlite::Connection) -> Result<(), users::UserError>,
) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let db = &config.record.database;
    let conn = crate::store::open_database(db)?;
    f(&conn).with_context(|| format!("user {name} in {}", db.display()))?;
    println!("user {name} {done}");
    Ok(())
}
