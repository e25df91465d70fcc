//! The template catalogue: `templates/<name>.<language>.toml`, the messages a merchant may
//! send first (approved by the platform where it approves them), with their category, body
//! and placeholders; and filling one with a caller's parameters, within WhatsApp's limits.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The longest body WhatsApp sends, placeholders filled.
pub const MAX_BODY_CHARS: usize = 1024;
/// The longest one parameter may be (a filled body is bounded anyway).
pub const MAX_PARAM_CHARS: usize = 1024;

/// What a template is for; WhatsApp prices and allows each differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// About something the customer bought or asked for.
    Utility,
    /// Offers and news: only to customers who said yes to marketing.
    Marketing,
    /// One-time codes.
    Authentication,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Utility => "utility",
            Category::Marketing => "marketing",
            Category::Authentication => "authentication",
        }
    }

    /// Whether the customer must have said yes to marketing.
    pub fn is_marketing(self) -> bool {
        self == Category::Marketing
    }
}

/// A button of a template, as the platform shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonSpec {
    /// `quick_reply`, `url` or `phone_number`.
    #[serde(rename = "type")]
    pub kind: ButtonKind,
    pub text: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonKind {
    QuickReply,
    Url,
    PhoneNumber,
}

/// A template file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    /// The name the platform knows it by; the file's name when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The language code (`fr`, `en_US`); the file's second part when absent.
    #[serde(default)]
    pub language: Option<String>,
    pub category: Category,
    #[serde(default)]
    pub header: Option<String>,
    /// The text, with `{{1}}`, `{{2}}`… or named `{{order}}` placeholders (one kind only).
    pub body: String,
    #[serde(default)]
    pub footer: Option<String>,
    #[serde(default)]
    pub buttons: Vec<ButtonSpec>,
    /// The same message as a Twilio Content API template (`HX…`), for Twilio channels.
    #[serde(default)]
    pub twilio_content_sid: Option<String>,
}

/// How a template's placeholders are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholders {
    /// `{{1}}` to `{{n}}`.
    Numbered(usize),
    /// `{{order}}`, in the order they first appear.
    Named(Vec<String>),
}

impl Placeholders {
    pub fn names(&self) -> Vec<String> {
        match self {
            Placeholders::Numbered(n) => (1..=*n).map(|i| i.to_string()).collect(),
            Placeholders::Named(names) => names.clone(),
        }
    }
}

/// A checked template of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub name: String,
    pub language: String,
    pub category: Category,
    pub header: Option<String>,
    pub body: String,
    pub footer: Option<String>,
    pub buttons: Vec<ButtonSpec>,
    pub twilio_content_sid: Option<String>,
    pub placeholders: Placeholders,
}

/// A template whose placeholders are filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    /// The values in placeholder order.
    pub values: Vec<String>,
    /// Their names for a template of named placeholders; empty for numbered ones.
    pub names: Vec<String>,
    /// The body as the customer reads it.
    pub text: String,
}

/// The placeholders of a text, in order of first appearance: `Err` when it mixes the two
/// kinds, numbers are not 1 to n, or a name is not lower case letters, digits and `_`.
pub fn placeholders(text: &str) -> Result<Placeholders, String> {
    let mut numbers = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("a `{{` is never closed by `}}`".to_string());
        };
        let inside = after[..end].trim();
        if let Ok(n) = inside.parse::<usize>() {
            numbers.push(n);
        } else if !inside.is_empty()
            && inside
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && inside.as_bytes()[0].is_ascii_lowercase()
        {
            if !names.iter().any(|n| n == inside) {
                names.push(inside.to_string());
            }
        } else {
            return Err(format!(
                "`{{{{{inside}}}}}` is not a placeholder: use {{{{1}}}}, {{{{2}}}}… or lower-case names like {{{{order}}}}"
            ));
        }
        rest = &after[end + 2..];
    }
    match (numbers.is_empty(), names.is_empty()) {
        (true, true) => Ok(Placeholders::Numbered(0)),
        (false, false) => Err("the body mixes numbered and named placeholders".to_string()),
        (false, true) => {
            numbers.sort_unstable();
            numbers.dedup();
            let n = numbers.len();
            if numbers.iter().copied().eq(1..=n) {
                Ok(Placeholders::Numbered(n))
            } else {
                Err(format!(
                    "numbered placeholders must run from {{{{1}}}} to {{{{{n}}}}} without gaps"
                ))
            }
        }
        (true, false) => Ok(Placeholders::Named(names)),
    }
}

