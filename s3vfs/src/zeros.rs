//! One shared buffer of zeros for the zero-filled parts of files (a truncate up, a write
//! past the end): growing a file to terabytes must not materialise terabytes, nor even
//! one part's worth per upload in flight.
//!
//! The buffer is allocated zeroed (`calloc`, fresh pages for large sizes) and never
//! written, so its pages are the kernel's shared zero page until something writes them —
//! nothing does. It grows to the largest length asked for and is handed out in slices.

use bytes::Bytes;
use std::sync::Mutex;

static SHARED: Mutex<Option<Bytes>> = Mutex::new(None);

/// `len` zero bytes, a slice of the shared buffer.
pub(crate) fn zeros(len: usize) -> Bytes {
    let mut shared = crate::sync::lock(&SHARED);
    match shared.as_ref() {
        Some(buffer) if buffer.len() >= len => buffer.slice(..len),
        _ => {
            let buffer = Bytes::from(vec![0u8; len]);
            *shared = Some(buffer.clone());
            buffer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_slices_of_one_buffer() {
        let big = zeros(3 << 20);
        let small = zeros(1000);
        assert!(big.iter().all(|b| *b == 0) && small.iter().all(|b| *b == 0));
        assert_eq!(small.len(), 1000);
        assert_eq!(small.as_ptr(), zeros(5).as_ptr(), "the same buffer again");
        assert!(zeros(0).is_empty());
    }
}
