//! A team's opening hours: parsed from `mon-fri 09:00-18:00; sat 10:00-13:00`, asked whether
//! it is open at an instant and when it opens next, in the merchant's time zone.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// Opening hours; no ranges means always open.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hours {
    /// Per weekday (Monday first), the open ranges `[start, end)`.
    ranges: Vec<(Weekday, Time, Time)>,
}

impl Hours {
    /// Parses `mon-fri 09:00-18:00; sat 10:00-13:00` (days as ranges or lists with commas,
    /// several time ranges per group separated by commas). Empty or `always`: always open.
    pub fn parse(text: &str) -> Result<Hours, String> {
        let text = text.trim().to_lowercase();
        if text.is_empty() || text == "always" {
            return Ok(Hours::default());
        }
        let mut ranges = Vec::new();
        for group in text.split(';').map(str::trim).filter(|g| !g.is_empty()) {
            let (days, times) = group.split_once(char::is_whitespace).ok_or_else(|| {
                format!("`{group}`: expected days then hours, like `mon-fri 09:00-18:00`")
            })?;
            let days = parse_days(days)?;
            for range in times.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                let (start, end) = range
                    .split_once('-')
                    .ok_or_else(|| format!("`{range}`: expected a range like 09:00-18:00"))?;
                let start = parse_time(start)?;
                let end = if end.trim() == "24:00" {
                    Time::MAX
                } else {
                    parse_time(end)?
                };
                if end <= start {
                    return Err(format!("`{range}`: the end must come after the start"));
                }
                for day in &days {
                    ranges.push((*day, start, end));
                }
            }
        }
        if ranges.is_empty() {
            return Err("no opening hours given".to_string());
        }
        Ok(Hours { ranges })
    }

    pub fn always(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether the team is open at `at`.
    pub fn is_open(&self, at: Timestamp, tz: &TimeZone) -> bool {
        if self.always() {
            return true;
        }
        let local = at.to_zoned(tz.clone());
        let (day, time) = (local.weekday(), local.time());
        self.ranges
            .iter()
            .any(|(d, start, end)| *d == day && time >= *start && time < *end)
    }

    /// `at` itself when open, otherwise the next opening (within the next eight days).
    pub fn next_open(&self, at: Timestamp, tz: &TimeZone) -> Timestamp {
        if self.is_open(at, tz) {
            return at;
        }
        let local = at.to_zoned(tz.clone());
        let mut best: Option<Timestamp> = None;
        for offset in 0..8i64 {
            let Ok(day) = local.date().checked_add(offset.days()) else {
                continue;
            };
            for (weekday, start, _) in &self.ranges {
                if day.weekday() != *weekday {
                    continue;
                }
                let Ok(zoned) = day.to_datetime(*start).to_zoned(tz.clone()) else {
                    continue;
                };
                let candidate = zoned.timestamp();
                if candidate > at && best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
            }
            if best.is_some() {
                break;
            }
        }
        best.unwrap_or(at)
    }
}

fn parse_days(text: &str) -> Result<Vec<Weekday>, String> {
    let mut days = Vec::new();
    for part in text.split(',').map(str::trim) {
        let day = |name: &str| {
            DAYS.iter()
                .position(|(n, _)| *n == name.trim())
                .ok_or_else(|| format!("`{name}` is not a day (mon, tue, wed, thu, fri, sat, sun)"))
        };
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                let mut i = from;
                loop {
                    days.push(DAYS[i].1);
                    if i == to {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days.push(DAYS[day(part)?].1),
        }
    }
    Ok(days)
}

fn parse_time(text: &str) -> Result<Time, String> {
    let text = text.trim();
    let (h, m) = text.split_once(':').unwrap_or((text, "0"));
    let (Ok(h), Ok(m)) = (h.parse::<i8>(), m.parse::<i8>()) else {
        return Err(format!("`{text}` is not a time like 09:30"));
    };
    Time::new(h, m, 0, 0).map_err(|_| format!("`{text}` is not a time like 09:30"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        text.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(tz)
            .unwrap()
            .timestamp()
    }

    #[test]
    fn open_and_next_opening() {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let hours = Hours::parse("mon-fri 09:00-12:00, 14:00-18:00; sat 10:00-13:00").unwrap();
        // 2026-11-24 is a Tuesday.
        assert!(hours.is_open(at("2026-11-24T09:30"), &tz));
        assert!(!hours.is_open(at("2026-11-24T12:30"), &tz));
        assert_eq!(
            hours.next_open(at("2026-11-24T12:30"), &tz),
            at("2026-11-24T14:00")
        );
        // Saturday afternoon opens on Monday morning.
        assert_eq!(
            hours.next_open(at("2026-11-28T15:00"), &tz),
            at("2026-11-30T09:00")
        );
        assert!(
            Hours::parse("")
                .unwrap()
                .is_open(at("2026-11-29T03:00"), &tz)
        );
    }

    #[test]
    fn wrapping_day_ranges_and_mistakes() {
        let hours = Hours::parse("fri-mon 10:00-24:00").unwrap();
        let tz = TimeZone::get("Europe/Paris").unwrap();
        assert!(hours.is_open(at("2026-11-29T23:30"), &tz));
        assert!(!hours.is_open(at("2026-11-25T11:00"), &tz));
        assert!(Hours::parse("mon-fry 09:00-18:00").is_err());
        assert!(Hours::parse("mon 18:00-09:00").is_err());
        assert!(Hours::parse("mon 9h").is_err());
    }
}
