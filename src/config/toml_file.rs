//! Reads one TOML file into a typed value: parse, replace `${VAR}` from the environment,
//! apply overrides, then deserialize with unknown keys refused, reporting file, line and key.

use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::domain::Problem;

/// Where `${VAR}` values come from; the process environment in production, a map in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A parsed file, kept with its text so later problems can point at a line.
pub struct TomlFile<'a> {
    pub path: &'a Path,
    pub text: String,
    pub table: Table,
}

impl<'a> TomlFile<'a> {
    pub fn read(path: &'a Path) -> Result<Self, Problem> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Problem::new(path, format!("cannot read the file: {e}")))?;
        Self::parse(path, text)
    }

    pub fn parse(path: &'a Path, text: String) -> Result<Self, Problem> {
        let table: Table = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|span| line_of_offset(&text, span.start));
            Problem::new(path, format!("not valid TOML: {}", e.message())).at_line(line)
        })?;
        Ok(Self { path, text, table })
    }

    /// Replaces every `${VAR}` (or `${VAR:-default}`) in string values; each missing variable
    /// is a problem naming the key.
    pub fn interpolate(&mut self, env: Env<'_>) -> Vec<Problem> {
        let mut found = Vec::new();
        let mut path = Vec::new();
        interpolate_table(&mut self.table, env, &mut path, &mut |key, message| {
            found.push((key.to_string(), message));
        });
        found
            .into_iter()
            .map(|(key, message)| {
                let line = self.line_of_key(&key);
                Problem::new(self.path, message).at_key(key).at_line(line)
            })
            .collect()
    }

    /// Applies `PREFIX<SECTION>__<KEY>=value` overrides (e.g. `CONCIERGE__SERVER__BIND`). The
    /// value is read as a TOML value when it parses as one (`8080`, `true`), else as a string.
    pub fn apply_overrides(&mut self, prefix: &str, vars: &[(String, String)]) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            let segments: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if segments.iter().any(String::is_empty) {
                problems.push(Problem::new(
                    self.path,
                    format!("the override {name} has an empty segment"),
                ));
                continue;
            }
            if !set_path(&mut self.table, &segments, parse_override_value(raw)) {
                problems.push(
                    Problem::new(
                        self.path,
                        format!("the override {name} goes through a value that is not a section"),
                    )
                    .at_key(segments.join(".")),
                );
            }
        }
        problems
    }

    /// Deserializes the (interpolated) table, refusing unknown keys and naming the key path.
    /// Every bad key is reported, not only the first: each one found is taken out and the
    /// rest read again, so the value returned (with defaults in place of the bad keys) lets
    /// the caller go on checking what depends on it.
    pub fn deserialize<T: DeserializeOwned>(&self, mut table: Table) -> (Option<T>, Vec<Problem>) {
        let mut problems: Vec<Problem> = Vec::new();
        // Bounded: each round removes one key, and a file has few.
        for _ in 0..64 {
            let result: Result<T, _> =
                serde_path_to_error::deserialize(Value::Table(table.clone()));
            let e = match result {
                Ok(value) => {
                    problems.sort_by_key(|p| p.line);
                    return (Some(value), problems);
                }
                Err(e) => e,
            };
            // The path names the offending key itself, unknown fields included.
            let key = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.message().to_string();
            if message.starts_with("unknown field") {
                message = format!("unknown key; {message}");
            }
            let line = self.line_of_key(&key);
            let hint = crate::domain::suggest::from_serde(&message);
            let problem = Problem::new(self.path, message)
                .at_line(line)
                .with_hint(hint);
            let removable = key != "." && !key.is_empty();
            problems.push(if removable {
                problem.at_key(key.clone())
            } else {
                problem
            });
            if !removable || !remove_path(&mut table, &key) {
                break;
            }
        }
        problems.sort_by_key(|p| p.line);
        (None, problems)
    }

    /// The line where a dotted key is written, found by its last segment under its section.
    pub fn line_of_key(&self, key: &str) -> Option<usize> {
        let segments: Vec<&str> = key.split('.').filter(|s| !s.is_empty()).collect();
        let (last, parents) = segments.split_last()?;
        let section = parents.join(".");
        let mut current = String::new();
        let mut fallback = None;
        // `[[tools]]` tables are `tools[0]`, `tools[1]`… as the keys name them.
        let mut arrays: std::collections::HashMap<String, usize> = Default::default();
        for (index, raw) in self.text.lines().enumerate() {
            let line = raw.trim();
            if let Some(header) = line.strip_prefix('[') {
                current = header
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                // A (misspelt) section is the key itself: its header's line.
                if current == key && !header.starts_with('[') {
                    return Some(index + 1);
                }
                if header.starts_with('[') {
                    let n = arrays.entry(current.clone()).or_insert(0);
                    current = format!("{current}[{n}]");
                    *n += 1;
                }
                continue;
            }
            let Some((lhs, _)) = line.split_once('=') else {
                continue;
            };
            let lhs = lhs.trim().trim_matches('"');
            let whole = if current.is_empty() {
                lhs.to_string()
            } else {
                format!("{current}.{lhs}")
            };
            if whole == key || (current == section && lhs == *last) {
                return Some(index + 1);
            }
            if lhs == *last || lhs.ends_with(&format!(".{last}")) {
                fallback.get_or_insert(index + 1);
            }
        }
        fallback
    }
}

