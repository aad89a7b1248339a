//! What `wib-bench` measures of one run, and how it prints it: the figures
//! of a peer comparison (time to all Ready, cloud calls per binding to Ready
//! and per steady-state resync, steady-state writes, Kubernetes objects
//! rewritten in steady state, RSS, CPU seconds), plus throttling answers and
//! the time to re-verify every binding after a restart.

use std::collections::BTreeMap;
use std::time::Duration;

/// Counters read at one moment.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub reads: u64,
    pub writes: u64,
    /// Calls wib saw answered "throttled".
    pub throttled: u64,
    pub cpu_seconds: f64,
}

impl Sample {
    /// `metrics`: the operator's /metrics text; `pid`: its process.
    pub fn take(metrics: &str, cloud: &str, pid: Option<u32>) -> Self {
        let mut sample = Self {
            cpu_seconds: pid.and_then(cpu_seconds).unwrap_or_default(),
            ..Self::default()
        };
        for line in metrics
            .lines()
            .filter(|l| l.starts_with("wib_cloud_api_calls_total{"))
            .filter(|l| l.contains(&format!("cloud=\"{cloud}\"")))
        {
            let Some(n) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            let n = n as u64;
            let operation = label(line, "operation").unwrap_or_default();
            if label(line, "result") == Some("throttled") {
                sample.throttled += n;
            }
            if wib_cloud::calls::is_write(operation) {
                sample.writes += n;
            } else {
                sample.reads += n;
            }
        }
        sample
    }

    pub fn since(&self, earlier: &Sample) -> Sample {
        Sample {
            reads: self.reads.saturating_sub(earlier.reads),
            writes: self.writes.saturating_sub(earlier.writes),
            throttled: self.throttled.saturating_sub(earlier.throttled),
            cpu_seconds: (self.cpu_seconds - earlier.cpu_seconds).max(0.0),
        }
    }
}

fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &line[start..];
    Some(&rest[..rest.find('"')?])
}

/// User plus system CPU time of a process (`/proc/<pid>/stat`, in clock
/// ticks of 1/100 s on Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub fn rss_mib(pid: u32) -> Option<f64> {
    let kib: f64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// How the operator names itself to the API server (`wib-controller/<version>`).
const OPERATOR_USER_AGENT: &str = "wib-controller/";

/// API-server requests by verb.
pub type Verbs = BTreeMap<String, u64>;

/// The operator's API-server requests by verb in the audit log `log`
/// (JSON lines, one per request received) after byte `from`, and the byte
/// where the last whole line ends, for the next phase to start from.
pub fn requests_by_verb(log: &std::path::Path, from: u64) -> (Verbs, u64) {
    use std::io::{Read, Seek, SeekFrom};
    // Only what the last phase left unread: the log of a 10,000-binding
    // run is hundreds of megabytes.
    let mut bytes = Vec::new();
    let read = std::fs::File::open(log).and_then(|mut file| {
        file.seek(SeekFrom::Start(from))?;
        file.read_to_end(&mut bytes)
    });
    if read.is_err() {
        return (Verbs::new(), from);
    }
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut verbs = Verbs::new();
    for line in bytes[..whole].split(|b| *b == b'\n') {
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let ours = event["userAgent"]
            .as_str()
            .is_some_and(|a| a.starts_with(OPERATOR_USER_AGENT));
        if let (true, Some(verb)) = (ours, event["verb"].as_str()) {
            *verbs.entry(verb.to_string()).or_default() += 1;
        }
    }
    (verbs, from + whole as u64)
}

