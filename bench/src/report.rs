//! BENCHMARKS.md: a header saying where and from what the numbers come, then one section per
//! benchmark that ran. The whole file is written again by every run (so it never mixes numbers
//! of different machines or commits).

use std::path::Path;
use std::process::Command;

use crate::stats::Summary;

/// Where and from what the numbers come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub cpu: String,
    pub cores: String,
    pub memory: String,
    pub kernel: String,
    /// UTC, to the second.
    pub date: String,
    /// Short commit, with `+dirty` when the tree has changes.
    pub commit: String,
    pub command: String,
}

/// One benchmark's part of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// `## <title>`
    pub title: String,
    /// Markdown below the title.
    pub body: String,
}

impl Header {
    /// Reads the machine from nproc, /proc/meminfo, /proc/cpuinfo and uname, the commit from
    /// git in `repo` (BENCHMARKS.md itself does not make the tree dirty).
    pub fn collect(repo: &Path, command: String) -> Header {
        let cores = output(&mut Command::new("nproc")).unwrap_or_else(|| "?".into());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let kb: u64 = m
                    .lines()
                    .find(|l| l.starts_with("MemTotal:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                Some(format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
            })
            .unwrap_or_else(|| "?".into());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                let line = c.lines().find(|l| l.starts_with("model name"))?;
                Some(line.split_once(':')?.1.trim().to_string())
            })
            .unwrap_or_else(|| "?".into());
        let kernel = output(Command::new("uname").arg("-r")).unwrap_or_else(|| "?".into());
        let head =
            output(Command::new("git").arg("-C").arg(repo).args(["rev-parse", "--short", "HEAD"]));
        let dirty = output(Command::new("git").arg("-C").arg(repo).args([
            "status",
            "--porcelain",
            "--",
            ".",
            ":!BENCHMARKS.md",
        ]))
        .is_some_and(|s| !s.is_empty());
        let commit = match head {
            Some(h) if dirty => format!("{h}+dirty"),
            Some(h) => h,
            None => "unknown (not a git checkout)".into(),
        };
        let date = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC").to_string();
        Header { cpu, cores, memory, kernel, date, commit, command }
    }
}

/// Trimmed stdout of a command that succeeded.
fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The whole BENCHMARKS.md.
pub fn render(header: &Header, sections: &[Section]) -> String {
    let mut out = String::from("# Benchmarks\n\n");
    out += "Written by `make bench` (`burstflare-bench`, see [docs/benchmarks.md](docs/benchmarks.md)); \
            every run rewrites this file with the benchmarks it ran. Absolute times drift on \
            shared machines: compare the ratios.\n\n";
    out += &format!(
        "- Machine: {}, {} cores, {} memory, kernel {}\n",
        header.cpu, header.cores, header.memory, header.kernel
    );
    out += &format!("- Date: {}\n", header.date);
    out += &format!("- Commit: {}\n", header.commit);
    out += &format!("- Command: `{}`\n", header.command);
    for s in sections {
        out += &format!("\n## {}\n\n{}", s.title, s.body.trim_end());
        out.push('\n');
    }
    out
}

/// A table row of samples (seconds, or ms where the table says so): what, then min, median
/// and p95 with 3 decimals (– without samples).
pub fn summary_row(what: &str, s: &[f64]) -> Vec<String> {
    match Summary::of(s) {
        Some(s) => vec![
            what.to_string(),
            format!("{:.3}", s.min),
            format!("{:.3}", s.median),
            format!("{:.3}", s.p95),
        ],
        None => vec![what.to_string(), "–".into(), "–".into(), "–".into()],
    }
}

/// A Markdown table with padded columns (readable as plain text on stdout too). Columns after
/// the first are right-aligned.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let cols = head.len();
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i == 0 {
                s += &format!(" {c}{} |", " ".repeat(pad));
            } else {
                s += &format!(" {}{c} |", " ".repeat(pad));
            }
        }
        s + "\n"
    };
    let mut out = line(head.to_vec());
    out += "|";
    for (i, w) in width.iter().enumerate() {
        out += &if i == 0 {
            format!(":{}|", "-".repeat(w + 1))
        } else {
            format!("{}:|", "-".repeat(w + 1))
        };
    }
    out += "\n";
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            cpu: "Test CPU".into(),
            cores: "2".into(),
            memory: "4.0 GiB".into(),
            kernel: "6.1.0".into(),
            date: "2026-01-01 00:00:00 UTC".into(),
            commit: "abc1234+dirty".into(),
            command: "cargo run --release -p burstflare-bench -- --runs 1".into(),
        }
    }

    #[test]
    fn the_file_has_the_header_then_one_section_per_benchmark() {
        let sections = [
            Section { title: "Snapshots".into(), body: "snap body\n\n".into() },
            Section { title: "Cold start".into(), body: "cold body".into() },
        ];
        let md = render(&header(), &sections);
        assert!(md.starts_with("# Benchmarks\n"), "{md}");
        for want in [
            "- Machine: Test CPU, 2 cores, 4.0 GiB memory, kernel 6.1.0\n",
            "- Date: 2026-01-01 00:00:00 UTC\n",
            "- Commit: abc1234+dirty\n",
            "- Command: `cargo run --release -p burstflare-bench -- --runs 1`\n",
            "\n## Snapshots\n\nsnap body\n\n## Cold start\n\ncold body\n",
        ] {
            assert!(md.contains(want), "missing {want:?} in:\n{md}");
        }
        assert!(md.ends_with("cold body\n"));
    }

    #[test]
    fn tables_are_padded_markdown() {
        let t = table(
            &["what", "s"],
            &[vec!["a".into(), "1.25".into()], vec!["longer".into(), "3".into()]],
        );
        assert_eq!(
            t,
            "| what   |    s |\n|:-------|-----:|\n| a      | 1.25 |\n| longer |    3 |\n"
        );
    }
}
