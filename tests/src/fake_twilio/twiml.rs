//! Voice TwiML read as a phone would hear it: the `<Say>` verbs (with `language`, `voice`,
//! `loop`, and SSML inside: `<say-as interpret-as="digits">` is spoken digit by digit) and
//! the `<Pause>` verbs, also inside `<Gather>`; `<Hangup>`/`<Reject>` end it. Other verbs are
//! skipped. A small XML reader of its own: elements, attributes, text, the five named
//! entities and numeric ones, comments, CDATA, processing instructions.

use serde::Serialize;

/// One verb the callee hears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum Segment {
    Say {
        /// One rendition of the text (digits of `say-as` separated by spaces).
        text: String,
        language: String,
        voice: Option<String>,
        /// Times said; 0 means "until hang-up" (spoken once here).
        #[serde(rename = "loop")]
        loops: u32,
    },
    Pause {
        seconds: u32,
    },
}

/// Everything said, in order: each `<Say>` `loop` times, joined by spaces.
pub fn spoken_text(segments: &[Segment]) -> String {
    let mut parts = Vec::new();
    for segment in segments {
        if let Segment::Say { text, loops, .. } = segment {
            for _ in 0..(*loops).max(1) {
                parts.push(text.as_str());
            }
        }
    }
    parts.join(" ")
}

/// Reads a TwiML document into what is spoken; an error names what Twilio would reject.
pub fn parse(document: &str) -> Result<Vec<Segment>, String> {
    let mut reader = Reader { s: document, pos: 0 };
    reader.skip_misc()?;
    let root = reader.element(0)?;
    reader.skip_misc()?;
    if reader.pos != reader.s.len() {
        return Err("content after the root element".into());
    }
    let Node::Element { name, children, .. } = root else {
        unreachable!("element() returns elements")
    };
    if name != "Response" {
        return Err(format!("the root element is <{name}>, not <Response>"));
    }
    let mut segments = Vec::new();
    verbs(&children, &mut segments);
    Ok(segments)
}

enum Node {
    Element {
        name: String,
        attrs: Vec<(String, String)>,
        children: Vec<Node>,
    },
    Text(String),
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Walks verbs; returns false when a verb ends the call.
fn verbs(nodes: &[Node], out: &mut Vec<Segment>) -> bool {
    for node in nodes {
        let Node::Element { name, attrs, children } = node else {
            continue;
        };
        match name.as_str() {
            "Say" => {
                let mut text = String::new();
                say_text(children, &mut text);
                let loops = match attr(attrs, "loop").map(|l| l.trim().parse::<i64>()) {
                    None => 1,
                    Some(Ok(n)) if n >= 0 => u32::try_from(n.min(1000)).unwrap_or(1000),
                    // Twilio warns (13510) and says it once.
                    Some(_) => 1,
                };
                out.push(Segment::Say {
                    text: text.split_whitespace().collect::<Vec<_>>().join(" "),
                    language: attr(attrs, "language").unwrap_or("en-US").to_owned(),
                    voice: attr(attrs, "voice").map(str::to_owned),
                    loops,
                });
            }
            "Pause" => {
                let seconds = attr(attrs, "length")
                    .and_then(|l| l.trim().parse::<u32>().ok())
                    .filter(|s| *s > 0)
                    .unwrap_or(1);
                out.push(Segment::Pause { seconds });
            }
            "Gather" if !verbs(children, out) => return false,
            "Hangup" | "Reject" => return false,
            _ => {}
        }
    }
    true
}

/// The text inside `<Say>`, SSML interpreted.
fn say_text(nodes: &[Node], out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Element { name, attrs, children } => {
                let mut inner = String::new();
                say_text(children, &mut inner);
                match (name.as_str(), attr(attrs, "interpret-as")) {
                    ("say-as", Some("digits" | "telephone")) => {
                        let digits: Vec<String> =
                            inner.chars().filter(char::is_ascii_digit).map(String::from).collect();
                        out.push_str(&digits.join(" "));
                    }
                    ("say-as", Some("spell-out" | "characters")) => {
                        let chars: Vec<String> =
                            inner.chars().filter(|c| !c.is_whitespace()).map(String::from).collect();
                        out.push_str(&chars.join(" "));
                    }
                    ("sub", _) => out.push_str(attr(attrs, "alias").unwrap_or(&inner)),
                    ("break", _) => out.push(' '),
                    _ => out.push_str(&inner),
                }
            }
        }
    }
}

struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_until(&mut self, end: &str) -> Result<&'a str, String> {
        let rest = self.rest();
        let at = rest.find(end).ok_or_else(|| format!("missing {end:?}"))?;
        self.pos += at + end.len();
        Ok(&rest[..at])
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// Whitespace, comments, processing instructions and a doctype.
    fn skip_misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_space();
            if self.rest().starts_with("<?") {
                self.skip_until("?>")?;
            } else if self.rest().starts_with("<!--") {
                self.skip_until("-->")?;
            } else if self.rest().starts_with("<!DOCTYPE") {
                self.skip_until(">")?;
            } else {
                return Ok(());
            }
        }
    }

    fn name(&mut self) -> Result<String, String> {
        let rest = self.rest();
        let len = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '>' | '=' | '<'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(format!("a name was expected at byte {}", self.pos));
        }
        self.pos += len;
        Ok(rest[..len].to_owned())
    }

    fn element(&mut self, depth: usize) -> Result<Node, String> {
        if depth > 64 {
            return Err("elements nested too deep".into());
        }
        if !self.rest().starts_with('<') {
            return Err(format!("an element was expected at byte {}", self.pos));
        }
        self.pos += 1;
        let name = self.name()?;
        let mut attrs = Vec::new();
        loop {
            self.skip_space();
            if self.rest().starts_with("/>") {
                self.pos += 2;
                return Ok(Node::Element {
                    name,
                    attrs,
                    children: Vec::new(),
                });
            }
            if self.rest().starts_with('>') {
                self.pos += 1;
                break;
            }
            let key = self.name()?;
            self.skip_space();
            if !self.rest().starts_with('=') {
                return Err(format!("attribute {key} of <{name}> has no value"));
            }
            self.pos += 1;
            self.skip_space();
            let quote = self.rest().chars().next().filter(|c| *c == '"' || *c == '\'');
            let quote = quote.ok_or_else(|| format!("attribute {key} of <{name}> is not quoted"))?;
            self.pos += 1;
            let raw = self.skip_until(&quote.to_string())?;
            attrs.push((key, unescape(raw)?));
        }
        let mut children = Vec::new();
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return Err(format!("<{name}> is not closed"));
            } else if let Some(after) = rest.strip_prefix("</") {
                let close = after.split('>').next().unwrap_or("").trim();
                if close != name {
                    return Err(format!("<{name}> is closed by </{close}>"));
                }
                self.skip_until(">")?;
                return Ok(Node::Element { name, attrs, children });
            } else if rest.starts_with("<!--") {
                self.skip_until("-->")?;
            } else if rest.starts_with("<![CDATA[") {
                self.pos += "<![CDATA[".len();
                children.push(Node::Text(self.skip_until("]]>")?.to_owned()));
            } else if rest.starts_with("<?") {
                self.skip_until("?>")?;
            } else if rest.starts_with('<') {
                children.push(self.element(depth + 1)?);
            } else {
                let len = rest.find('<').unwrap_or(rest.len());
                self.pos += len;
                children.push(Node::Text(unescape(&rest[..len])?));
            }
        }
    }
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';').ok_or("an '&' without ';'")? + at;
        let entity = &rest[at + 1..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else {
                    entity.strip_prefix('#').and_then(|d| d.parse().ok())
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{entity};"))?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
