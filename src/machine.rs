//! What the machine running lensmae has (cores, memory), where a user's number
//! would otherwise ask for more than it.

/// Bytes of physical memory (Linux: `MemTotal` of `/proc/meminfo`); none where
/// it cannot be read, and then nothing is refused for it.
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_total(&text)
}

fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

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
    fn the_total_is_read_from_meminfo() {
        let text = "MemTotal:       24568000 kB\nMemFree:        20000000 kB\n";
        assert_eq!(meminfo_total(text), Some(24_568_000 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(meminfo_total("MemTotal: many kB\n"), None);
    }

    #[test]
    fn thread_counts_between_one_and_the_bound_are_taken() {
        assert_eq!(checked_threads(1), Ok(1));
        assert_eq!(checked_threads(max_threads()), Ok(max_threads()));
        assert!(checked_threads(0).unwrap_err().contains("at least 1"));
        assert!(checked_threads(100_000).unwrap_err().contains("at most"));
    }
}
