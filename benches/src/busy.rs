//! How busy the machine's CPUs were during a measurement, from `/proc/stat`: with the
//! server and the client on the same cores, a row that keeps every core busy is bound by
//! CPU (whoever uses it), not by waiting.

/// The machine's CPU time so far: busy and total clock ticks over all CPUs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
    cpus: usize,
}

impl CpuTimes {
    /// Now, or `None` where `/proc/stat` cannot be read.
    pub fn now() -> Option<Self> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Cores busy on average since `earlier`: 0 (idle) to the CPU count (all busy).
    pub fn busy_cores_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64 * self.cpus as f64)
    }
}

/// Cores busy while `measured` runs (see [`CpuTimes`]), beside its result.
pub async fn during<T>(measured: impl std::future::Future<Output = T>) -> (T, Option<f64>) {
    let before = CpuTimes::now();
    let result = measured.await;
    let busy = before.and_then(|before| CpuTimes::now()?.busy_cores_since(&before));
    (result, busy)
}

/// The `cpu` lines of `/proc/stat`: the first (all CPUs) gives the ticks, the `cpuN`
/// lines the count. Busy is everything but idle and iowait.
fn parse(stat: &str) -> Option<CpuTimes> {
    let mut lines = stat.lines();
    let all = lines.next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = all
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let idle = field(3) + field(4);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    let cpus = lines
        .take_while(|line| line.starts_with("cpu"))
        .filter(|line| line.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    (ticks.len() >= 4 && cpus > 0).then_some(CpuTimes {
        busy,
        total: busy + idle,
        cpus,
    })
}

/// A figure for the report: `1.9`, or `-` when unknown.
pub fn show(busy: Option<f64>) -> String {
    busy.map_or("-".to_owned(), |b| format!("{b:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_busy_cores() {
        let before = parse(
            "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n\
             cpu1 50 0 25 400 25 0 0 0 0 0\nintr 1 2 3\n",
        )
        .unwrap();
        assert_eq!(before.cpus, 2);
        // 150 more busy ticks out of 200: 1.5 of 2 cores.
        let after = parse(
            "cpu  200 0 100 840 60 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        assert_eq!(after.busy_cores_since(&before), Some(1.5));
        assert_eq!(before.busy_cores_since(&after), None);
        assert!(parse("intr 1\n").is_none());
        assert!(parse("cpu  x y\ncpu0 1 2 3 4\n").is_none());
    }

    #[test]
    fn this_machine_can_be_read() {
        let now = CpuTimes::now().expect("/proc/stat");
        assert!(now.cpus >= 1);
        assert_eq!(show(Some(1.94)), "1.9");
        assert_eq!(show(None), "-");
    }
}
