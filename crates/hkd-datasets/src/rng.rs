//! Counter-based randomness: every random decision is a pure function of
//! (seed, purpose, epoch/class, batch), so any batch can be rebuilt on its own.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// What a random stream is used for; part of the stream's key.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub(crate) enum Purpose {
    /// The permutation of one epoch.
    Shuffle = 1,
    /// The crop offsets and flips of one batch.
    Augment = 2,
    /// The rows drawn from one class by a stratified subset.
    Subset = 3,
    /// The permutation of one class's human rows (a control without per-image information).
    HumanShuffle = 4,
}

/// A ChaCha8 stream whose 256-bit key is `seed ‖ purpose ‖ a ‖ b` (four little-endian u64).
pub(crate) fn stream(seed: u64, purpose: Purpose, a: u64, b: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
    key[16..24].copy_from_slice(&a.to_le_bytes());
    key[24..32].copy_from_slice(&b.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// A uniform integer in `0..n` (n ≥ 1) by Lemire's multiply-and-reject method; written
/// out here so the values never depend on a `rand` version.
pub(crate) fn below(rng: &mut ChaCha8Rng, n: u32) -> u32 {
    debug_assert!(n > 0);
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u64::from(rng.next_u32()) * u64::from(n);
        if (m as u32) >= threshold {
            return (m >> 32) as u32;
        }
    }
}

/// The permutation of `0..n` for one epoch: Fisher–Yates driven by the (seed, epoch) stream.
pub(crate) fn permutation(seed: u64, epoch: u64, n: usize) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    let mut rng = stream(seed, Purpose::Shuffle, epoch, 0);
    for i in (1..n).rev() {
        let j = below(&mut rng, (i + 1) as u32) as usize;
        perm.swap(i, j);
    }
    perm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut rng = stream(1, Purpose::Augment, 0, 0);
        let mut seen = [0usize; 9];
        for _ in 0..9000 {
            seen[below(&mut rng, 9) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn permutation_is_a_permutation_and_depends_on_epoch() {
        let a = permutation(5, 0, 1000);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_eq!(a, permutation(5, 0, 1000));
        assert_ne!(a, permutation(5, 1, 1000));
        assert_ne!(a, permutation(6, 0, 1000));
    }
}
