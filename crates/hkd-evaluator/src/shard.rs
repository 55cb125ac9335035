//! Splitting the targets of one evaluation among several tasks (`--shard K/N`).

use std::fmt;
use std::str::FromStr;

use crate::error::EvalError;

/// Task `index` (1-based) of `count`: takes the targets at positions index−1, index−1+count,
/// index−1+2·count, … of the list every task finds the same way (run directories are
/// found in sorted order). The `count` shards of a list partition it, so a grid axis
/// `shard = ["1/4", "2/4", "3/4", "4/4"]` evaluates every run once, on four cores or nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Shard `index` (1-based) of `count`; `None` unless 1 ≤ index ≤ count.
    pub fn new(index: usize, count: usize) -> Option<Self> {
        (index >= 1 && index <= count).then_some(Shard { index, count })
    }

    /// The whole list (1/1).
    pub fn all() -> Self {
        Shard { index: 1, count: 1 }
    }

    /// This shard's items of `items`, in their order.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index - 1)
            .map(|(_, item)| item)
            .collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = EvalError;

    fn from_str(s: &str) -> Result<Self, EvalError> {
        let invalid = |reason: String| EvalError::InvalidOption {
            option: "--shard",
            reason: format!("{s:?} {reason}; expected K/N with 1 <= K <= N, e.g. 2/4"),
        };
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| invalid("has no '/'".into()))?;
        let parse = |v: &str, what: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| invalid(format!("has a {what} that is not a whole number")))
        };
        let (k, n) = (parse(k, "shard number")?, parse(n, "shard count")?);
        Shard::new(k, n).ok_or_else(|| invalid(format!("is out of range (K = {k}, N = {n})")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_list_in_order() {
        let items: Vec<usize> = (0..10).collect();
        let shards: Vec<Vec<usize>> = (1..=4)
            .map(|k| Shard::new(k, 4).unwrap().select(items.clone()))
            .collect();
        assert_eq!(shards[0], vec![0, 4, 8]);
        assert_eq!(shards[1], vec![1, 5, 9]);
        assert_eq!(shards[2], vec![2, 6]);
        assert_eq!(shards[3], vec![3, 7]);
        assert_eq!(Shard::all().select(items.clone()), items);
        // More shards than items: the last ones are empty.
        assert_eq!(
            Shard::new(3, 3).unwrap().select(vec!['a', 'b']),
            Vec::<char>::new()
        );
    }

    #[test]
    fn parse_and_display() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard::new(2, 4).unwrap());
        assert_eq!(" 1 / 1 ".trim().parse::<Shard>().unwrap(), Shard::all());
        assert_eq!(Shard::new(3, 7).unwrap().to_string(), "3/7");
        for (bad, why) in [
            ("0/4", "out of range"),
            ("5/4", "out of range"),
            ("1/0", "out of range"),
            ("2", "no '/'"),
            ("a/4", "shard number"),
            ("1/-2", "shard count"),
        ] {
            let msg = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(
                msg.starts_with("--shard") && msg.contains(why) && msg.contains("K/N"),
                "{bad}: {msg}"
            );
        }
    }
}
