//! libphonenumber's validity and type rules for E.164 input, matched without the
//! `phonenumber` crate's regex cache.
//!
//! That crate compiles its patterns into one process-wide LRU cache of 100 regexes, behind
//! one mutex held for the whole match, and looks each pattern up by hashing its source (often
//! hundreds of bytes). A US number cost 16-18 µs to parse, with every request of the
//! process queued on that mutex; numbers of twenty countries in turn cost up to 4 ms each,
//! because their patterns no longer fit in the cache and were compiled again and again
//! (the bench measures both: "Phone numbers parsed").
//!
//! Here each region's patterns are compiled once, the first time a number of its calling
//! code is seen, ASCII-only and without lazy DFAs (about 50 KB a region; every region of the
//! world about 12 MB), and shared without a lock. The rules are the crate's own
//! (`validator::source_for`, `validator::number_type`, `Descriptor::is_match`), applied to
//! the same metadata. A number the crate's parser could rewrite (a national prefix or a
//! prefix-for-parsing at the start of its national number, a leading zero) is
//! [`Verdict::Unsure`]: the caller asks the crate itself. A test compares both on every
//! example number of every region, their variations and random numbers.

use std::collections::HashMap;
use std::sync::OnceLock;

use phonenumber::Type;
use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, meta};

/// What the rules say of a well-formed E.164 number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid {
        calling_code: u16,
        country: Option<&'static str>,
        kind: Type,
    },
    Invalid,
    /// The crate's parser might rewrite the number: ask it.
    Unsure,
}

/// The verdict on `digits`: the digits after the `+` of a well-formed E.164 number (8 to 15
/// ASCII digits, the first not 0).
pub fn classify(digits: &str) -> Verdict {
    // The calling code is the first one to three digits that name one (`helper::country_code`).
    let Some((calling_code, regions, national)) = (1..=3).find_map(|len| {
        let code: u16 = digits.get(..len)?.parse().ok()?;
        codes().get(&code).map(|regions| (code, regions, &digits[len..]))
    }) else {
        return Verdict::Unsure;
    };
    if national.starts_with('0') {
        // Kept apart by the crate (`italian_leading_zero`), and matched without its zeros.
        return Verdict::Unsure;
    }
    // `validator::source_for`: a lone region, else the first whose leading digits start the
    // number, or (without leading digits) whose rules give it a type.
    let source = match regions.as_slice() {
        [only] => Some(only.rules()),
        several => several.iter().map(Region::rules).find(|r| match &r.leading_digits {
            Some(re) => starts_with_match(re, national),
            None => r.number_type(national) != Type::Unknown,
        }),
    };
    let Some(rules) = source else {
        return Verdict::Unsure;
    };
    let national_prefix = rules.national_prefix.is_some_and(|p| national.starts_with(p));
    let parsing_prefix = rules
        .prefix_for_parsing
        .as_ref()
        .is_some_and(|re| starts_with_match(re, national));
    if national_prefix || parsing_prefix {
        return Verdict::Unsure;
    }
    match rules.number_type(national) {
        Type::Unknown => Verdict::Invalid,
        kind => Verdict::Valid {
            calling_code,
            country: rules.country,
            kind,
        },
    }
}

/// Whether `re` matches `text` from its start (the crate's `find(..).start() == 0`).
fn starts_with_match(re: &meta::Regex, text: &str) -> bool {
    re.is_match(Input::new(text).anchored(Anchored::Yes))
}

/// One region of the metadata, compiled at its first use.
struct Region {
    meta: &'static Metadata,
    rules: OnceLock<Rules>,
}

impl Region {
    fn rules(&self) -> &Rules {
        self.rules.get_or_init(|| Rules::new(self.meta))
    }
}

