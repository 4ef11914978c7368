//! The summary table: one line per figure of the list, each next to the reference
//! measured in the same run (where it has one), its target, and the same figure for s3fs
//! and rclone where they were measured.
//!
//! Cells only ever hold measured values, or say why there is none: "failed" (the reason
//! follows on the row's note line), "not installed", "skipped". A row whose s3vfs figure or
//! reference failed makes the run exit non-zero.

use std::fmt;

/// What a row's numbers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// MiB per second (higher is better).
    MibPerSec,
    /// Operations per second (higher is better).
    Iops,
    /// Seconds of wall time (lower is better).
    Seconds,
    /// MiB of memory (lower is better).
    Mib,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Unit::MibPerSec => format!("{value:.0} MiB/s"),
            Unit::Iops => format!("{value:.0} IOPS"),
            Unit::Seconds if value < 10.0 => format!("{value:.3} s"),
            Unit::Seconds => format!("{value:.1} s"),
            Unit::Mib => format!("{value:.0} MiB"),
        }
    }
}

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Nothing belongs here.
    Empty,
    /// A measured value.
    Value(f64),
    /// The measurement failed, for this reason.
    Failed(String),
    /// Not measured, for this reason ("not installed", "not selected", …).
    Skipped(String),
}

impl Cell {
    /// The value, if measured.
    pub fn value(&self) -> Option<f64> {
        match self {
            Cell::Value(v) => Some(*v),
            _ => None,
        }
    }

    /// A cell from a measurement's result.
    pub fn from_result(result: anyhow::Result<f64>) -> Cell {
        match result {
            Ok(v) => Cell::Value(v),
            Err(err) => Cell::Failed(format!("{err:#}")),
        }
    }
}

/// What a row should reach.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// At least this fraction of the reference.
    RatioAtLeast(f64),
    /// At most this value (in the row's unit).
    AtMost(f64),
    /// At most this multiple of the reference (for times: lower is better).
    RatioAtMost(f64),
}

impl Target {
    fn describe(self, unit: Unit) -> String {
        match self {
            Target::RatioAtLeast(r) => format!(">= {r:.2} x ref"),
            Target::AtMost(v) => format!("<= {}", unit.format(v)),
            Target::RatioAtMost(r) => format!("<= {r:.2} x ref"),
        }
    }

