//! Latency figures: nearest-rank percentiles over every sample (no
//! histogram buckets, no sampling: rows have at most a few hundred thousand
//! attempts).

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by nearest rank.
pub fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub p50_us: u32,
    pub p99_us: u32,
    pub mean_us: f64,
}

pub fn summarise(mut samples: Vec<u32>) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let sum: u64 = samples.iter().map(|&s| s as u64).sum();
    Some(Summary {
        n: samples.len(),
        p50_us: percentile(&samples, 50.0)?,
        p99_us: percentile(&samples, 99.0)?,
        mean_us: sum as f64 / samples.len() as f64,
    })
}

/// `a` as a percentage of `b` (0 when `b` is 0).
pub fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        let s = summarise(vec![3, 1, 2]).unwrap();
        assert_eq!((s.n, s.p50_us, s.p99_us), (3, 2, 3));
        assert!((s.mean_us - 2.0).abs() < 1e-9);
    }
}
