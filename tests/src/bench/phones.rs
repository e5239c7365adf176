//! Phone numbers parsed on one thread: `common::phone` (libphonenumber's rules on each
//! region's patterns, compiled once) against the `phonenumber` crate's own parse, whose
//! patterns share one cache of 100 regexes behind one mutex. US numbers only, and numbers of
//! twenty countries in turn (more patterns than that cache holds).

use std::time::Instant;

use common::phone::PhoneNumber;

/// Valid mobile numbers of twenty countries.
const WORLD: [&str; 20] = [
    "+14155550123",
    "+447400123456",
    "+33612345678",
    "+4915123456789",
    "+819012345678",
    "+5511987654321",
    "+61412345678",
    "+919876543210",
    "+34612345678",
    "+393123456789",
    "+31612345678",
    "+46701234567",
    "+48512345678",
    "+525512345678",
    "+27821234567",
    "+971501234567",
    "+6591234567",
    "+85291234567",
    "+821012345678",
    "+905321234567",
];

/// Microseconds per number.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parsing {
    pub us: f64,
    pub world: f64,
    pub library_us: f64,
    pub library_world: f64,
}

/// Parses 20,000 US numbers and 2,000 of the twenty countries (200 with the crate, which
/// can take milliseconds each), after one warm-up round of each.
pub fn measure() -> anyhow::Result<Parsing> {
    let us: Vec<String> = (0..20_000).map(|i| format!("+1415555{:04}", i % 10_000)).collect();
    let world: Vec<&str> = WORLD.iter().copied().cycle().take(2_000).collect();
    let time = |numbers: &[&str], parse: fn(&str) -> bool| -> anyhow::Result<f64> {
        for n in WORLD {
            anyhow::ensure!(parse(n), "{n} was refused");
        }
        let started = Instant::now();
        let valid = numbers.iter().filter(|n| parse(n)).count();
        let each = started.elapsed().as_secs_f64() * 1e6 / numbers.len() as f64;
        anyhow::ensure!(
            valid == numbers.len(),
            "{} of {} refused",
            numbers.len() - valid,
            numbers.len()
        );
        Ok(each)
    };
    let ours: fn(&str) -> bool = |n| PhoneNumber::parse(n).is_ok();
    let library: fn(&str) -> bool = |n| PhoneNumber::parse_with_library(n).is_ok();
    let us: Vec<&str> = us.iter().map(String::as_str).collect();
    Ok(Parsing {
        us: time(&us, ours)?,
        world: time(&world, ours)?,
        library_us: time(&us[..2_000], library)?,
        library_world: time(&world[..200], library)?,
    })
}