/// The regions of each calling code, in the crate's order (the main region first).
fn codes() -> &'static HashMap<u16, Vec<Region>> {
    static CODES: OnceLock<HashMap<u16, Vec<Region>>> = OnceLock::new();
    CODES.get_or_init(|| {
        // Every calling code has one to three digits. Not `DATABASE.iter()`: it lists regions
        // by id, and the regions that are no country share the id "001".
        (1..1000)
            .filter_map(|code| {
                let regions = DATABASE.by_code(&code)?;
                let regions = regions.into_iter().map(|meta| Region {
                    meta,
                    rules: OnceLock::new(),
                });
                Some((code, regions.collect::<Vec<_>>()))
            })
            .collect::<HashMap<_, _>>()
    })
}

/// A descriptor's possible lengths and national-number pattern (`Descriptor::is_match`).
struct Pattern {
    lengths: &'static [u16],
    re: meta::Regex,
}

impl Pattern {
    fn new(d: &'static Descriptor) -> Self {
        Self {
            lengths: d.possible_length(),
            re: compile(d.national_number().as_str()),
        }
    }

    fn is_match(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && starts_with_match(&self.re, national)
    }
}

/// The crate's patterns are written with insignificant whitespace, and match ASCII digits.
fn compile(source: &str) -> meta::Regex {
    meta::Regex::builder()
        .syntax(syntax::Config::new().ignore_whitespace(true).unicode(false).utf8(false))
        .configure(meta::Config::new().hybrid(false).dfa(false).onepass(false))
        .build(source)
        .expect("libphonenumber's metadata holds valid patterns")
}

/// One region's rules.
struct Rules {
    country: Option<&'static str>,
    general: Pattern,
    /// The types tried before fixed line and mobile, in the crate's order.
    special: Vec<(Type, Pattern)>,
    fixed_line: Option<Pattern>,
    mobile: Option<Pattern>,
    /// The fixed-line and mobile patterns are the same.
    fixed_line_is_mobile: bool,
    leading_digits: Option<meta::Regex>,
    national_prefix: Option<&'static str>,
    prefix_for_parsing: Option<meta::Regex>,
}

impl Rules {
    fn new(meta: &'static Metadata) -> Self {
        let d = meta.descriptors();
        let special = [
            (Type::PremiumRate, d.premium_rate()),
            (Type::TollFree, d.toll_free()),
            (Type::SharedCost, d.shared_cost()),
            (Type::Voip, d.voip()),
            (Type::PersonalNumber, d.personal_number()),
            (Type::Pager, d.pager()),
            (Type::Uan, d.uan()),
            (Type::Voicemail, d.voicemail()),
        ]
        .into_iter()
        .filter_map(|(kind, d)| d.map(|d| (kind, Pattern::new(d))))
        .collect();
        let source = |d: Option<&'static Descriptor>| d.map(|d| d.national_number().as_str());
        Self {
            // `Country::id`: a region that is no country ("001") has none.
            country: meta.id().parse::<phonenumber::country::Id>().ok().map(|_| meta.id()),
            general: Pattern::new(d.general()),
            special,
            fixed_line: d.fixed_line().map(Pattern::new),
            mobile: d.mobile().map(Pattern::new),
            fixed_line_is_mobile: source(d.fixed_line()) == source(d.mobile()),
            leading_digits: meta.leading_digits().map(|re| compile(re.as_str())),
            national_prefix: meta.national_prefix(),
            prefix_for_parsing: meta.national_prefix_for_parsing().map(|re| compile(re.as_str())),
        }
    }

    /// `validator::number_type`.
    fn number_type(&self, national: &str) -> Type {
        if !self.general.is_match(national) {
            return Type::Unknown;
        }
        if let Some((kind, _)) = self.special.iter().find(|(_, p)| p.is_match(national)) {
            return *kind;
        }
        let mobile = || self.mobile.as_ref().is_some_and(|p| p.is_match(national));
        if self.fixed_line.as_ref().is_some_and(|p| p.is_match(national)) {
            return if self.fixed_line_is_mobile || mobile() {
                Type::FixedLineOrMobile
            } else {
                Type::FixedLine
            };
        }
        if mobile() { Type::Mobile } else { Type::Unknown }
    }
}
