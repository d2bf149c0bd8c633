//! What the machine running lensmae has, where a user's number would otherwise
//! ask for more than it.

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_total_is_read_from_meminfo() {
        let text = "MemTotal:       24568000 kB\nMemFree:        20000000 kB\n";
        assert_eq!(super::meminfo_total(text), Some(24_568_000 * 1024));
        assert_eq!(super::meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(super::meminfo_total("MemTotal: many kB\n"), None);
    }
}
