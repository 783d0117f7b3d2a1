//! The printed result: the conditions of the run, one table of figures
//! beside their baselines, and the peak memory of each service.

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

use crate::micro::{median, GrantRates, Processing, PushRates};
use crate::runs::Run;
use crate::scaling::Scale;
use crate::shell::Step;

const MIB: f64 = 1048576.0;

struct Row {
    measure: String,
    figure: String,
    baseline: String,
    /// Time per unit of work ÷ the baseline's (1× = as fast as the baseline).
    ratio: Option<f64>,
}

/// Everything measured so far.
pub struct Report {
    started: String,
    machine: String,
    load_start: String,
    load_end: String,
    disk: String,
    rows: Vec<Row>,
    /// (run, service, KiB).
    peaks: Vec<(String, String, Option<u64>)>,
    notes: Vec<String>,
    /// The scaling table's builds.
    scales: Vec<Scale>,
    /// The scaling table's end-to-end runs: (processors = pushers, run).
    scale_runs: Vec<(usize, Run)>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn command(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or("?".into(), |k| format!("{:.0} GiB", k / MIB));
    format!(
        "{cpu}, {cores} cores, {mem} RAM, Linux {}",
        command("uname", &["-r"])
    )
}

fn rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

impl Report {
    /// Notes the conditions at the start.
    pub fn start(dir: &Path) -> Report {
        Report {
            started: command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            machine: machine(),
            load_start: loadavg(),
            load_end: String::new(),
            disk: command(
                "df",
                &[
                    "-h",
                    "--output=source,fstype,avail",
                    &dir.display().to_string(),
                ],
            )
            .lines()
            .nth(1)
            .unwrap_or("?")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
            rows: Vec::new(),
            peaks: Vec::new(),
            notes: Vec::new(),
            scales: Vec::new(),
            scale_runs: Vec::new(),
        }
    }

    /// Notes the load at the end.
    pub fn finish(&mut self) {
        self.load_end = loadavg();
    }

    fn row(&mut self, measure: String, figure: String, baseline: String, ratio: Option<f64>) {
        self.rows.push(Row {
            measure,
            figure,
            baseline,
            ratio,
        });
    }

    /// Grant validation: the client's declaration seen before (the
    /// steady state), then never seen.
    pub fn grant(&mut self, r: GrantRates) {
        self.row(
            "grant validation, 1 thread (decode + signatures + validators + policy + scopes + contract hash; the client's declaration verified once, then cached)".into(),
            format!("{} grants/s", rate(r.grants)),
            format!("bare Ed25519 `verify_strict`: {}/s", rate(r.ed25519)),
            Some(r.ed25519 / r.grants),
        );
        self.row(
            "grant validation, 1 thread, a never-seen client declaration each time (2 signatures verified)".into(),
            format!("{} grants/s", rate(r.grants_cold)),
            format!("bare Ed25519 `verify_strict`: {}/s", rate(r.ed25519)),
            Some(r.ed25519 / r.grants_cold),
        );
    }

    /// Processing of one dump.
    pub fn processing(&mut self, what: &str, p: &Processing) {
        let mib = p.dump_bytes as f64 / MIB;
        self.row(
            format!(
                "processing, {what} of {mib:.0} MiB, 7 scopes → {} archives, {:.0} MiB (`build_archives`, best of rounds)",
                p.archives,
                p.out_bytes as f64 / MIB
            ),
            format!("{} MiB/s ({:.2} s)", rate(mib / p.build_s), p.build_s),
            format!("reading the dump once (`cat`, page cache warm): {} MiB/s ({:.2} s)", rate(mib / p.read_s), p.read_s),
            Some(p.build_s / p.read_s),
        );
    }

    /// The shell route on the dump of `p`, each step beside `build_archives`:
    /// the ratio is `build_archives`' time ÷ the step's, so the figure
    /// reads "processing is N× faster than the step".
    pub fn shell(&mut self, steps: &[Step], p: &Processing) {
        let mib = p.dump_bytes as f64 / MIB;
        for step in steps {
            match &step.secs {
                Ok(secs) => self.row(
                    format!(
                        "shell route on the same {mib:.0} MiB dump, no filtering, once after `sync`: {} → {:.0} MiB",
                        step.what,
                        step.out_bytes as f64 / MIB
                    ),
                    format!(
                        "`build_archives` {:.2} s: {}",
                        p.build_s,
                        if *secs >= p.build_s {
                            format!("{:.1}× faster", secs / p.build_s)
                        } else {
                            format!("{:.1}× slower", p.build_s / secs)
                        }
                    ),
                    format!("{}: {secs:.2} s ({} MiB/s)", step.what, rate(mib / secs)),
                    Some(p.build_s / secs),
                ),
                Err(why) => self.row(
                    format!("shell route on the same {mib:.0} MiB dump: {}", step.what),
                    format!("`build_archives` {:.2} s", p.build_s),
                    why.clone(),
                    None,
                ),
            }
        }
    }