impl TemplateSpec {
    /// Checks a file named `<name>.<language>.toml` (`stem` is `<name>.<language>`); each
    /// problem comes with its key.
    pub fn from_file(stem: &str, file: TemplateFile) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let (stem_name, stem_language) = stem.split_once('.').unwrap_or((stem, ""));
        let name = file.name.unwrap_or_else(|| stem_name.to_string());
        let language = file.language.unwrap_or_else(|| stem_language.to_string());
        if name != stem_name || language != stem_language {
            problems.push((
                "name".to_string(),
                format!("the file must be named `{name}.{language}.toml` (its name and language)"),
            ));
        }
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            problems.push((
                "name".to_string(),
                "a template name is lower-case letters, digits and `_`".to_string(),
            ));
        }
        if language.is_empty() || language.len() > 16 {
            problems.push((
                "language".to_string(),
                "the language code is missing (`fr`, `en_US`)".to_string(),
            ));
        }
        if file.body.trim().is_empty() {
            problems.push(("body".to_string(), "the body is empty".to_string()));
        }
        if file.body.chars().count() > MAX_BODY_CHARS {
            problems.push((
                "body".to_string(),
                format!("the body is longer than WhatsApp's {MAX_BODY_CHARS} characters"),
            ));
        }
        let placeholders = match placeholders(&file.body) {
            Ok(p) => p,
            Err(e) => {
                problems.push(("body".to_string(), e));
                Placeholders::Numbered(0)
            }
        };
        for (i, button) in file.buttons.iter().enumerate() {
            let needs = match button.kind {
                ButtonKind::Url => button.url.is_none().then_some("url"),
                ButtonKind::PhoneNumber => button.phone_number.is_none().then_some("phone_number"),
                ButtonKind::QuickReply => None,
            };
            if let Some(key) = needs {
                problems.push((
                    format!("buttons[{i}].{key}"),
                    format!("this button needs its `{key}`"),
                ));
            }
        }
        if let Some(sid) = &file.twilio_content_sid
            && !(sid.starts_with("HX") && sid.len() == 34)
        {
            problems.push((
                "twilio_content_sid".to_string(),
                "a Content SID is `HX` and 32 hexadecimal characters".to_string(),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(TemplateSpec {
            name,
            language,
            category: file.category,
            header: file.header,
            body: file.body,
            footer: file.footer,
            buttons: file.buttons,
            twilio_content_sid: file.twilio_content_sid,
            placeholders,
        })
    }

    /// `name.language`, as the catalogue lists it.
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.language)
    }

    /// Fills the placeholders with `params` (by name, or by number as `"1"`, `"2"`…): every
    /// placeholder needs one, none may be unknown, and each is one line of at most
    /// [`MAX_PARAM_CHARS`] (WhatsApp refuses new lines, tabs and runs of spaces in one).
    pub fn fill(&self, params: &BTreeMap<String, String>) -> Result<Filled, String> {
        let wanted = self.placeholders.names();
        let unknown: Vec<&str> = params
            .keys()
            .filter(|k| !wanted.contains(k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "template {} has no parameter {} (it has: {})",
                self.key(),
                unknown.join(", "),
                if wanted.is_empty() {
                    "none".to_string()
                } else {
                    wanted.join(", ")
                }
            ));
        }
        let mut values = Vec::with_capacity(wanted.len());
        for name in &wanted {
            let Some(value) = params.get(name) else {
                return Err(format!(
                    "template {} needs the parameter `{name}`",
                    self.key()
                ));
            };
            let value = value.trim();
            if value.is_empty() {
                return Err(format!("the parameter `{name}` is empty"));
            }
            if value.chars().count() > MAX_PARAM_CHARS {
                return Err(format!(
                    "the parameter `{name}` is longer than {MAX_PARAM_CHARS} characters"
                ));
            }
            if value.contains(['\n', '\r', '\t']) || value.contains("     ") {
                return Err(format!(
                    "the parameter `{name}` holds a new line, a tab or more than four spaces in a row, which WhatsApp refuses"
                ));
            }
            values.push(value.to_string());
        }
        let mut text = String::with_capacity(self.body.len());
        let mut rest = self.body.as_str();
        while let Some(start) = rest.find("{{") {
            text.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find("}}").unwrap_or(after.len());
            let inside = after[..end].trim();
            let value = wanted
                .iter()
                .position(|w| w == inside)
                .and_then(|i| values.get(i));
            text.push_str(value.map_or(inside, String::as_str));
            rest = after.get(end + 2..).unwrap_or("");
        }
        text.push_str(rest);
        if text.chars().count() > MAX_BODY_CHARS {
            return Err(format!(
                "filled in, the body of {} is longer than WhatsApp's {MAX_BODY_CHARS} characters",
                self.key()
            ));
        }
        let names = match &self.placeholders {
            Placeholders::Named(names) => names.clone(),
            Placeholders::Numbered(_) => Vec::new(),
        };
        Ok(Filled {
            values,
            names,
            text,
        })
    }
}

