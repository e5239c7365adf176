//! Phone numbers and client addresses for the simulated users and attackers.

use std::collections::HashSet;

use common::phone::{NumberKind, PhoneNumber};
use rand::Rng;

/// Whether the API accepts `number` under the default `SMS_NUMBER_TYPES`
/// (`mobile,fixed_line_or_mobile`).
pub fn accepted(number: &str) -> bool {
    PhoneNumber::parse(number).is_ok_and(|p| matches!(p.kind(), NumberKind::Mobile | NumberKind::FixedLineOrMobile))
}

/// Whether `number` is a US number that the API accepts.
fn accepted_us(number: &str) -> bool {
    accepted(number) && PhoneNumber::parse(number).is_ok_and(|p| p.country() == Some("US"))
}

/// A random number of area code `area`: `+1`, the area code, an exchange and a line.
fn draw_us(rng: &mut impl Rng, area: u16) -> String {
    format!(
        "+1{area}{}{:04}",
        rng.random_range(200..1000),
        rng.random_range(0..10_000)
    )
}

/// A random US number of area code `area` that the API accepts; `None` if 500 draws found
/// none.
pub fn random_us_number(rng: &mut impl Rng, area: u16) -> Option<String> {
    (0..500).map(|_| draw_us(rng, area)).find(|n| accepted_us(n))
}

/// The US area codes among 201..=989 whose numbers the API accepts, at most `n` of them, in
/// order. Left out: toll-free, premium-rate and unassigned codes, the other countries of
/// the North American plan (Canada, the Caribbean), and codes where most exchanges are not
/// valid (three draws in four must be accepted).
pub fn us_area_codes(rng: &mut impl Rng, n: usize) -> Vec<u16> {
    (201..=989)
        .filter(|&area| (0..20).filter(|_| accepted_us(&draw_us(rng, area))).count() >= 15)
        .take(n)
        .collect()
}

/// Zipf-like weights for `n` ranks, `1 / rank^s`, normalised to sum to 1.
pub fn zipf(n: usize, s: f64) -> Vec<f64> {
    let raw: Vec<f64> = (1..=n).map(|rank| 1.0 / (rank as f64).powf(s)).collect();
    let total: f64 = raw.iter().sum();
    raw.into_iter().map(|w| w / total).collect()
}

/// The index drawn from `weights` (which sum to 1).
pub fn draw(rng: &mut impl Rng, weights: &[f64]) -> usize {
    let mut left: f64 = rng.random();
    for (i, w) in weights.iter().enumerate() {
        if left < *w {
            return i;
        }
        left -= w;
    }
    weights.len() - 1
}

/// `n` distinct accepted US numbers, their area codes drawn from `areas` with `weights`.
pub fn launch_numbers(rng: &mut impl Rng, areas: &[u16], weights: &[f64], n: usize) -> Vec<String> {
    let mut used = HashSet::new();
    let mut numbers = Vec::with_capacity(n);
    while numbers.len() < n {
        let area = areas[draw(rng, weights)];
        let number = random_us_number(rng, area).unwrap_or_else(|| panic!("no accepted number in area code {area}"));
        if used.insert(number.clone()) {
            numbers.push(number);
        }
    }
    numbers
}

/// Sequential numbers from `first` (E.164) on, as an attacker walks a range: `first`,
/// `first + 1`, … Panics on one the API would not accept, which would make the attack
/// test nothing.
pub struct Sequence {
    next: u64,
}

impl Sequence {
    pub fn from(first: &str) -> Self {
        let next = first
            .strip_prefix('+')
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("{first} is not in E.164 form"));
        Self { next }
    }
}

impl Iterator for Sequence {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let number = format!("+{}", self.next);
        self.next += 1;
        assert!(
            accepted(&number),
            "{number} is not accepted by the default number types"
        );
        Some(number)
    }
}

/// The client address of the `i`-th simulated user or attacker: one of its own, in
/// 10.0.0.0/8.
pub fn client_ip(i: usize) -> String {
    let i = i + 1;
    format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}