    /// One end-to-end run of the scaling table, with `n` processors and
    /// `n` pushers.
    pub fn scaling_e2e(&mut self, n: usize, run: &Run) {
        self.failures(run, &format!("end to end, {n} processors"));
        for (service, kib) in &run.peaks {
            self.peaks
                .push((format!("e2e ×{n}"), service.clone(), *kib));
        }
        self.scale_runs.push((n, run.clone()));
    }

    /// One build of the scaling table.
    pub fn scaling_build(&mut self, build: Scale) {
        self.scales.push(build);
    }

    fn render_scaling(&self, s: &mut String) {
        if !self.scales.is_empty() {
            let _ = writeln!(
                s,
                "\nScaling: `build_archives` of media-heavy Takeouts (7 scopes), each in a child process, once after `sync`:\n"
            );
            let _ = writeln!(
                s,
                "| dump | archives | time | s per GiB | MiB/s | peak memory (VmHWM of the child) |"
            );
            let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
            for b in &self.scales {
                let mib = b.dump_bytes as f64 / MIB;
                let _ = writeln!(
                    s,
                    "| {mib:.0} MiB | {:.0} MiB | {:.2} s | {:.2} s | {} | {:.0} MiB |",
                    b.out_bytes as f64 / MIB,
                    b.build_s,
                    b.build_s / (mib / 1024.0),
                    rate(mib / b.build_s),
                    b.peak_kib as f64 / 1024.0
                );
            }
        }
        if !self.scale_runs.is_empty() {
            let _ = writeln!(
                s,
                "\nScaling: the end-to-end run (one transfer, POST → `done`) with 1 and with 2 processors and pushers:\n"
            );
            let _ = writeln!(
                s,
                "| processors, pushers | dump | POST → `done` | of which POST → all built | MiB/s of dump | floor (read + `curl -T`) | ratio |"
            );
            let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
            for (n, run) in &self.scale_runs {
                let mib = run.dump_bytes as f64 / MIB;
                let _ = writeln!(
                    s,
                    "| {n}, {n} | {mib:.0} MiB | {:.2} s | {} | {} | {:.2} s | {:.2}× |",
                    run.secs,
                    run.processing_s.map_or("–".into(), |p| format!("{p:.2} s")),
                    rate(mib / run.secs),
                    run.floor_s(),
                    run.secs / run.floor_s()
                );
            }
        }
    }

    /// Push vs curl.
    pub fn push(&mut self, p: &PushRates) {
        let mib = p.bytes as f64 / MIB;
        let push = median(&p.push_s);
        let curl = median(&p.curl_s);
        self.row(
            format!(
                "push of a {mib:.0} MiB archive to `alias-sink`, {} MiB chunks (pusher's `ChunkStreamer`, median of {})",
                p.chunk >> 20,
                p.push_s.len()
            ),
            format!("{} MiB/s ({push:.2} s)", rate(mib / push)),
            if p.curl_s.is_empty() {
                "curl not installed".into()
            } else {
                format!("`curl -T` of the same file to the same sink, one PUT: {} MiB/s ({curl:.2} s)", rate(mib / curl))
            },
            (!p.curl_s.is_empty()).then(|| push / curl),
        );
        self.peaks
            .push(("push".into(), "sink".into(), p.sink_peak_kib));
    }

    fn failures(&mut self, run: &Run, label: &str) {
        for f in &run.failures {
            self.notes.push(format!("{label}: FAILED: {f}"));
        }
    }

    /// The end-to-end run.
    pub fn end_to_end(&mut self, run: &Run) {
        let mib = run.dump_bytes as f64 / MIB;
        self.row(
            format!(
                "end to end: {mib:.0} MiB Takeout → {} archives ({:.0} MiB) delivered and verified; POST → `done`",
                run.files,
                run.archive_bytes as f64 / MIB
            ),
            format!("{:.2} s ({} MiB/s of dump)", run.secs, rate(mib / run.secs)),
            format!(
                "floor: read the dump once {:.2} s + `curl -T` the archives once {:.2} s = {:.2} s",
                run.read_s,
                run.curl_s,
                run.floor_s()
            ),
            Some(run.secs / run.floor_s()),
        );
        if let Some(first) = run.first_push_s {
            self.row(
                "  POST → first archive queued for pushing (`pushing`)".into(),
                format!("{first:.2} s"),
                format!("read once {:.2} s", run.read_s),
                Some(first / run.read_s),
            );
        }
        if let Some(p) = run.processing_s {
            self.row(
                "  POST → every archive built (processing over)".into(),
                format!("{p:.2} s"),
                format!("read once {:.2} s", run.read_s),
                Some(p / run.read_s),
            );
            self.row(
                "  after processing (built → `done`)".into(),
                format!("{:.2} s", run.secs - p),
                format!("`curl -T` once {:.2} s", run.curl_s),
                Some((run.secs - p) / run.curl_s),
            );
        }
        self.notes.push(format!(
            "end to end: the dump was uploaded through the gateway first ({:.1} s, not counted); \
             the floor is measured after the run on the same files (page cache warm, as for the run)",
            run.upload_s
        ));
        self.failures(run, "end to end");
        for (service, kib) in &run.peaks {
            self.peaks.push(("e2e".into(), service.clone(), *kib));
        }
    }

