//! Spare activation buffers: what a finished backward pass hands back for the
//! next forward pass to fill (and the block's per-thread scratch, likewise).
//!
//! Why: a block's saved activations (q/k/v, attention probabilities, the MLP's
//! pre-activation...) are ~165 MB per block of the paper's classifier at batch
//! 64, allocated every step and written in full. Fresh, they cost a zero-fill
//! (`memset`, or the kernel clearing new pages) as long as the forward pass's
//! own work on them in the MAE decoder. Reused, they cost nothing: every
//! element is overwritten before it is read, so old values never leak into a
//! result, and no uninitialised memory is ever exposed.

use std::sync::Mutex;

/// At most this many floats (2 GiB) wait in the process's spares; beyond it
/// buffers are freed.
const CAPACITY_FLOATS: usize = 1 << 29;

/// Buffers waiting to be filled again.
struct Spares {
    buffers: Mutex<Vec<Vec<f32>>>,
    capacity_floats: usize,
}

/// The process's spares, which the fused block's saved activations use.
static SPARES: Spares = Spares::new(CAPACITY_FLOATS);

/// A buffer of `len` floats from the process's spares (see [`Spares::take`]).
pub(super) fn take(len: usize) -> Vec<f32> {
    SPARES.take(len)
}

/// Hands each buffer back to the process's spares, leaving it empty.
pub(super) fn give_all<const N: usize>(buffers: [&mut Vec<f32>; N]) {
    for buffer in buffers {
        SPARES.give(std::mem::take(buffer));
    }
}

impl Spares {
    const fn new(capacity_floats: usize) -> Spares {
        Spares { buffers: Mutex::new(Vec::new()), capacity_floats }
    }

    /// A buffer of `len` floats whose values are unspecified (zeros or what a
    /// previous pass left): for callers that write every element before
    /// reading. The best fit among the spares (an exact size when steps
    /// repeat), else a new one.
    fn take(&self, len: usize) -> Vec<f32> {
        let reused = {
            let mut buffers = self.buffers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let best =
                (0..buffers.len()).filter(|&i| buffers[i].capacity() >= len).min_by_key(|&i| buffers[i].capacity());
            best.map(|i| buffers.swap_remove(i))
        };
        match reused {
            Some(mut v) => {
                v.resize(len, 0.0);
                v
            }
            None => vec![0.0; len],
        }
    }

    /// Keeps `v` for a later [`Spares::take`], unless the spares are full.
    fn give(&self, v: Vec<f32>) {
        if v.capacity() == 0 {
            return;
        }
        let mut buffers = self.buffers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let held: usize = buffers.iter().map(Vec::capacity).sum();
        if held + v.capacity() <= self.capacity_floats {
            buffers.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_taken_again_at_its_length() {
        // Spares of its own: the process's are shared with tests running in parallel.
        let spares = Spares::new(CAPACITY_FLOATS);
        let v = vec![1.5f32; 12_345];
        let ptr = v.as_ptr();
        spares.give(v);
        let again = spares.take(12_000);
        assert_eq!(again.as_ptr(), ptr, "the spare buffer is reused");
        assert_eq!(again.len(), 12_000);
        let larger = spares.take(12_346);
        assert_eq!(larger.len(), 12_346);
        assert!(larger.iter().all(|&x| x == 0.0), "a new buffer when no spare is large enough");
    }
}
