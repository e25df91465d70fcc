//! A configuration problem, located by file, line and key, so the merchant can fix it
//! without guessing.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// The dotted key path, e.g. `server.bind`.
    pub key: Option<String>,
    pub message: String,
    /// The known name closest to a misspelt one: `did you mean …?`.
    pub hint: Option<Box<str>>,
    /// The `CONCIERGE__…` environment variable the problem is in, when an override is: it
    /// is named instead of a line of the file.
    pub env: Option<Box<str>>,
}

impl Problem {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: message.into(),
            hint: None,
            env: None,
        }
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint.map(String::into_boxed_str);
        self
    }

    pub fn at_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn at_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.env {
            Some(var) => {
                write!(
                    f,
                    "environment variable {var} (over {}",
                    self.file.display()
                )?;
                if let Some(key) = &self.key {
                    write!(f, " key `{key}`")?;
                }
                write!(f, ")")?;
            }
            None => {
                write!(f, "{}", self.file.display())?;
                if let Some(line) = self.line {
                    write!(f, ":{line}")?;
                }
                if let Some(key) = &self.key {
                    write!(f, ": key `{key}`")?;
                }
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; did you mean `{hint}`?")?;
        }
        Ok(())
    }
}

/// Every problem found while loading. Loading never stops at the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, problem: Problem) {
        self.0.push(problem);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Puts them in reading order: environment variables first (sorted by name), then the
    /// main file, then every other file by path (so channels/ before prompts/, each folder's
    /// files by name), each by line (those without a line first); problems at the same place
    /// keep the order they were found in.
    pub fn sort(&mut self, main: &Path) {
        self.0.sort_by(|a, b| {
            let place = |p: &Problem| (p.env.is_none(), p.env.clone(), p.file != main);
            place(a)
                .cmp(&place(b))
                .then_with(|| a.file.cmp(&b.file))
                .then_with(|| a.line.cmp(&b.line))
        });
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
