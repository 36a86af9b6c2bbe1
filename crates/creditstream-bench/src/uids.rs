//! Which user each benchmark order goes to: uniform over the users, or Zipf-skewed (a few
//! hot users get most orders, as real shops see). Deterministic: the same options give
//! the same sequence of uids in every run and for every peer, so peers see the same input.

use std::str::FromStr;

/// How order uids are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UidDistribution {
    Uniform,
    /// P(rank k) ∝ 1 / k^exponent, k = 1..=users; rank k is uid k.
    Zipf {
        exponent: f64,
    },
}

impl UidDistribution {
    pub fn label(&self) -> String {
        match self {
            UidDistribution::Uniform => "uniform".into(),
            UidDistribution::Zipf { exponent } => format!("zipf({exponent})"),
        }
    }
}

impl FromStr for UidDistribution {
    type Err = String;

    /// `uniform`, `zipf` (exponent 1.0) or `zipf:<exponent>`.
    fn from_str(s: &str) -> Result<Self, String> {
        let zipf = |exponent: f64| {
            if exponent.is_finite() && exponent > 0.0 {
                Ok(UidDistribution::Zipf { exponent })
            } else {
                Err(format!("zipf exponent must be positive, got {exponent}"))
            }
        };
        match s {
            "uniform" => Ok(UidDistribution::Uniform),
            "zipf" => zipf(1.0),
            _ => match s.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(exponent)) => zipf(exponent),
                _ => Err(format!("expected uniform, zipf or zipf:<exponent>, got {s:?}")),
            },
        }
    }
}

/// Draws the uid of order number `n` (0-based).
pub struct UidSampler {
    users: u64,
    /// Cumulative probabilities of ranks 1..=users (Zipf only).
    cumulative: Vec<f64>,
}

/// splitmix64: a fast, well-mixed hash of the order number, so draws are independent of
/// the order in which they are asked for.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl UidSampler {
    pub fn new(users: u64, distribution: UidDistribution) -> Self {
        let users = users.max(1);
        let cumulative = match distribution {
            UidDistribution::Uniform => Vec::new(),
            UidDistribution::Zipf { exponent } => {
                let mut sum = 0.0;
                let mut cumulative: Vec<f64> = (1..=users)
                    .map(|k| {
                        sum += (k as f64).powf(-exponent);
                        sum
                    })
                    .collect();
                cumulative.iter_mut().for_each(|c| *c /= sum);
                cumulative
            }
        };
        Self { users, cumulative }
    }

    pub fn uid(&self, n: u64) -> i64 {
        let r = mix(n);
        if self.cumulative.is_empty() {
            return (r % self.users) as i64 + 1;
        }
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        let rank = self.cumulative.partition_point(|&c| c < u);
        rank.min(self.cumulative.len() - 1) as i64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distributions() {
        assert_eq!("uniform".parse::<UidDistribution>(), Ok(UidDistribution::Uniform));
        assert_eq!("zipf".parse(), Ok(UidDistribution::Zipf { exponent: 1.0 }));
        assert_eq!("zipf:1.2".parse(), Ok(UidDistribution::Zipf { exponent: 1.2 }));
        assert!("zipf:-1".parse::<UidDistribution>().is_err());
        assert!("zipf:x".parse::<UidDistribution>().is_err());
        assert!("pareto".parse::<UidDistribution>().is_err());
    }

    #[test]
    fn uniform_stays_in_range_and_covers_the_users() {
        let sampler = UidSampler::new(10, UidDistribution::Uniform);
        let mut seen = [0u32; 10];
        for n in 0..10_000 {
            let uid = sampler.uid(n);
            assert!((1..=10).contains(&uid));
            seen[(uid - 1) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn zipf_favours_low_ranks_in_the_expected_proportion() {
        let users = 1000;
        let sampler = UidSampler::new(users, UidDistribution::Zipf { exponent: 1.0 });
        let draws = 200_000;
        let top = (0..draws).filter(|&n| sampler.uid(n) == 1).count() as f64 / draws as f64;
        let harmonic: f64 = (1..=users).map(|k| 1.0 / k as f64).sum();
        let expected = 1.0 / harmonic;
        assert!((top - expected).abs() < 0.01, "rank 1 got {top}, expected {expected}");
        assert!((0..draws)
            .map(|n| sampler.uid(n))
            .all(|uid| (1..=users as i64).contains(&uid)));
    }

    #[test]
    fn the_same_order_number_gets_the_same_uid() {
        let a = UidSampler::new(5000, UidDistribution::Zipf { exponent: 1.1 });
        let b = UidSampler::new(5000, UidDistribution::Zipf { exponent: 1.1 });
        assert!((0..1000).all(|n| a.uid(n) == b.uid(n)));
    }
}