/// Every template of a deployment, by name and language.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    templates: BTreeMap<(String, String), TemplateSpec>,
}

impl Catalogue {
    pub fn insert(&mut self, spec: TemplateSpec) {
        self.templates
            .insert((spec.name.clone(), spec.language.clone()), spec);
    }

    pub fn get(&self, name: &str, language: &str) -> Option<&TemplateSpec> {
        self.templates
            .get(&(name.to_string(), language.to_string()))
    }

    /// The template a Twilio Content SID stands for.
    pub fn by_content_sid(&self, sid: &str) -> Option<&TemplateSpec> {
        self.templates
            .values()
            .find(|t| t.twilio_content_sid.as_deref() == Some(sid))
    }

    /// The languages a template name has.
    pub fn languages(&self, name: &str) -> Vec<&str> {
        self.templates
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l.as_str())
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.templates.keys().map(|(n, _)| n.clone()).collect();
        names.dedup();
        names
    }

    pub fn iter(&self) -> impl Iterator<Item = &TemplateSpec> {
        self.templates.values()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(body: &str) -> TemplateSpec {
        let file: TemplateFile =
            toml::from_str(&format!("category = \"utility\"\nbody = {body:?}")).unwrap();
        TemplateSpec::from_file("order_shipped.fr", file).unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn named_placeholders_are_filled_by_name_in_order() {
        let t = spec("Bonjour, votre commande {{order}} part avec {{carrier}}. ({{order}})");
        assert_eq!(
            t.placeholders,
            Placeholders::Named(vec!["order".into(), "carrier".into()])
        );
        let filled = t
            .fill(&params(&[("carrier", "Colissimo"), ("order", "ML-10421")]))
            .unwrap();
        assert_eq!(filled.values, ["ML-10421", "Colissimo"]);
        assert_eq!(filled.names, ["order", "carrier"]);
        assert_eq!(
            filled.text,
            "Bonjour, votre commande ML-10421 part avec Colissimo. (ML-10421)"
        );
    }

    #[test]
    fn numbered_placeholders_need_every_number_and_no_other() {
        let t = spec("Order {{1}} ships with {{2}}");
        assert_eq!(t.placeholders, Placeholders::Numbered(2));
        let filled = t.fill(&params(&[("1", "A"), ("2", "B")])).unwrap();
        assert_eq!(filled.text, "Order A ships with B");
        assert!(filled.names.is_empty());
        assert!(t.fill(&params(&[("1", "A")])).unwrap_err().contains("`2`"));
        assert!(
            t.fill(&params(&[("1", "A"), ("2", "B"), ("3", "C")]))
                .unwrap_err()
                .contains("no parameter 3")
        );
        assert!(
            t.fill(&params(&[("1", "A\nB"), ("2", "B")]))
                .unwrap_err()
                .contains("new line")
        );
        let long = "x".repeat(1020);
        assert!(
            t.fill(&params(&[("1", &long), ("2", "B")]))
                .unwrap_err()
                .contains("1024")
        );
    }

    #[test]
    fn bad_bodies_and_names_are_refused_with_their_keys() {
        assert!(placeholders("{{1}} and {{3}}").is_err());
        assert!(placeholders("{{1}} and {{name}}").is_err());
        assert!(placeholders("{{ Order }}").is_err());
        assert!(placeholders("open {{1").is_err());
        let file: TemplateFile =
            toml::from_str("category = \"marketing\"\nbody = \"x\"\nname = \"other\"").unwrap();
        let problems = TemplateSpec::from_file("sale.fr", file).unwrap_err();
        assert_eq!(problems[0].0, "name");
        let file: TemplateFile = toml::from_str(
            "category = \"utility\"\nbody = \"x\"\ntwilio_content_sid = \"nope\"\n[[buttons]]\ntype = \"url\"\ntext = \"Track\"",
        )
        .unwrap();
        let keys: Vec<String> = TemplateSpec::from_file("a.fr", file)
            .unwrap_err()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["buttons[0].url", "twilio_content_sid"]);
    }
}