/// `get 1.00, patch 2.00`: requests by verb divided by `per`.
fn verbs_per(verbs: &Verbs, per: f64) -> String {
    if verbs.is_empty() {
        return "0".into();
    }
    verbs
        .iter()
        .map(|(verb, n)| format!("{verb} {:.2}", *n as f64 / per))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One run's figures.
#[derive(Clone, Debug)]
pub struct Row {
    pub cloud: String,
    pub bindings: usize,
    /// `none`, or `documented` when the fake enforced the cloud's limits.
    pub quotas: String,
    /// wib's client-side rate when the run replaced its documented ones.
    pub wib_rate: Option<u32>,
    pub to_ready: Duration,
    pub at_ready: Sample,
    pub steady: Sample,
    pub resync: Duration,
    pub windows: u32,
    /// Bindings and ServiceAccounts whose resourceVersion moved in steady state.
    pub rewritten: usize,
    /// 429s the fake served (its own count), over the whole run.
    pub fake_throttled: Option<u64>,
    pub rss_at_ready_mib: f64,
    pub rss_steady_mib: f64,
    pub reverify: Option<Duration>,
    pub reverify_reads: u64,
    /// The operator's API-server requests until all were Ready, and in the
    /// steady window; `None` without an audit log (an attached cluster).
    pub api_to_ready: Option<Verbs>,
    pub api_steady: Option<Verbs>,
}

pub const HEADER: &str = "| cloud | bindings | fake limits | time to all Ready | reads / writes per binding to Ready | reads per binding per steady-state resync | writes in steady state | Kubernetes objects rewritten in steady state | 429s (wib saw / fake served) | RSS at Ready / steady | CPU s to Ready / steady | re-verify after restart (reads per binding) | API-server requests per binding to Ready | API-server requests per binding per steady-state resync |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

impl Row {
    pub fn markdown(&self) -> String {
        let n = self.bindings.max(1) as f64;
        let resyncs = f64::from(self.windows.max(1));
        format!(
            "| {} | {} | {} | {:.1} s | {:.1} / {:.1} | {:.2} | {} | {} | {} / {} | {:.0} / {:.0} MiB | {:.1} / {:.1} | {} | {} | {} |",
            self.cloud,
            self.bindings,
            match self.wib_rate {
                Some(rate) => format!("{} (wib at {rate}/s)", self.quotas),
                None => self.quotas.clone(),
            },
            self.to_ready.as_secs_f64(),
            self.at_ready.reads as f64 / n,
            self.at_ready.writes as f64 / n,
            self.steady.reads as f64 / n / resyncs,
            self.steady.writes,
            self.rewritten,
            self.at_ready.throttled + self.steady.throttled,
            self.fake_throttled
                .map_or_else(|| "n/a".to_string(), |t| t.to_string()),
            self.rss_at_ready_mib,
            self.rss_steady_mib,
            self.at_ready.cpu_seconds,
            self.steady.cpu_seconds,
            match self.reverify {
                Some(d) => format!(
                    "{:.1} s ({:.2})",
                    d.as_secs_f64(),
                    self.reverify_reads as f64 / n
                ),
                None => "not measured".into(),
            },
            self.api_to_ready
                .as_ref()
                .map_or_else(|| "n/a".into(), |v| verbs_per(v, n)),
            self.api_steady
                .as_ref()
                .map_or_else(|| "n/a".into(), |v| verbs_per(v, n * resyncs)),
        )
    }
}

/// The resourceVersion of every object of a list, by name.
pub fn versions<'a>(
    objects: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> BTreeMap<String, String> {
    objects
        .into_iter()
        .map(|(name, rv)| (name.to_string(), rv.unwrap_or_default().to_string()))
        .collect()
}

/// How many objects changed (or appeared, or went) between two snapshots.
pub fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> usize {
    let moved = after
        .iter()
        .filter(|(name, rv)| before.get(*name) != Some(*rv))
        .count();
    moved
        + before
            .keys()
            .filter(|name| !after.contains_key(*name))
            .count()
}

const SECTION_START: &str = "<!-- wib-bench section: ";
const SECTION_END: &str = "<!-- wib-bench end -->";

/// A report file made of named sections, one per benchmark invocation:
/// `existing` with section `name` replaced by `body` (or added after the
/// others), under `title` and above `legend`. Separate invocations (the
/// clouds' documented limits at one set of sizes, zero latency at another)
/// each regenerate only their own part.
pub fn merge_section(existing: &str, name: &str, body: &str, title: &str, legend: &str) -> String {
    let mut sections: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in existing.lines() {
        if let Some(rest) = line.strip_prefix(SECTION_START) {
            current = Some((rest.trim_end_matches(" -->").to_string(), String::new()));
        } else if line == SECTION_END {
            sections.extend(current.take());
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    match sections.iter_mut().find(|(n, _)| n == name) {
        Some(section) => section.1 = body.to_string(),
        None => sections.push((name.to_string(), body.to_string())),
    }
    let mut out = format!("{title}\n\n");
    for (name, body) in &sections {
        out.push_str(&format!(
            "{SECTION_START}{name} -->\n{}\n{SECTION_END}\n\n",
            body.trim_end()
        ));
    }
    out.push_str(legend.trim_start());
    out
}

/// Cores and memory of the machine a benchmark ran on, for its report.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {:.0} GiB", kib / 1024.0 / 1024.0)
        });
    format!("{cores} cores{memory}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_split_by_cloud_read_write_and_throttling() {
        let metrics = "\
wib_cloud_api_calls_total{cloud=\"aws\",operation=\"GetRole\",result=\"success\"} 10
wib_cloud_api_calls_total{cloud=\"aws\",operation=\"CreateRole\",result=\"success\"} 2
wib_cloud_api_calls_total{cloud=\"aws\",operation=\"GetRole\",result=\"throttled\"} 1
wib_cloud_api_calls_total{cloud=\"gcp\",operation=\"GetServiceAccount\",result=\"success\"} 7
";
        let sample = Sample::take(metrics, "aws", None);
        assert_eq!((sample.reads, sample.writes, sample.throttled), (11, 2, 1));
    }

    #[test]
    fn the_operators_requests_are_counted_by_verb_from_where_the_last_phase_ended() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("audit.log");
        let ours = r#"{"verb":"patch","userAgent":"wib-controller/0.1.0"}"#;
        let theirs = r#"{"verb":"list","userAgent":"kubectl/v1.34"}"#;
        std::fs::write(
            &log,
            format!("{ours}\n{theirs}\n{ours}\n{{\"verb\":\"get\""),
        )
        .expect("log");
        let (verbs, end) = requests_by_verb(&log, 0);
        assert_eq!(verbs, Verbs::from([("patch".to_string(), 2)]));
        // The half-written last line is read by the next phase.
        let get = r#"{"verb":"get","userAgent":"wib-controller/0.1.0"}"#;
        std::fs::write(&log, format!("{ours}\n{theirs}\n{ours}\n{get}\n")).expect("log");
        assert_eq!(
            requests_by_verb(&log, end).0,
            Verbs::from([("get".to_string(), 1)])
        );
        assert_eq!(
            verbs_per(&Verbs::from([("get".to_string(), 3)]), 2.0),
            "get 1.50"
        );
    }

    #[test]
    fn each_invocation_rewrites_only_its_own_section() {
        let first = merge_section("", "limits", "table A\n", "# B", "legend\n");
        let both = merge_section(&first, "scale", "table B", "# B", "legend\n");
        let again = merge_section(&both, "limits", "table A2", "# B", "legend\n");
        assert_eq!(
            again,
            "# B\n\n<!-- wib-bench section: limits -->\ntable A2\n<!-- wib-bench end -->\n\n<!-- wib-bench section: scale -->\ntable B\n<!-- wib-bench end -->\n\nlegend\n"
        );
    }

    #[test]
    fn a_snapshot_diff_counts_rewritten_created_and_deleted_objects() {
        let before = versions([("a", Some("1")), ("b", Some("2")), ("gone", Some("3"))]);
        let after = versions([("a", Some("1")), ("b", Some("5")), ("new", Some("6"))]);
        assert_eq!(changed(&before, &after), 3);
        assert_eq!(changed(&before, &before), 0);
    }
}