    /// Whether `value` (with `reference`) meets the target; `None` when it cannot be said.
    fn met(self, value: Option<f64>, reference: Option<f64>) -> Option<bool> {
        let value = value?;
        match self {
            Target::RatioAtLeast(r) => Some(value / reference? >= r),
            Target::AtMost(limit) => Some(value <= limit),
            Target::RatioAtMost(r) => Some(value / reference? <= r),
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// Item of the list (1 to 8).
    pub item: u8,
    /// What was measured, how.
    pub what: String,
    /// Short name of the server (explained in the header).
    pub server: String,
    /// Unit of every cell.
    pub unit: Unit,
    /// The reference measured in the same run (raw aws-sdk-s3), or [`Cell::Empty`].
    pub reference: Cell,
    /// The s3vfs figure.
    pub value: Cell,
    /// What the issue asks for.
    pub target: Option<Target>,
    /// s3fs and rclone, in [`crate::tools::Tool::OTHERS`] order; empty when not measured for
    /// this row.
    pub others: Vec<Cell>,
    /// Extra lines: samples, latencies, request counts, failure reasons.
    pub notes: Vec<String>,
}

impl Row {
    /// A row with only its s3vfs value so far.
    pub fn new(item: u8, what: impl Into<String>, server: &str, unit: Unit, value: Cell) -> Row {
        Row {
            item,
            what: what.into(),
            server: server.to_owned(),
            unit,
            reference: Cell::Empty,
            value,
            target: None,
            others: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Sets the reference.
    pub fn reference(mut self, reference: Cell) -> Row {
        self.reference = reference;
        self
    }

    /// Sets the target.
    pub fn target(mut self, target: Target) -> Row {
        self.target = Some(target);
        self
    }

    /// Sets the s3fs and rclone cells.
    pub fn others(mut self, others: Vec<Cell>) -> Row {
        self.others = others;
        self
    }

    /// Adds a note line.
    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.notes.push(note.into());
        self
    }

    /// Whether this row's own measurement (s3vfs or its reference) failed.
    pub fn failed(&self) -> bool {
        matches!(self.value, Cell::Failed(_)) || matches!(self.reference, Cell::Failed(_))
    }

    fn cell(&self, cell: &Cell, with_ratio: bool) -> String {
        match cell {
            Cell::Empty => String::new(),
            Cell::Failed(_) => "failed".to_owned(),
            Cell::Skipped(why) => why.clone(),
            Cell::Value(v) => {
                let text = self.unit.format(*v);
                match self.reference.value() {
                    Some(r) if with_ratio && r > 0.0 => format!("{text} ({:.2})", v / r),
                    _ => text,
                }
            }
        }
    }
}

/// Column widths.
const W_WHAT: usize = 52;
const W_CELL: usize = 13;
const W_OTHER: usize = 19;

/// The table, with the names of the compared tools as column heads.
#[derive(Debug, Default)]
pub struct Summary {
    /// The rows, in the order.
    pub rows: Vec<Row>,
}

impl Summary {
    /// Whether any row's own measurement failed.
    pub fn any_failed(&self) -> bool {
        self.rows.iter().any(Row::failed)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<2} {:<W_WHAT$} {:<4} {:>W_CELL$} {:>W_CELL$} {:>6} {:>16} {:<6} {:>W_OTHER$} {:>W_OTHER$}",
            "#", "what", "srv", "ref (raw S3)", "s3vfs", "vs ref", "target", "", "s3fs (vs ref)",
            "rclone (vs ref)"
        )?;
        // In the order, whatever order the items ran in.
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|row| row.item);
        for row in rows {
            let ratio = match (row.value.value(), row.reference.value()) {
                (Some(v), Some(r)) if r > 0.0 => format!("{:.2}", v / r),
                _ => String::new(),
            };
            let target = row.target.map(|t| t.describe(row.unit)).unwrap_or_default();
            let verdict = match row
                .target
                .and_then(|t| t.met(row.value.value(), row.reference.value()))
            {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            let others: Vec<String> = if row.others.is_empty() {
                vec![String::new(), String::new()]
            } else {
                row.others.iter().map(|c| row.cell(c, true)).collect()
            };
            let line = format!(
                "{:<2} {:<W_WHAT$} {:<4} {:>W_CELL$} {:>W_CELL$} {ratio:>6} {target:>16} {verdict:<6} {:>W_OTHER$} {:>W_OTHER$}",
                row.item,
                row.what,
                row.server,
                row.cell(&row.reference, false),
                row.cell(&row.value, false),
                others[0],
                others.get(1).map_or("", String::as_str),
            );
            writeln!(f, "{}", line.trim_end())?;
            for (name, cell) in [("reference", &row.reference), ("s3vfs", &row.value)] {
                if let Cell::Failed(why) = cell {
                    writeln!(f, "     {name} failed: {why}")?;
                }
            }
            for (tool, cell) in crate::tools::Tool::OTHERS.iter().zip(&row.others) {
                if let Cell::Failed(why) = cell {
                    writeln!(f, "     {} failed: {why}", tool.name())?;
                }
            }
            for note in &row.notes {
                writeln!(f, "     {note}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_targets_and_failures_are_shown() {
        let summary = Summary {
            rows: vec![
                Row::new(1, "read", "mem", Unit::MibPerSec, Cell::Value(80.0))
                    .reference(Cell::Value(100.0))
                    .target(Target::RatioAtLeast(0.9))
                    .others(vec![
                        Cell::Value(50.0),
                        Cell::Skipped("not installed".into()),
                    ]),
                Row::new(4, "create", "mem", Unit::Seconds, Cell::Value(4.0))
                    .target(Target::AtMost(5.0)),
                Row::new(
                    6,
                    "rename",
                    "mem",
                    Unit::Seconds,
                    Cell::Failed("EIO".into()),
                ),
            ],
        };
        let text = summary.to_string();
        assert!(text.contains("0.80"), "{text}");
        assert!(text.contains("MISSED"), "{text}");
        assert!(text.contains("met"), "{text}");
        assert!(text.contains("50 MiB/s (0.50)"), "{text}");
        assert!(text.contains("not installed"), "{text}");
        assert!(text.contains("s3vfs failed: EIO"), "{text}");
        assert!(summary.any_failed());
    }
}
