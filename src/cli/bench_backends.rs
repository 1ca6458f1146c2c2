//! `ringmail bench --compare-backends`: the same bench on io_uring and on
//! epoll, alternating in one invocation (io_uring, epoll, then epoll,
//! io_uring, ... so neither always runs first), with the throughput and
//! the daemon's CPU per message of every run and their medians: where the
//! time goes, per backend, measured the same way on the same machine.

use std::collections::BTreeMap;

use anyhow::bail;

use super::bench::{run_once, BenchArgs, Report};

/// One backend's runs.
#[derive(Debug, Default, serde::Serialize)]
struct Backend {
    name: String,
    messages_per_second: Vec<f64>,
    cpu_micros_per_message: Vec<f64>,
    median_messages_per_second: f64,
    median_cpu_micros_per_message: f64,
    /// Per run: µs of daemon CPU per message in user space.
    user_micros_per_message: Vec<f64>,
    /// Per run: µs of daemon CPU per message in the kernel.
    kernel_micros_per_message: Vec<f64>,
    /// Per thread group: µs per message of each run.
    thread_micros_per_message: BTreeMap<String, Vec<f64>>,
    median_user_micros_per_message: f64,
    median_kernel_micros_per_message: f64,
    median_thread_micros_per_message: BTreeMap<String, f64>,
}

/// Runs the comparison; exit code 1 when a run lost or duplicated mail.
pub(super) fn run(args: &BenchArgs) -> anyhow::Result<u8> {
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let mut backends = [
        Backend {
            name: "uring".into(),
            ..Backend::default()
        },
        Backend {
            name: "epoll".into(),
            ..Backend::default()
        },
    ];
    let mut clean = true;
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let mut one = args.clone();
            one.compare_backends = false;
            one.io_backend = backends[i].name.clone();
            let r: Report = run_once(&one)?;
            let per = |s: f64| s / r.messages.max(1) as f64 * 1e6;
            let cpu = per(r.daemon_cpu_seconds);
            clean &= r.lost == 0 && r.duplicates == 0;
            eprintln!(
                "  round {} {:<8} {:>9.0} messages/s  {:>7.1} µs daemon CPU per message  lost {} duplicates {}",
                round + 1,
                r.io_backend,
                r.messages_per_second,
                cpu,
                r.lost,
                r.duplicates
            );
            let b = &mut backends[i];
            b.messages_per_second.push(r.messages_per_second);
            b.cpu_micros_per_message.push(cpu);
            b.user_micros_per_message.push(per(r.daemon_cpu.user));
            b.kernel_micros_per_message.push(per(r.daemon_cpu.system));
            for (group, c) in &r.daemon_cpu_by_thread {
                b.thread_micros_per_message
                    .entry(group.clone())
                    .or_default()
                    .push(per(c.user + c.system));
            }
        }
    }
    for b in &mut backends {
        b.median_messages_per_second = median(&b.messages_per_second);
        b.median_cpu_micros_per_message = median(&b.cpu_micros_per_message);
        b.median_user_micros_per_message = median(&b.user_micros_per_message);
        b.median_kernel_micros_per_message = median(&b.kernel_micros_per_message);
        b.median_thread_micros_per_message = b
            .thread_micros_per_message
            .iter()
            .map(|(g, v)| (g.clone(), median(v)))
            .collect();
    }
    let (u, e) = (&backends[0], &backends[1]);
    let cpu_saving =
        1.0 - u.median_cpu_micros_per_message / e.median_cpu_micros_per_message.max(1e-9);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "messages": args.messages,
                "rounds": args.rounds,
                "backends": backends,
                "uring_cpu_saving": cpu_saving,
            })
        );
    } else {
        println!(
            "ringmail bench --compare-backends: {} messages × {} rounds per backend, alternating",
            args.messages, args.rounds
        );
        for b in &backends {
            println!(
                "  {:<8} median {:>9.0} messages/s  {:>7.1} µs daemon CPU per message ({:.1} user + {:.1} kernel)",
                b.name,
                b.median_messages_per_second,
                b.median_cpu_micros_per_message,
                b.median_user_micros_per_message,
                b.median_kernel_micros_per_message
            );
            println!(
                "           by thread (medians, µs per message): {}",
                b.median_thread_micros_per_message
                    .iter()
                    .filter(|(_, v)| **v >= 0.05)
                    .map(|(g, v)| format!("{g} {v:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        println!(
            "  io_uring uses {:.1} % {} CPU per message than epoll (medians)",
            cpu_saving.abs() * 100.0,
            if cpu_saving >= 0.0 { "less" } else { "more" }
        );
    }
    Ok(if clean { 0 } else { 1 })
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
