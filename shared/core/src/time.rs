//! Time as data: a clock port, UTC calendar arithmetic and the invocation deadline.
//! Nothing here reads the system clock except [`SystemClock`], so TTL and deadline
//! logic is testable without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

pub const MS_PER_SECOND: i64 = 1_000;
pub const MS_PER_HOUR: i64 = 3_600_000;
pub const MS_PER_DAY: i64 = 86_400_000;

/// A source of wall-clock time in epoch milliseconds.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock before 1970 is broken; report the epoch rather than fail.
            Err(_) => 0,
        }
    }
}

/// Wall-clock time that advances with tokio's clock: real time normally, and
/// virtual time under a paused runtime (`start_paused`), where sleeps and
/// timeouts complete instantly and in order. Deadlines, TTLs and timeouts then
/// agree in deterministic tests of latency and deadlines.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_ms: i64,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// Reads `base_ms` now, and advances from there.
    pub fn starting_at(base_ms: i64) -> Self {
        TokioClock {
            base_ms,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.base_ms.saturating_add(elapsed)
    }
}

/// A UTC calendar date and hour, derived from epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UtcHour {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
}

impl UtcHour {
    pub fn from_epoch_ms(ms: i64) -> Self {
        let days = ms.div_euclid(MS_PER_DAY);
        let hour = (ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as u8;
        let (year, month, day) = civil_from_days(days);
        UtcHour {
            year,
            month,
            day,
            hour,
        }
    }

    /// `YYYY-MM-DD`, as used by the `event_date` and `dt` partitions.
    pub fn date_string(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `HH`, as used by the `event_hour` partition.
    pub fn hour_string(&self) -> String {
        format!("{:02}", self.hour)
    }

    /// Writes `YYYY-MM-DD` into a fixed buffer without allocating (hot path).
    pub fn write_date(&self, out: &mut [u8; 10]) {
        let y = self.year.clamp(0, 9999) as u32;
        out[0] = b'0' + (y / 1000) as u8;
        out[1] = b'0' + (y / 100 % 10) as u8;
        out[2] = b'0' + (y / 10 % 10) as u8;
        out[3] = b'0' + (y % 10) as u8;
        out[4] = b'-';
        out[5] = b'0' + self.month / 10;
        out[6] = b'0' + self.month % 10;
        out[7] = b'-';
        out[8] = b'0' + self.day / 10;
        out[9] = b'0' + self.day % 10;
    }

    pub fn write_hour(&self, out: &mut [u8; 2]) {
        out[0] = b'0' + self.hour / 10;
        out[1] = b'0' + self.hour % 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = if m <= 2 { y + 1 } else { y };
    (year as i32, m, d)
}

/// When the invocation must be finished by, and how much time to keep in hand
/// for reporting. `None` means no deadline (local runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at_ms: Option<i64>,
    reserve_ms: i64,
}

impl Deadline {
    pub fn none() -> Self {
        Deadline {
            at_ms: None,
            reserve_ms: 0,
        }
    }

    pub fn at(at_ms: i64, reserve_ms: i64) -> Self {
        Deadline {
            at_ms: Some(at_ms),
            reserve_ms: reserve_ms.max(0),
        }
    }

    /// The deadline a Lambda invocation carries. Lambda sends epoch milliseconds;
    /// local emulators (`cargo lambda watch`) send the timeout itself, e.g.
    /// `600000`: a value before 2000-01-01 is read as milliseconds from now.
    /// Zero means no deadline.
    pub fn from_lambda(deadline_ms: u64, now_ms: i64, reserve_ms: i64) -> Self {
        const EPOCH_2000_MS: i64 = 946_684_800_000;
        match i64::try_from(deadline_ms) {
            Ok(0) | Err(_) => Deadline::none(),
            Ok(d) if d < EPOCH_2000_MS => Deadline::at(now_ms.saturating_add(d), reserve_ms),
            Ok(d) => Deadline::at(d, reserve_ms),
        }
    }

    /// When Lambda ends the invocation, epoch ms; `None` when unbounded.
    pub fn at_ms(&self) -> Option<i64> {
        self.at_ms
    }

    /// The margin kept before `at_ms` for answering.
    pub fn reserve_ms(&self) -> i64 {
        self.reserve_ms
    }

    /// Milliseconds left before the reserve is reached; `None` when unbounded.
    pub fn budget_ms(&self, now_ms: i64) -> Option<i64> {
        self.at_ms.map(|at| at - self.reserve_ms - now_ms)
    }

    /// True once no new work should be started.
    pub fn is_exhausted(&self, now_ms: i64) -> bool {
        self.budget_ms(now_ms).is_some_and(|left| left <= 0)
    }

    /// True when `now + wait` still leaves time before the reserve.
    pub fn allows_wait(&self, now_ms: i64, wait_ms: i64) -> bool {
        self.budget_ms(now_ms).is_none_or(|left| left > wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_ms_maps_to_utc_date_and_hour() {
        // 2024-02-29T23:59:59.999Z, a leap day.
        let h = UtcHour::from_epoch_ms(1_709_251_199_999);
        assert_eq!((h.year, h.month, h.day, h.hour), (2024, 2, 29, 23));
        assert_eq!(h.date_string(), "2024-02-29");
        assert_eq!(h.hour_string(), "23");
        let next = UtcHour::from_epoch_ms(1_709_251_200_000);
        assert_eq!(next.date_string(), "2024-03-01");
        assert_eq!(next.hour_string(), "00");
    }

    #[test]
    fn civil_from_days_matches_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(10_957), (2000, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }

    #[test]
    fn write_date_agrees_with_date_string() {
        for ms in [0_i64, 946_684_800_000, 1_700_000_000_123, 4_102_444_800_000] {
            let h = UtcHour::from_epoch_ms(ms);
            let mut d = [0u8; 10];
            let mut hh = [0u8; 2];
            h.write_date(&mut d);
            h.write_hour(&mut hh);
            assert_eq!(std::str::from_utf8(&d).ok(), Some(h.date_string().as_str()));
            assert_eq!(
                std::str::from_utf8(&hh).ok(),
                Some(h.hour_string().as_str())
            );
        }
    }

    #[test]
    fn deadline_keeps_the_reserve_in_hand() {
        let d = Deadline::at(10_000, 2_000);
        assert_eq!(d.budget_ms(7_000), Some(1_000));
        assert!(!d.is_exhausted(7_999));
        assert!(d.is_exhausted(8_000));
        assert!(d.allows_wait(7_000, 999));
        assert!(!d.allows_wait(7_000, 1_000));
        assert!(!Deadline::none().is_exhausted(i64::MAX));
        assert!(Deadline::none().allows_wait(0, i64::MAX));
    }
}
