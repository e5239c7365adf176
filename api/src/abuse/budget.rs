//! `DAILY_SMS_BUDGET`: how many SMS each country may be sent per UTC day, e.g.
//! `US:50000,GB:5000,*:1000` (`*`: every country not named; without it, countries not named
//! have no budget). Counted in PostgreSQL by `start_take`, atomic across replicas.

use std::collections::BTreeMap;

/// The budgets per country.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DailyBudget {
    countries: BTreeMap<String, u32>,
    others: Option<u32>,
}

impl DailyBudget {
    /// The budget of numbers of `country` (ISO 3166; `None` when libphonenumber does not
    /// know it), if any.
    pub fn of(&self, country: Option<&str>) -> Option<u32> {
        country.and_then(|c| self.countries.get(c).copied()).or(self.others)
    }

    /// Whether no country has a budget (`DAILY_SMS_BUDGET` unset).
    pub fn is_empty(&self) -> bool {
        self.countries.is_empty() && self.others.is_none()
    }

    /// Every budget as configured, `*` for the others.
    pub fn limits(&self) -> Vec<(String, u32)> {
        let mut all: Vec<(String, u32)> = self.countries.iter().map(|(c, n)| (c.clone(), *n)).collect();
        all.extend(self.others.map(|n| ("*".to_owned(), n)));
        all
    }
}

/// Parses `DAILY_SMS_BUDGET`.
pub fn daily_budget(value: &str) -> Result<DailyBudget, String> {
    let mut budget = DailyBudget::default();
    for item in common::settings::list(value) {
        let (country, count) = item
            .split_once(':')
            .ok_or_else(|| format!("{item:?} must be COUNTRY:COUNT, e.g. US:50000 or *:1000"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{item:?}: the count must be a whole number from 0 to 4294967295"))?;
        let country = country.trim();
        if country == "*" {
            if budget.others.replace(count).is_some() {
                return Err("* is given twice".into());
            }
        } else if country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic()) {
            if budget.countries.insert(country.to_ascii_uppercase(), count).is_some() {
                return Err(format!("{country} is given twice"));
            }
        } else {
            return Err(format!("{country:?} is not a two-letter ISO 3166 code or *"));
        }
    }
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_countries_then_the_rest() {
        let b = daily_budget("US:50000, gb:5000,*:1000").unwrap();
        assert_eq!(b.of(Some("US")), Some(50_000));
        assert_eq!(b.of(Some("GB")), Some(5_000));
        assert_eq!(b.of(Some("FR")), Some(1_000));
        assert_eq!(b.of(None), Some(1_000));
        let only = daily_budget("US:10").unwrap();
        assert_eq!((only.of(Some("US")), only.of(Some("FR"))), (Some(10), None));
        assert_eq!(daily_budget("").unwrap(), DailyBudget::default());
    }

    #[test]
    fn bad_budgets_say_why() {
        for bad in ["US", "US:-1", "USA:5", "US:5,US:6", "*:1,*:2", "US:ten"] {
            assert!(daily_budget(bad).is_err(), "{bad}");
        }
    }
}
