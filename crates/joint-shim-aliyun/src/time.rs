//! UTC timestamps in the formats the Aliyun signing schemes use (no calendar crate needed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, UTC, with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    millis: i64,
}

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    y: i64,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    ms: u32,
    wd: u32,
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-from-civil inverse.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Timestamp {
    /// Now, from the system clock.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp {
            millis: d.as_millis() as i64,
        }
    }

    /// Seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Self {
        Timestamp {
            millis: secs * 1000,
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn from_unix_millis(millis: i64) -> Self {
        Timestamp { millis }
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        self.millis
    }

    fn civil(&self) -> Civil {
        let secs = self.millis.div_euclid(1000);
        let ms = self.millis.rem_euclid(1000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        Civil {
            y,
            mo,
            d,
            h: (sod / 3600) as u32,
            mi: ((sod % 3600) / 60) as u32,
            s: (sod % 60) as u32,
            ms,
            wd: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// `2023-10-26T10:22:32Z` (ACS3 `x-acs-date`).
    pub fn iso8601(&self) -> String {
        let c = self.civil();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            c.y, c.mo, c.d, c.h, c.mi, c.s
        )
    }

    /// `2024-01-01T00:00:00.000Z` (Tablestore `x-ots-date`).
    pub fn iso8601_millis(&self) -> String {
        let c = self.civil();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            c.y, c.mo, c.d, c.h, c.mi, c.s, c.ms
        )
    }

    /// `20231216T162057Z` (OSS V4 `x-oss-date`).
    pub fn iso8601_basic(&self) -> String {
        let c = self.civil();
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            c.y, c.mo, c.d, c.h, c.mi, c.s
        )
    }

    /// `20231216` (OSS V4 scope date).
    pub fn date_basic(&self) -> String {
        let c = self.civil();
        format!("{:04}{:02}{:02}", c.y, c.mo, c.d)
    }

    /// `Wed, 28 Dec 2022 10:27:41 GMT` (HTTP `Date`, OSS V1).
    pub fn http_date(&self) -> String {
        const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MO: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let c = self.civil();
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            WD[c.wd as usize],
            c.d,
            MO[(c.mo - 1) as usize],
            c.y,
            c.h,
            c.mi,
            c.s
        )
    }

    /// Parse any of the ISO-8601 forms above (`…Z`, `….000Z`, basic `YYYYMMDDTHHMMSSZ`) or an
    /// HTTP date. `None` when it is none of them.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.ends_with("GMT") {
            let t = httpdate::parse_http_date(s).ok()?;
            let d = t.duration_since(UNIX_EPOCH).ok()?;
            return Some(Timestamp {
                millis: d.as_millis() as i64,
            });
        }
        let b = s.strip_suffix('Z')?.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = b.get(r)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        let (y, mo, d, h, mi, sec, rest) = if b.len() == 15 && b[8] == b'T' {
            (
                num(0..4)?,
                num(4..6)?,
                num(6..8)?,
                num(9..11)?,
                num(11..13)?,
                num(13..15)?,
                &b[15..],
            )
        } else if b.len() >= 19 && b[4] == b'-' && b[10] == b'T' {
            (
                num(0..4)?,
                num(5..7)?,
                num(8..10)?,
                num(11..13)?,
                num(14..16)?,
                num(17..19)?,
                &b[19..],
            )
        } else {
            return None;
        };
        let ms = match rest {
            [] => 0,
            [b'.', digits @ ..] if !digits.is_empty() && digits.len() <= 9 => {
                let v: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
                let scale = 10u32.pow(digits.len() as u32);
                (v as u64 * 1000 / scale as u64) as u32
            }
            _ => return None,
        };
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let days = days_from_civil(y as i64, mo, d);
        Some(Timestamp {
            millis: (days * 86_400 + (h * 3600 + mi * 60 + sec) as i64) * 1000 + ms as i64,
        })
    }

    /// Absolute difference in seconds.
    pub fn skew_secs(&self, other: &Timestamp) -> i64 {
        (self.millis - other.millis).abs() / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let t = Timestamp::from_unix(1702743657);
        assert_eq!(t.iso8601_basic(), "20231216T162057Z");
        assert_eq!(t.date_basic(), "20231216");
        assert_eq!(t.iso8601(), "2023-12-16T16:20:57Z");
        assert_eq!(t.iso8601_millis(), "2023-12-16T16:20:57.000Z");
        let d = Timestamp::parse("Wed, 28 Dec 2022 10:27:41 GMT").expect("http date");
        assert_eq!(d.http_date(), "Wed, 28 Dec 2022 10:27:41 GMT");
        assert_eq!(
            Timestamp::from_unix(0).http_date(),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn parses_what_it_formats() {
        for secs in [0i64, 951_782_400, 1_702_743_657, 4_102_444_800] {
            let t = Timestamp::from_unix_millis(secs * 1000 + 123);
            assert_eq!(Timestamp::parse(&t.iso8601_millis()), Some(t));
            let whole = Timestamp::from_unix(secs);
            assert_eq!(Timestamp::parse(&whole.iso8601()), Some(whole));
            assert_eq!(Timestamp::parse(&whole.iso8601_basic()), Some(whole));
        }
        assert_eq!(Timestamp::parse("2023-13-01T00:00:00Z"), None);
        assert_eq!(Timestamp::parse("yesterday"), None);
        assert_eq!(Timestamp::parse("2023-01-01T00:00:00.Z"), None);
    }
}
