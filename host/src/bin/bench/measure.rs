//! Reading what was measured: percentiles and ratios, a process's memory
//! and CPU time, callgrind's counts, the rate of calls, the machine.

use super::*;

pub(super) fn report(
    transport: &str,
    plugin: &[Duration],
    native: &[Duration],
    floor: &[Duration],
) {
    let (p50, p99) = (percentile(plugin, 50.0), percentile(plugin, 99.0));
    let (n50, n99) = (percentile(native, 50.0), percentile(native, 99.0));
    let (f50, f99) = (percentile(floor, 50.0), percentile(floor, 99.0));
    println!(
        "| {transport} | plugin tool | {:.0} | {:.0} | {:.2}× | {:.2}× |",
        us(p50),
        us(p99),
        ratio(p50, n50),
        ratio(p50, f50)
    );
    println!(
        "| {transport} | native tool | {:.0} | {:.0} | 1.00× | {:.2}× |",
        us(n50),
        us(n99),
        ratio(n50, f50)
    );
    println!(
        "| {transport} | bare responder | {:.0} | {:.0} | | 1.00× |",
        us(f50),
        us(f99)
    );
}

pub(super) fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[index]
}

pub(super) fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

pub(super) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Asks `host` for its tools every 20 ms until tools from `count` plugins
/// are listed: a cold start serves, after a few seconds, whatever has
/// compiled by then, and the rest join later (with `list_changed`). Fails
/// after two minutes.
pub(super) async fn wait_for_plugins(host: &mut impl Caller, count: usize) -> Result<()> {
    let started = Instant::now();
    loop {
        let list = host.request("tools/list", json!({})).await?;
        if expect_plugins(&list, count).is_ok() || started.elapsed() > Duration::from_secs(120) {
            return expect_plugins(&list, count);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails unless `list` (a `tools/list` answer) lists `count` plugin tools:
/// a figure for fewer plugins than claimed would mislead.
/// Checks that tools from `count` plugins are listed (the host's own tools
/// aside): counting plugins rather than tools keeps the check true when a
/// fixture gains a tool.
pub(super) fn expect_plugins(list: &Value, count: usize) -> Result<()> {
    let plugins: std::collections::BTreeSet<&str> = list["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tool| tool["name"].as_str()?.split_once("__"))
        .map(|(plugin, _)| plugin)
        .filter(|plugin| *plugin != "host")
        .collect();
    if plugins.len() != count {
        bail!(
            "expected tools from {count} plugins, the host lists {}: did a plugin fail to load?",
            plugins.len()
        );
    }
    Ok(())
}

/// `wasm` with a custom section named `name` appended: the same component,
/// with a different digest.
pub(super) fn with_custom_section(wasm: &[u8], name: &str) -> Vec<u8> {
    let mut section = Vec::new();
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb128(&mut out, section.len() as u64);
    out.extend(section);
    out
}

pub(super) fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The resident size of process `pid`.
pub(super) fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb =
        status_number(&status, "VmRSS").ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb as f64 / 1024.0)
}

/// The number a `/proc/…/status` file gives for `field` (`VmRSS:  1234 kB`
/// gives 1234).
fn status_number(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The CPU time (user and system) process `pid` has used so far. It is
/// steadier than calls/s on a shared machine: it does not count the time
/// the host waited for a CPU.
pub(super) fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may
    // hold spaces: utime and stime are the 12th and 13th of them.
    let after_name = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("no command name in /proc/{pid}/stat"))?
        .1;
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// The times the threads of process `pid` have given up or been taken off
/// a CPU so far (voluntary and involuntary context switches, summed over
/// its threads). Per call, it counts the waits and thread hops that
/// instructions do not show: each one is a sleep and a wake-up.
pub(super) fn context_switches(pid: u32) -> Result<u64> {
    let mut switches = 0;
    for thread in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that ended since the listing has nothing left to count.
        let Ok(status) = std::fs::read_to_string(thread?.path().join("status")) else {
            continue;
        };
        for field in ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"] {
            switches += status_number(&status, field)
                .ok_or_else(|| anyhow!("no {field} in a thread's status of process {pid}"))?;
        }
    }
    Ok(switches)
}

