//! Where the daemon's CPU goes during a bench run, by thread group: each
//! thread's user and system time read from `/proc/PID/task/TID/stat`
//! before and after the timed run, summed by thread name with the numbers
//! taken off (`shard-0` and `shard-1` are `shard`, `iou-wrk-4711` is
//! `iou-wrk`). Threads that exited during the run (io_uring's kernel
//! workers come and go) are only in the process's total: they are
//! reported as `exited`.

use std::collections::BTreeMap;

/// User and system CPU seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub(super) struct Cpu {
    /// Seconds in user space.
    pub(super) user: f64,
    /// Seconds in the kernel.
    pub(super) system: f64,
}

/// Each live thread's CPU so far, by thread ID, with the thread's group.
pub(super) type ThreadTimes = BTreeMap<u32, (String, Cpu)>;

/// Reads every live thread of `pid`.
pub(super) fn snapshot(pid: u32) -> ThreadTimes {
    let mut out = ThreadTimes::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            if let Some((name, cpu)) = parse_stat(&stat) {
                let group = if tid == pid {
                    MAIN.to_string()
                } else {
                    group_of(name)
                };
                out.insert(tid, (group, cpu));
            }
        }
    }
    out
}

/// The CPU of the process as a whole (live and exited threads).
pub(super) fn process_total(pid: u32) -> Cpu {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s).map(|(_, cpu)| cpu))
        .unwrap_or_default()
}

/// What each thread group used between `before` and `after`, plus
/// `exited` for what the process total gained beyond the live threads.
pub(super) fn by_group(
    before: &ThreadTimes,
    after: &ThreadTimes,
    total_before: Cpu,
    total_after: Cpu,
) -> BTreeMap<String, Cpu> {
    let mut groups: BTreeMap<String, Cpu> = BTreeMap::new();
    let mut live = Cpu::default();
    for (tid, (group, cpu)) in after {
        let base = before.get(tid).map(|(_, c)| *c).unwrap_or_default();
        let d = Cpu {
            user: (cpu.user - base.user).max(0.0),
            system: (cpu.system - base.system).max(0.0),
        };
        live.user += d.user;
        live.system += d.system;
        let g = groups.entry(group.clone()).or_default();
        g.user += d.user;
        g.system += d.system;
    }
    let exited = Cpu {
        user: (total_after.user - total_before.user - live.user).max(0.0),
        system: (total_after.system - total_before.system - live.system).max(0.0),
    };
    if exited.user + exited.system > 0.0 {
        groups.insert("exited".into(), exited);
    }
    groups
}

/// A thread's name and CPU from a `stat` line: the name is between the
/// first `(` and the last `)`; utime and stime are the 12th and 13th
/// fields after it, in clock ticks.
fn parse_stat(stat: &str) -> Option<(&str, Cpu)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((
        name,
        Cpu {
            user: ticks(11)? / hz,
            system: ticks(12)? / hz,
        },
    ))
}

/// The group of the main thread (named after the binary), which runs
/// pickup.
const MAIN: &str = "main (pickup)";

/// A thread's group: its name without trailing digits and dashes.
fn group_of(name: &str) -> String {
    let g = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
    if g.is_empty() {
        "unnamed".to_string()
    } else {
        g.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_and_parentheses_in_the_name() {
        let hz = rustix::param::clock_ticks_per_second() as f64;
        let line = "4711 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        let (name, cpu) = parse_stat(line).unwrap();
        assert_eq!(name, "a (b) c");
        assert_eq!(cpu.user, 250.0 / hz);
        assert_eq!(cpu.system, 50.0 / hz);
        assert!(parse_stat("4711 (x) S 1 2").is_none());
    }

    #[test]
    fn groups_drop_numbers_and_count_exited_threads() {
        assert_eq!(group_of("shard-1"), "shard");
        assert_eq!(group_of("iou-wrk-93127"), "iou-wrk");
        assert_eq!(group_of("log"), "log");
        let cpu = |u, s| Cpu { user: u, system: s };
        let before: ThreadTimes = [(1, ("shard".to_string(), cpu(1.0, 1.0)))].into();
        let after: ThreadTimes = [
            (1, ("shard".to_string(), cpu(3.0, 2.0))),
            (2, ("shard".to_string(), cpu(1.0, 0.5))),
            (3, ("log".to_string(), cpu(0.25, 0.25))),
        ]
        .into();
        let g = by_group(&before, &after, cpu(10.0, 10.0), cpu(14.0, 13.0));
        assert_eq!(g["shard"], cpu(3.0, 1.5));
        assert_eq!(g["log"], cpu(0.25, 0.25));
        assert_eq!(g["exited"], cpu(0.75, 1.25));
    }
}
