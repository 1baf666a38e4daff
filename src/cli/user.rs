//! `station user add NAME --role operator|technician`: adds a review-page user; the password comes from the
//! first line of stdin (`--password-stdin`) or an echo-less prompt.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};

use super::{ConfigArg, load_config};
use crate::users::{self, Role};

pub fn add(arg: &ConfigArg, name: &str, role: &str, password_stdin: bool) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let role = Role::parse(role)?;
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))?;
        if rpassword::prompt_password("again: ")? != first {
            bail!("the passwords differ");
        }
        first
    } else {
        bail!("no terminal to ask for the password: pass --password-stdin and pipe it in");
    };
    let db = &config.record.database;
    let conn = crate::store::open_database(db)?;
    users::add_user(&conn, name, role, &password)
        .with_context(|| format!("cannot add user {name} to {}", db.display()))?;
    println!("added {} {name} to {}", role.as_str(), db.display());
    Ok(())
}
