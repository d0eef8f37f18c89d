//! Small statistics: min/median/max over repeated runs, and the ratio and
//! difference of two such summaries.

use serde::Serialize;

/// Min, median and max of the values of one figure over several runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Smallest value.
    pub min: f64,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// Summarise `values`; `None` when there are none (NaNs are dropped).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            min: v[0],
            median,
            max: v[n - 1],
            n,
        })
    }

    /// `median [min..max]` with `decimals` decimals; the bracket is left out
    /// for a single run.
    pub fn fmt(&self, decimals: usize) -> String {
        if self.n <= 1 || (self.min == self.max) {
            format!("{:.decimals$}", self.median)
        } else {
            format!(
                "{:.decimals$} [{:.decimals$}..{:.decimals$}]",
                self.median, self.min, self.max
            )
        }
    }
}

/// Pairwise differences `a[i] - b[i]` of runs measured side by side (run `i`
/// of both targets ran back to back), so that slow phases of the machine
/// cancel instead of widening the spread.
pub fn paired_diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// Pairwise ratios `a[i] / b[i]` of runs measured side by side; pairs with a
/// zero denominator are dropped.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(_, y)| **y != 0.0)
        .map(|(x, y)| x / y)
        .collect()
}

/// Value at quantile `q` (0..=1) of an hdrhistogram, in the histogram's unit.
pub fn quantile(h: &hdrhistogram::Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_odd_and_even_counts() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 4.0));
    }

    #[test]
    fn spread_of_nothing_is_none_and_nans_are_dropped() {
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[f64::NAN]).is_none());
        let s = Spread::of(&[f64::NAN, 5.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (5.0, 5.0, 5.0, 1));
    }

    #[test]
    fn formatting_hides_the_bracket_for_one_value() {
        assert_eq!(Spread::of(&[1.234]).unwrap().fmt(2), "1.23");
        assert_eq!(
            Spread::of(&[1.0, 2.0, 3.0]).unwrap().fmt(1),
            "2.0 [1.0..3.0]"
        );
    }

    #[test]
    fn paired_figures() {
        assert_eq!(paired_diff(&[3.0, 5.0], &[1.0, 1.0]), vec![2.0, 4.0]);
        assert_eq!(paired_ratio(&[4.0, 1.0], &[2.0, 0.0]), vec![2.0]);
    }

    #[test]
    fn quantiles_of_a_histogram() {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        assert_eq!(quantile(&h, 0.99), 0);
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        assert_eq!(quantile(&h, 0.5), 500);
        assert_eq!(quantile(&h, 0.99), 990);
        assert_eq!(quantile(&h, 0.999), 999);
    }
}
