//! Summaries of repeated measurements.

/// Min, median and p95 of some samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no samples. The median of an even count is the mean of the middle two; p95
    /// is the nearest rank (the ⌈0.95·n⌉-th smallest: the largest for n < 20).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        let rank = (n * 95).div_ceil(100).max(1);
        Some(Summary { min: s[0], median, p95: s[rank - 1], max: s[n - 1] })
    }
}

/// The median of samples in seconds, in milliseconds (NaN for no samples: prose shows "NaN"
/// rather than a made-up number).
pub fn median_ms(seconds: &[f64]) -> f64 {
    Summary::of(seconds).map_or(f64::NAN, |s| s.median * 1000.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn min_median_and_nearest_rank_p95() {
        assert_eq!(Summary::of(&[]), None);
        let s = Summary::of(&[3.0, 1.0, 2.0, 5.0, 4.0]).unwrap();
        assert_eq!((s.min, s.median, s.p95, s.max), (1.0, 3.0, 5.0, 5.0));
        let s = Summary::of(&[4.0, 1.0]).unwrap();
        assert_eq!((s.min, s.median, s.p95), (1.0, 2.5, 4.0));
        assert_eq!(median_ms(&[0.25, 0.5, 0.75]), 500.0);
        assert!(median_ms(&[]).is_nan());
        let many: Vec<f64> = (1..=40).map(f64::from).collect();
        assert_eq!(Summary::of(&many).unwrap().p95, 38.0);
    }
}