/// Removes the value at a dotted path; false when there is none.
fn remove_path(table: &mut Table, key: &str) -> bool {
    let segments: Vec<&str> = key.split('.').collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut current = table;
    for segment in parents {
        match current.get_mut(*segment) {
            Some(Value::Table(inner)) => current = inner,
            _ => return false,
        }
    }
    current.remove(*last).is_some()
}

/// Sets a value at a path of sections, creating the missing ones; false when the path goes
/// through a value that is not a table.
fn set_path(table: &mut Table, segments: &[String], value: Value) -> bool {
    match segments {
        [] => false,
        [last] => {
            table.insert(last.clone(), value);
            true
        }
        [first, rest @ ..] => match table
            .entry(first.clone())
            .or_insert_with(|| Value::Table(Table::new()))
        {
            Value::Table(inner) => set_path(inner, rest, value),
            _ => false,
        },
    }
}

fn parse_override_value(raw: &str) -> Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<Table>(&doc) {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn interpolate_table(
    table: &mut Table,
    env: Env<'_>,
    path: &mut Vec<String>,
    report: &mut dyn FnMut(&str, String),
) {
    for (key, value) in table.iter_mut() {
        path.push(key.clone());
        interpolate_value(value, env, path, report);
        path.pop();
    }
}

fn interpolate_value(
    value: &mut Value,
    env: Env<'_>,
    path: &mut Vec<String>,
    report: &mut dyn FnMut(&str, String),
) {
    match value {
        Value::String(s) => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(message) => report(&path.join("."), message),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                interpolate_value(item, env, path, report);
                path.pop();
            }
        }
        Value::Table(inner) => interpolate_table(inner, env, path, report),
        _ => {}
    }
}

/// Expands `${NAME}` and `${NAME:-default}`; `$$` is a literal `$`.
pub fn expand(input: &str, env: Env<'_>) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                return Err("`${` without a closing `}`".to_string());
            };
            let inner = &body[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("`${{{inner}}}` is not a valid variable reference"));
            }
            match (env(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!("the environment variable {name} is not set"));
                }
            }
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        assert_eq!(expand("a ${TOKEN} b", &env).unwrap(), "a s3cret b");
        assert_eq!(expand("${NOPE:-x}", &env).unwrap(), "x");
        assert_eq!(expand("$$5 and $", &env).unwrap(), "$5 and $");
        assert!(expand("${NOPE}", &env).unwrap_err().contains("NOPE"));
        assert!(expand("${bad-name}", &env).is_err());
        assert!(expand("${OPEN", &env).is_err());
    }

    #[test]
    fn a_missing_variable_names_the_key_and_line() {
        let path = Path::new("channels/x.toml");
        let mut file = TomlFile::parse(
            path,
            "kind = \"x\"\n\n[auth]\ntoken = \"${MISSING}\"\n".into(),
        )
        .unwrap();
        let problems = file.interpolate(&env);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key.as_deref(), Some("auth.token"));
        assert_eq!(problems[0].line, Some(4));
        assert!(problems[0].to_string().contains("MISSING"));
    }

    #[test]
    fn overrides_replace_and_create_values() {
        let path = Path::new("c.toml");
        let mut file = TomlFile::parse(path, "[server]\nbind = \"a\"\n".into()).unwrap();
        let vars = vec![
            (
                "CONCIERGE__SERVER__BIND".to_string(),
                "0.0.0.0:1".to_string(),
            ),
            ("CONCIERGE__FAQ__THRESHOLD".to_string(), "0.7".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        assert!(file.apply_overrides("CONCIERGE__", &vars).is_empty());
        assert_eq!(file.table["server"]["bind"].as_str(), Some("0.0.0.0:1"));
        assert_eq!(file.table["faq"]["threshold"].as_float(), Some(0.7));
    }

    #[test]
    fn a_key_of_an_array_of_tables_is_found_in_its_own_table() {
        let text = "[[tools]]\nname = \"a\"\nurl = \"x\"\n\n[[tools]]\nname = \"b\"\nurl = \"y\"\n";
        let file = TomlFile::parse(Path::new("c.toml"), text.into()).unwrap();
        assert_eq!(file.line_of_key("tools[0].url"), Some(3));
        assert_eq!(file.line_of_key("tools[1].url"), Some(7));
    }

    #[test]
    fn invalid_toml_reports_a_line() {
        let err = TomlFile::parse(Path::new("c.toml"), "a = 1\nb = \n".into())
            .err()
            .unwrap();
        assert_eq!(err.line, Some(2));
    }

    proptest::proptest! {
        #[test]
        fn random_files_never_panic(text in "(\\[[a-z]{1,6}\\]\n|[a-z_]{1,8} = (\"[^\"\\\\]{0,12}\"|[0-9]{1,4}|true)\n|.{0,20}\n){0,12}") {
            let path = Path::new("c.toml");
            if let Ok(mut file) = TomlFile::parse(path, text) {
                let _ = file.interpolate(&env);
                let _ = file.apply_overrides("CONCIERGE__", &[("CONCIERGE__A__B".into(), "1".into())]);
                let _ = file.deserialize::<crate::config::FileConfig>(file.table.clone());
            }
        }
    }
}
