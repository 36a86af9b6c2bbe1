//! The statistics the report states: median, min and max over repetitions, and ratios
//! taken pair by pair (repetition i of A over repetition i of B, both successful), whose
//! median is the ratio reported. Pure, so tested without a broker.

use serde::{Deserialize, Serialize};

/// Median, min and max of the successful repetitions, and how many there were of all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Repetitions that gave a figure.
    pub n: usize,
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

pub fn spread(values: &[f64]) -> Option<Spread> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    Some(Spread {
        median: median(&finite)?,
        min: finite.iter().copied().fold(f64::INFINITY, f64::min),
        max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        n: finite.len(),
    })
}

/// The ratios a_i / b_i of the repetitions both measured (keyed by repetition), and their spread.
pub fn paired_ratio(a: &[(u32, f64)], b: &[(u32, f64)]) -> Option<Spread> {
    let ratios: Vec<f64> = a
        .iter()
        .filter_map(|&(rep, x)| {
            let (_, y) = b.iter().find(|(r, _)| *r == rep)?;
            (*y > 0.0).then(|| x / y)
        })
        .collect();
    spread(&ratios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn spread_gives_min_and_max() {
        let s = spread(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (3.0, 1.0, 5.0, 3));
    }

    #[test]
    fn paired_ratios_pair_by_repetition_and_skip_the_unpaired() {
        // Repetition 1 of b failed, so a's repetition 1 has no partner.
        let a = [(0, 300.0), (1, 900.0), (2, 200.0)];
        let b = [(0, 100.0), (2, 100.0)];
        let r = paired_ratio(&a, &b).unwrap();
        assert_eq!((r.median, r.min, r.max, r.n), (2.5, 2.0, 3.0, 2));
        // Not the ratio of medians (300 / 100 = 3).
        assert!(paired_ratio(&a, &[]).is_none());
    }
}