pub(super) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// Instructions per call: the program totals of callgrind's dump `out`
/// over `calls`.
pub(super) fn instructions_per_call(out: &Path, calls: usize) -> Result<f64> {
    let annotated = std::process::Command::new("callgrind_annotate")
        .arg(out)
        .output()
        .context("running callgrind_annotate")?;
    let text = String::from_utf8_lossy(&annotated.stdout);
    let total: u64 = text
        .lines()
        .find(|line| line.contains("PROGRAM TOTALS"))
        .and_then(|line| line.split_whitespace().next())
        .map(|count| count.replace(',', ""))
        .and_then(|count| count.parse().ok())
        .ok_or_else(|| anyhow!("no program totals in {}", out.display()))?;
    Ok(total as f64 / calls as f64)
}

/// Tells callgrind in process `pid` to `command` (`-i on`, `-i off`, `-d`).
pub(super) fn callgrind_control(pid: u32, command: &[&str]) -> Result<()> {
    let status = std::process::Command::new("callgrind_control")
        .args(command)
        .arg(pid.to_string())
        .stdout(Piped::null())
        .stderr(Piped::null())
        .status()
        .context("running callgrind_control")?;
    if !status.success() {
        bail!("callgrind_control {command:?} failed");
    }
    Ok(())
}

/// What the host process spent per call while [`rate`] ran.
pub(super) struct CallCost {
    /// CPU time (user and system).
    pub(super) cpu: Duration,
    /// Context switches, over all of its threads.
    pub(super) switches: f64,
}

/// [`rate`], with what host process `pid` spent per call meanwhile.
pub(super) async fn costed_rate(
    pid: u32,
    url: &str,
    clients: usize,
    tool: &str,
    arguments: Value,
    seconds: f64,
) -> Result<(f64, CallCost)> {
    let (cpu, switches) = (cpu_time(pid)?, context_switches(pid)?);
    let (calls_per_second, calls) = rate(url, clients, tool, arguments, seconds).await?;
    let cost = CallCost {
        cpu: (cpu_time(pid)? - cpu) / calls as u32,
        switches: (context_switches(pid)? - switches) as f64 / calls as f64,
    };
    Ok((calls_per_second, cost))
}

/// Calls per second with `clients` concurrent clients calling `tool`, and
/// how many calls were made.
pub(super) async fn rate(
    url: &str,
    clients: usize,
    tool: &str,
    arguments: Value,
    seconds: f64,
) -> Result<(f64, u64)> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (url, tool, arguments, done) = (
            url.to_owned(),
            tool.to_owned(),
            arguments.clone(),
            done.clone(),
        );
        tasks.spawn(async move {
            let mut client = HttpClient::connect(&url).await?;
            while Instant::now() < deadline {
                client
                    .request("tools/call", json!({"name": tool, "arguments": arguments}))
                    .await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            client.close().await
        });
    }
    let started = Instant::now();
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let calls = done.load(Ordering::Relaxed);
    Ok((calls as f64 / started.elapsed().as_secs_f64(), calls.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_by_their_whole_name() {
        let status = "VmRSSx:\t9 kB\nVmRSS:\t  1234 kB\nvoluntary_ctxt_switches:\t7\n\
                      nonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_number(status, "VmRSS"), Some(1234));
        assert_eq!(status_number(status, "voluntary_ctxt_switches"), Some(7));
        assert_eq!(status_number(status, "nonvoluntary_ctxt_switches"), Some(3));
        assert_eq!(status_number(status, "VmHWM"), None);
    }

    #[test]
    fn this_process_has_switched_at_least_once() {
        let pid = std::process::id();
        let before = context_switches(pid).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            context_switches(pid).unwrap() > before,
            "a sleep gives up the CPU"
        );
    }
}
