//! `templates/`: the catalogue of messages the merchant sends first, one
//! `<name>.<language>.toml` each, and the check that every template the deployment names
//! (a channel's re-engagement template) is in it.

use std::path::Path;

use super::{ChannelConfig, Problem, Problems, TomlFile, list_files};
use crate::channels::templates::{Catalogue, TemplateFile, TemplateSpec};
use crate::domain::{ChannelId, suggest};

/// Reads every template file of `dir` (none when it does not exist); each bad one is a
/// problem with its file, line and key.
pub fn load(dir: &Path, problems: &mut Problems) -> Catalogue {
    let mut catalogue = Catalogue::default();
    if !dir.is_dir() {
        return catalogue;
    }
    for path in list_files(dir, "toml") {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !stem.contains('.') {
            problems.push(Problem::new(
                &path,
                format!("a template file is named <name>.<language>.toml (`{stem}.fr.toml`, say)"),
            ));
            continue;
        }
        let file = match TomlFile::read(&path) {
            Ok(file) => file,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let (Some(parsed), found) = file.deserialize::<TemplateFile>(file.table.clone()) else {
            let (_, found) = file.deserialize::<TemplateFile>(file.table.clone());
            for p in found {
                problems.push(p);
            }
            continue;
        };
        for p in found {
            problems.push(p);
        }
        match TemplateSpec::from_file(&stem, parsed) {
            Ok(spec) => catalogue.insert(spec),
            Err(found) => {
                for (key, why) in found {
                    let line = file.line_of_key(&key);
                    problems.push(Problem::new(&path, why).at_key(key).at_line(line));
                }
            }
        }
    }
    catalogue
}

/// Every template a channel file names must be in the catalogue, once there is one (a
/// deployment that sends no notifications needs none).
pub fn check_uses(
    catalogue: &Catalogue,
    channels_dir: &Path,
    channels: &[(ChannelId, ChannelConfig)],
    problems: &mut Problems,
) {
    if catalogue.is_empty() {
        return;
    }
    for (id, channel) in channels {
        let path = channels_dir.join(format!("{id}.toml"));
        let missing = match channel {
            ChannelConfig::Whatsapp(c) => c.reengagement_template.as_ref().and_then(|t| {
                catalogue.get(&t.name, &t.language).is_none().then(|| {
                    let known = catalogue.names();
                    format!(
                        "the template {}.{} is not in the catalogue (templates/{}.{}.toml){}",
                        t.name,
                        t.language,
                        t.name,
                        t.language,
                        suggest::did_you_mean(&t.name, known.iter().map(String::as_str))
                    )
                })
            }),
            ChannelConfig::TwilioWhatsapp(c) => c.reengagement_template.as_ref().and_then(|t| {
                catalogue.by_content_sid(&t.content_sid).is_none().then(|| {
                    format!(
                        "no template of the catalogue has twilio_content_sid = \"{}\"",
                        t.content_sid
                    )
                })
            }),
            _ => None,
        };
        if let Some(why) = missing {
            let line = TomlFile::read(&path).ok().and_then(|f| {
                f.line_of_key("reengagement_template.name")
                    .or(f.line_of_key("reengagement_template"))
            });
            problems.push(
                Problem::new(&path, why)
                    .at_key("reengagement_template")
                    .at_line(line),
            );
        }
    }
}
