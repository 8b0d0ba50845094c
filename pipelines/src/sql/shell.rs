//! The interactive shell (`terrastream sql` without a query): statements end with `;` and may
//! span lines; `\d` lists the tables and their columns, `\q` (or Ctrl-D) quits. Lines are kept
//! in `$XDG_CACHE_HOME/terrastream/sql_history` (`~/.cache/...` without it) across sessions.

use std::path::PathBuf;

use datafusion::prelude::SessionContext;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::error::{Error, Result};
use super::format::Format;

/// The history file: `$XDG_CACHE_HOME/terrastream/sql_history`, else `$HOME/.cache/...`.
pub fn history_path() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(cache.join("terrastream").join("sql_history"))
}

/// Reads statements until `\q` or end of input, running each and printing its result (or
/// its error) in `format`.
pub async fn run(ctx: &SessionContext, format: Format) -> Result<()> {
    let mut editor = DefaultEditor::new().map_err(|e| Error::Shell(e.to_string()))?;
    let history = history_path();
    if let Some(path) = &history {
        // A first session has no history yet.
        let _ = editor.load_history(path);
    }
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "terrastream> "
        } else {
            "         ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Shell(e.to_string())),
        };
        let trimmed = line.trim();
        if statement.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            match trimmed {
                "\\q" => break,
                "\\d" => println!("{}", super::tables::describe(ctx).await),
                other => eprintln!("unknown command {other} (\\d: tables, \\q: quit)"),
            }
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        if !statement.is_empty() {
            statement.push('\n');
        }
        statement.push_str(&line);
        if !trimmed.ends_with(';') {
            continue;
        }
        let _ = editor.add_history_entry(statement.as_str());
        let sql = std::mem::take(&mut statement);
        match super::query(ctx, sql.trim_end_matches(|c: char| c == ';' || c.is_whitespace())).await {
            Ok((schema, batches)) => {
                if let Err(e) = super::format::write(format, &schema, &batches, std::io::stdout().lock(), "stdout") {
                    eprintln!("error: {e}");
                }
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        editor
            .save_history(path)
            .map_err(|e| Error::Shell(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
