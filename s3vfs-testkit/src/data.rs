//! Test content: bytes that look like real data to a chunker and a compressor.

/// `len` pseudo-random bytes from `seed` (xorshift): incompressible, and the same for the
/// same seed, so that tests can write content again and compare it with what they read.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
