//! [`super::rules`] against the `phonenumber` crate itself: the same answer for every input.

use phonenumber::metadata::DATABASE;

use super::rules::{Verdict, classify};
use super::{PhoneError, PhoneNumber};

/// Well-formed E.164 inputs: every example number of every region and type, each with every
/// digit after the `+` replaced in turn, one digit more, one less, a national prefix or a 0
/// after the calling code; and pseudo-random numbers of every length.
fn corpus() -> Vec<String> {
    let mut corpus = Vec::new();
    let regions = (1..1000u16).filter_map(|code| DATABASE.by_code(&code)).flatten();
    for meta in regions {
        let code = meta.country_code();
        let d = meta.descriptors();
        let descriptors = [
            Some(d.general()),
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.no_international(),
        ];
        for example in descriptors.into_iter().flatten().filter_map(|d| d.example()) {
            let number = format!("+{code}{example}");
            for i in 1..number.len() {
                for digit in ['0', '1', '5', '9'] {
                    let mut varied = number.clone().into_bytes();
                    varied[i] = digit as u8;
                    corpus.push(String::from_utf8(varied).expect("ASCII"));
                }
            }
            corpus.push(format!("{number}7"));
            corpus.push(number[..number.len() - 1].to_owned());
            if let Some(prefix) = meta.national_prefix() {
                corpus.push(format!("+{code}{prefix}{example}"));
            }
            corpus.push(format!("+{code}0{example}"));
            corpus.push(number);
        }
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let digits = format!("{}{:015}", 1 + x % 9, x % 1_000_000_000_000_000);
        corpus.push(format!("+{}", &digits[..8 + i % 8]));
    }
    corpus.retain(|s| {
        let digits = &s[1..];
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
    });
    corpus.sort();
    corpus.dedup();
    corpus
}

fn answer(parsed: Result<PhoneNumber, PhoneError>) -> Option<(String, Option<String>, u16, super::NumberKind)> {
    parsed.ok().map(|p| (p.e164, p.country, p.calling_code, p.kind))
}

#[test]
fn the_rules_answer_as_the_library_does_for_every_region() {
    let corpus = corpus();
    let (mut valid, mut decided) = (0, 0);
    let mut differ = Vec::new();
    for input in &corpus {
        let library = answer(PhoneNumber::parse_with_library(input));
        if library.is_some() {
            valid += 1;
            decided += usize::from(classify(&input[1..]) != Verdict::Unsure);
        }
        let ours = answer(PhoneNumber::parse(input));
        if ours != library {
            differ.push(format!("{input}: {ours:?}, library {library:?}"));
        }
    }
    assert!(corpus.len() > 50_000, "the corpus has {} numbers", corpus.len());
    assert!(
        differ.is_empty(),
        "{} of {} differ: {:?}",
        differ.len(),
        corpus.len(),
        &differ[..differ.len().min(10)]
    );
    // The rules must decide nearly every valid number themselves, or they would only be
    // passing everything on to the library.
    assert!(valid > 20_000, "{valid} valid numbers");
    assert!(
        decided * 100 >= valid * 95,
        "the rules decided {decided} of {valid} valid numbers"
    );
}

#[test]
fn a_number_sharing_a_calling_code_goes_to_its_region() {
    let expect = |input: &str, country: &str| {
        let Verdict::Valid { country: found, .. } = classify(&input[1..]) else {
            panic!("{input} was not valid")
        };
        assert_eq!(found, Some(country), "{input}");
    };
    expect("+14155552671", "US");
    expect("+12423570000", "BS");
    expect("+16135550123", "CA");
    expect("+447400123456", "GB");
    expect("+447911123456", "GG");
    // A non-geographic calling code has no country.
    assert!(matches!(
        classify("80012345678"),
        Verdict::Valid {
            country: None,
            calling_code: 800,
            ..
        }
    ));
}

#[test]
fn numbers_the_library_could_rewrite_are_left_to_it() {
    // A 0 after the calling code, or a national prefix (`1` of the NANP).
    assert_eq!(classify("3906123456"), Verdict::Unsure);
    assert_eq!(classify("114155552671"), Verdict::Unsure);
}