    /// The many-transfers run.
    pub fn many(&mut self, run: &Run, dump: u64, processors: usize, pushers: usize) {
        let per_min = |secs: f64| run.verified as f64 * 60.0 / secs;
        self.row(
            format!(
                "{} concurrent transfers (users with {} MiB Takeouts; 1 gateway, {processors} processors, {pushers} pushers): \
                 {}/{} done and verified, {} files, {:.0} MiB delivered in {:.1} s",
                run.transfers,
                dump >> 20,
                run.verified,
                run.transfers,
                run.files,
                run.archive_bytes as f64 / MIB,
                run.secs
            ),
            format!("{} transfers/min", rate(per_min(run.secs))),
            format!(
                "floor: read every dump once {:.2} s + `curl -T` every archive once {:.2} s: {} transfers/min",
                run.read_s,
                run.curl_s,
                rate(per_min(run.floor_s()))
            ),
            Some(run.secs / run.floor_s()),
        );
        if let Some(p) = run.processing_s {
            self.row(
                "  of which until the last transfer's processing was over (all its archives built)"
                    .to_owned(),
                format!("{p:.2} s"),
                format!("read every dump once {:.2} s", run.read_s),
                None,
            );
        }
        self.notes.push(format!(
            "{} transfers: uploads through the gateway took {:.1} s (not counted); {:.0} MiB of dumps",
            run.transfers,
            run.upload_s,
            run.dump_bytes as f64 / MIB
        ));
        self.failures(run, "many transfers");
        for (service, kib) in &run.peaks {
            self.peaks.push((
                format!("{} transfers", run.transfers),
                service.clone(),
                *kib,
            ));
        }
    }

    /// The whole report as markdown.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n## alias-bench, {}\n", self.started);
        let _ = writeln!(s, "- machine: {}", self.machine);
        let _ = writeln!(
            s,
            "- load average (1, 5, 15 min): {} at the start, {} at the end",
            self.load_start, self.load_end
        );
        let _ = writeln!(s, "- scratch disk: {}", self.disk);
        if !self.rows.is_empty() {
            let _ = writeln!(s, "\n| measure | figure | baseline | ratio |");
            let _ = writeln!(s, "|---|---:|---|---:|");
            for r in &self.rows {
                let ratio = r.ratio.map_or("–".into(), |x| format!("{x:.2}×"));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {ratio} |",
                    r.measure, r.figure, r.baseline
                );
            }
            let _ = writeln!(
                s,
                "\nratio = time per unit of work ÷ the baseline's (1× = as fast as the baseline; lower is better). \
                 Every timed phase starts after `sync` (no write-back of the phase before); the files read are in the page cache \
                 (written just before), for the services as for the baselines."
            );
        }
        self.render_scaling(&mut s);
        let mut runs: Vec<&str> = Vec::new();
        let mut services: Vec<&str> = Vec::new();
        for (run, service, _) in &self.peaks {
            if !runs.contains(&run.as_str()) {
                runs.push(run);
            }
            if !services.contains(&service.as_str()) {
                services.push(service);
            }
        }
        if !runs.is_empty() {
            let _ = writeln!(s, "\nPeak memory (VmHWM, MiB) of each service process, read at the end of each run:\n");
            let _ = writeln!(s, "| service | {} |", runs.join(" | "));
            let _ = writeln!(s, "|---|{}", "---:|".repeat(runs.len()));
            for service in &services {
                let cells: Vec<String> = runs
                    .iter()
                    .map(|run| {
                        self.peaks
                            .iter()
                            .find(|(r, sv, _)| r == run && sv == service)
                            .and_then(|(_, _, k)| *k)
                            .map_or("–".into(), |k| format!("{:.0}", k as f64 / 1024.0))
                    })
                    .collect();
                let _ = writeln!(s, "| {service} | {} |", cells.join(" | "));
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s);
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}
