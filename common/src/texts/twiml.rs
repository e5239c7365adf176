//! The TwiML of a verification call: the locale's call text said twice, the code in it
//! spoken digit by digit (`<say-as interpret-as="digits">`, which Polly voices read one
//! digit at a time), a pause between the two.

use super::{CODE, Channel, LocaleTexts};

/// The `Twiml` parameter of a call that says `code`.
pub fn say_code(texts: &LocaleTexts, code: &str) -> String {
    let text = texts.text(Channel::Call);
    let (before, after) = text.split_once(CODE).unwrap_or((text, ""));
    let say = format!(
        "<Say language=\"{}\" voice=\"{}\">{}<say-as interpret-as=\"digits\">{}</say-as>{}</Say>",
        texts.voice_language,
        texts.voice,
        escape(before),
        escape(code),
        escape(&after.replace(CODE, code)),
    );
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{say}<Pause length=\"1\"/>{say}</Response>")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}
