//! Printing results: `--output text` for people, `--output json` for scripts.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Left-aligned columns separated by two spaces; trailing spaces trimmed.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            s.push_str(cell);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(width.saturating_sub(cell.chars().count()) + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A unix-milliseconds timestamp as a UTC date, e.g. `2025-03-01`.
pub fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A unix-milliseconds timestamp as UTC date and time, e.g. `2025-03-01 14:05 UTC`.
pub fn date_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A unix-milliseconds timestamp as UTC date and time to the second, e.g. `2025-03-01T14:05:07Z`.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A length of time, short: `45s`, `12m`, `1h 05m`, `3d 4h` (negative counts as 0).
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `at` relative to `now`: `12m ago`, `in 12m`, or `just now` within a second.
pub fn relative(at: i64, now: i64) -> String {
    let d = now - at;
    if d.abs() < 1000 {
        "just now".into()
    } else if d > 0 {
        format!("{} ago", span(d))
    } else {
        format!("in {}", span(-d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let t = table(
            &["SLUG", "ROLE"],
            &[vec!["acme".into(), "owner".into()], vec!["a".into(), String::new()]],
        );
        assert_eq!(t, "SLUG  ROLE\nacme  owner\na");
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date_time(90_000), "1970-01-01 00:01 UTC");
        assert_eq!(timestamp(90_500), "1970-01-01T00:01:30Z");
    }

    #[test]
    fn spans_and_relative_times_are_short() {
        assert_eq!(span(-5), "0s");
        assert_eq!(span(59_999), "59s");
        assert_eq!(span(60_000), "1m");
        assert_eq!(span(12 * 60_000 + 59_000), "12m");
        assert_eq!(span(3_900_000), "1h 05m");
        assert_eq!(span((3 * 24 + 4) * 3_600_000 + 59_000), "3d 4h");
        let now = 1_000_000_000;
        assert_eq!(relative(now - 720_000, now), "12m ago");
        assert_eq!(relative(now + 720_000, now), "in 12m");
        assert_eq!(relative(now + 400, now), "just now");
    }
}
