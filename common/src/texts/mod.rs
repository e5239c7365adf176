//! The texts a code is sent with, in the user's language: which locales there are, which one
//! a start gets (the one it asks for, else its number's country's, else English), and each
//! locale's SMS, WhatsApp and call texts, built in ([`builtin`]) or overridden by an operator
//! with files in `TEMPLATES_DIR` (`<locale>.<sms|whatsapp|call>.txt`, each with `{code}`),
//! read at start, so that wording changes need no rebuild.

use std::collections::HashMap;
use std::path::Path;

mod builtin;
pub mod segments;
pub mod twiml;

use builtin::{BUILTIN, Builtin};

/// What a text is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Whatsapp,
    Call,
}

impl Channel {
    pub const ALL: [Self; 3] = [Self::Sms, Self::Whatsapp, Self::Call];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Call => "call",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// An ordered list of channels as a start gives it: known names, no repeats, 1 to 3.
pub fn parse_channels<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::new();
    for name in names {
        let channel =
            Channel::parse(name.trim()).ok_or_else(|| format!("{name:?} is not a channel: sms, whatsapp or call"))?;
        if channels.contains(&channel) {
            return Err(format!("{name} is listed twice"));
        }
        channels.push(channel);
    }
    if channels.is_empty() || channels.len() > 3 {
        return Err("must list 1 to 3 channels".into());
    }
    Ok(channels)
}

/// The placeholder every text must hold.
pub const CODE: &str = "{code}";
/// The longest text an operator may set (an SMS body takes 1,600 characters with the code).
const LONGEST: usize = 1_500;

/// Every supported locale's tag, in the order of [`builtin::BUILTIN`].
pub fn supported() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|b| b.tag)
}

/// The supported locale for a BCP 47 tag, case-insensitively: the tag itself (`pt-br` →
/// `pt-BR`), else its language (`es-MX` → `es`, `en-GB` → `en`). Chinese in traditional
/// script (`zh-TW`, `zh-HK`, `zh-Hant…`) is not supported: only simplified is written.
pub fn parse_locale(tag: &str) -> Option<&'static str> {
    let tag = tag.trim();
    let valid = !tag.is_empty()
        && tag.len() <= 35
        && tag
            .split('-')
            .all(|p| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !valid {
        return None;
    }
    if let Some(b) = BUILTIN.iter().find(|b| b.tag.eq_ignore_ascii_case(tag)) {
        return Some(b.tag);
    }
    let lower = tag.to_ascii_lowercase();
    if lower.starts_with("zh-") && ["-tw", "-hk", "-mo", "-hant"].iter().any(|t| lower.contains(t)) {
        return None;
    }
    let language = lower.split('-').next()?;
    BUILTIN.iter().find(|b| b.tag == language).map(|b| b.tag)
}

/// The locale of a number's country (ISO 3166), English when none is set for it.
pub fn locale_for_country(country: Option<&str>) -> &'static str {
    country
        .and_then(|c| BUILTIN.iter().find(|b| b.countries.contains(&c)))
        .map_or("en", |b| b.tag)
}

/// One locale's texts, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocaleTexts {
    pub tag: &'static str,
    texts: HashMap<Channel, String>,
    pub voice_language: &'static str,
    pub voice: &'static str,
}

impl LocaleTexts {
    fn builtin(b: &Builtin) -> Self {
        let texts = [
            (Channel::Sms, b.message),
            (Channel::Whatsapp, b.message),
            (Channel::Call, b.call),
        ];
        Self {
            tag: b.tag,
            texts: texts.into_iter().map(|(c, t)| (c, t.to_owned())).collect(),
            voice_language: b.voice_language,
            voice: b.voice,
        }
    }

    /// The text for `channel`, with `{code}` in it.
    pub fn text(&self, channel: Channel) -> &str {
        &self.texts[&channel]
    }

    /// The text for `channel` with `code` in it.
    pub fn render(&self, channel: Channel, code: &str) -> String {
        self.text(channel).replace(CODE, code)
    }
}

/// Every locale's texts: the built-in ones with the operator's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    locales: Vec<LocaleTexts>,
    overridden: Vec<(&'static str, Channel)>,
}

impl Default for Texts {
    fn default() -> Self {
        Self {
            locales: BUILTIN.iter().map(LocaleTexts::builtin).collect(),
            overridden: Vec::new(),
        }
    }
}

impl Texts {
    /// The texts of a supported locale tag (as [`parse_locale`] returns it); English for
    /// anything else.
    pub fn get(&self, tag: &str) -> &LocaleTexts {
        self.locales.iter().find(|l| l.tag == tag).unwrap_or(&self.locales[0])
    }

    /// Whether an operator's file replaced the built-in text.
    pub fn is_overridden(&self, tag: &str, channel: Channel) -> bool {
        self.overridden.iter().any(|(t, c)| *t == tag && *c == channel)
    }

    /// Sets one text (a file of `TEMPLATES_DIR`, or `SMS_TEMPLATE` for English SMS).
    pub fn set(&mut self, tag: &str, channel: Channel, text: &str) -> Result<(), String> {
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.contains(CODE) {
            return Err(format!("the {tag} {} text must contain {CODE}", channel.as_str()));
        }
        if text.chars().count() > LONGEST {
            return Err(format!(
                "the {tag} {} text is over {LONGEST} characters",
                channel.as_str()
            ));
        }
        let index = self.locales.iter().position(|l| l.tag == tag).ok_or_else(|| {
            format!(
                "{tag} is not a supported locale ({})",
                supported().collect::<Vec<_>>().join(", ")
            )
        })?;
        let locale = &mut self.locales[index];
        locale.texts.insert(channel, text.to_owned());
        let tag = locale.tag;
        self.overridden.retain(|o| *o != (tag, channel));
        self.overridden.push((tag, channel));
        Ok(())
    }

    /// The built-in texts with every file of `dir` set over them. Each file is
    /// `<locale>.<channel>.txt` (`es.sms.txt`, `pt-BR.call.txt`); any other file, a locale
    /// or channel that does not exist, or a text without `{code}` is an error naming it.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let mut texts = Self::default();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut names: Vec<_> = entries
            .map(|e| {
                e.map(|e| e.path())
                    .map_err(|e| format!("cannot read {}: {e}", dir.display()))
            })
            .collect::<Result<_, _>>()?;
        names.sort();
        for path in names.into_iter().filter(|p| p.is_file()) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let parsed = name.strip_suffix(".txt").and_then(|n| n.rsplit_once('.'));
            let Some((tag, channel)) = parsed else {
                return Err(format!("{name}: files must be named <locale>.<sms|whatsapp|call>.txt"));
            };
            let channel = Channel::ALL
                .into_iter()
                .find(|c| c.as_str() == channel)
                .ok_or_else(|| format!("{name}: the channel must be sms, whatsapp or call"))?;
            let tag = BUILTIN.iter().find(|b| b.tag == tag).map(|b| b.tag).ok_or_else(|| {
                format!(
                    "{name}: {tag} is not a supported locale ({})",
                    supported().collect::<Vec<_>>().join(", ")
                )
            })?;
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
            texts.set(tag, channel, &text).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(texts)
    }
}

#[cfg(test)]
mod tests;
