//! How many worker threads a run may be asked for.

/// The most worker threads a run takes: as many as the machine runs at once, or 256
/// where it runs fewer. More only cost memory and start-up time: 4,096 rayon workers
/// took 5 GB and minutes before the first cutout, 20,000 aborted the process.
pub fn max_threads() -> usize {
    cores().max(256)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `threads` if a run can use that many workers, else why not (to follow the
/// option's name in a message).
pub fn checked_threads(threads: usize) -> Result<usize, String> {
    match threads {
        0 => Err("must be at least 1".to_string()),
        n if n > max_threads() => {
            Err(format!("must be at most {} (this machine runs {} threads at once)", max_threads(), cores()))
        }
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_between_one_and_the_bound_are_taken() {
        assert_eq!(checked_threads(1), Ok(1));
        assert_eq!(checked_threads(max_threads()), Ok(max_threads()));
        assert!(checked_threads(0).unwrap_err().contains("at least 1"));
        assert!(checked_threads(100_000).unwrap_err().contains("at most"));
    }
}
