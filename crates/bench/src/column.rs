//! A column of the matrix: a system loaded at one level (`epoll transport`,
//! `raw-tokio`, `epoll rpc`), and which pairs of columns the table compares.

use std::fmt;

use transport::IoMode;

use crate::run::Level;
use crate::workload::{SparkIo, System};

/// One system at one level: a column of the matrix table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Column {
    /// What runs.
    pub system: System,
    /// Which layer is loaded.
    pub level: Level,
}

impl Column {
    /// `system` at `level`.
    pub fn new(system: System, level: Level) -> Self {
        Self { system, level }
    }

    /// Whether `system` can run at `level`: the baselines (`raw-tokio`, Spark)
    /// and `io_uring-zc` have only the transport level.
    pub fn supported(system: System, level: Level) -> bool {
        level == Level::Transport || !(system.is_baseline() || system == System::UringZeroCopy)
    }

    /// The columns of a matrix, level by level, systems in the given order
    /// within each level, skipping unsupported pairs: `epoll,raw-tokio` ×
    /// `transport,rpc` gives `epoll transport`, `raw-tokio`, `epoll rpc`.
    pub fn matrix(systems: &[System], levels: &[Level]) -> Vec<Column> {
        let mut columns = Vec::new();
        for &level in levels {
            for &system in systems {
                let c = Column::new(system, level);
                if Self::supported(system, level) && !columns.contains(&c) {
                    columns.push(c);
                }
            }
        }
        columns
    }

    /// Whether this is a baseline column (`raw-tokio` or Spark, at the transport level).
    pub fn is_baseline(self) -> bool {
        self.system.is_baseline()
    }
}

impl fmt::Display for Column {
    /// `epoll transport`, `epoll rpc`; the baseline, with one level only, is just `raw-tokio`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_baseline() {
            write!(f, "{}", self.system)
        } else {
            write!(f, "{} {}", self.system, self.level)
        }
    }
}

/// A comparison the table shows as a ratio of median req/s: `over / under`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// The numerator's column.
    pub over: Column,
    /// The denominator's column.
    pub under: Column,
}

impl Comparison {
    /// The comparisons among `columns`, in this order, each listed only when
    /// both its columns are present:
    /// 1. each transport-level system over `raw-tokio` (`epoll / raw-tokio`:
    ///    what the transport costs against hand-written tokio);
    /// 2. `io_uring` over `epoll` at each level, then `io_uring-zc` over `epoll`;
    /// 3. each system's rpc levels over its transport level (`epoll rpc / transport`:
    ///    what the RPC layer costs), then its inline rpc over its MessageLoop rpc
    ///    (`epoll rpc / rpc-loop`: what the hand-off to a MessageLoop costs);
    /// 4. each of this project's columns, both levels, over `spark-epoll`, then
    ///    over `spark-nio` (how much faster than Spark's own transport).
    pub fn among(columns: &[Column]) -> Vec<Comparison> {
        let mut out = Vec::new();
        let mut push = |over: Column, under: Column| {
            if columns.contains(&over) && columns.contains(&under) {
                out.push(Comparison { over, under });
            }
        };
        let ours = || columns.iter().copied().filter(|c| !c.is_baseline());
        let raw = Column::new(System::RawTokio, Level::Transport);
        for over in ours().filter(|c| c.level == Level::Transport) {
            push(over, raw);
        }
        let (epoll, uring) = (
            System::Transport(IoMode::Epoll),
            System::Transport(IoMode::IoUring),
        );
        for level in [Level::Transport, Level::Rpc, Level::RpcLoop] {
            push(Column::new(uring, level), Column::new(epoll, level));
        }
        push(
            Column::new(System::UringZeroCopy, Level::Transport),
            Column::new(epoll, Level::Transport),
        );
        for over in ours().filter(|c| c.level.is_rpc()) {
            push(over, Column::new(over.system, Level::Transport));
        }
        for over in ours().filter(|c| c.level == Level::Rpc) {
            push(over, Column::new(over.system, Level::RpcLoop));
        }
        for io in [SparkIo::Epoll, SparkIo::Nio] {
            let spark = Column::new(System::Spark(io), Level::Transport);
            for over in ours() {
                push(over, spark);
            }
        }
        out
    }
}

impl fmt::Display for Comparison {
    /// `epoll / raw-tokio` for two systems at one level; `epoll rpc / transport` for one system at two levels.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (o, u) = (self.over, self.under);
        if o.system == u.system {
            write!(f, "{} {} / {}", o.system, o.level, u.level)
        } else if o.level == u.level && o.level == Level::Transport {
            write!(f, "{} / {}", o.system, u.system)
        } else {
            write!(f, "{o} / {u}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOLL: System = System::Transport(IoMode::Epoll);
    const URING: System = System::Transport(IoMode::IoUring);

    #[test]
    fn default_columns_are_transport_then_rpc_without_raw_tokio_rpc() {
        let cols = Column::matrix(&[EPOLL, System::RawTokio], &[Level::Transport, Level::Rpc]);
        let names: Vec<String> = cols.iter().map(Column::to_string).collect();
        assert_eq!(names, ["epoll transport", "raw-tokio", "epoll rpc"]);
        assert!(Column::matrix(&[System::RawTokio], &[Level::Rpc]).is_empty());
        assert_eq!(
            Column::matrix(&[EPOLL, EPOLL], &[Level::Rpc, Level::Rpc]),
            [Column::new(EPOLL, Level::Rpc)]
        );
        assert!(!Column::supported(System::RawTokio, Level::Rpc));
        assert!(Column::supported(EPOLL, Level::Rpc));
        assert!(!Column::supported(System::UringZeroCopy, Level::Rpc));
        let zc = Column::matrix(&[EPOLL, System::UringZeroCopy], &[Level::Transport, Level::Rpc]);
        let names: Vec<String> = zc.iter().map(Column::to_string).collect();
        assert_eq!(names, ["epoll transport", "io_uring-zc transport", "epoll rpc"]);
        let labels: Vec<String> = Comparison::among(&zc).iter().map(Comparison::to_string).collect();
        assert_eq!(labels, ["io_uring-zc / epoll", "epoll rpc / transport"]);
    }

    #[test]
    fn comparisons_are_against_the_baselines_across_backends_and_levels() {
        let spark = System::Spark(SparkIo::Epoll);
        let cols = Column::matrix(
            &[EPOLL, System::RawTokio, URING, spark, System::Spark(SparkIo::Nio)],
            &[Level::Transport, Level::Rpc],
        );
        assert!(
            !cols.contains(&Column::new(spark, Level::Rpc)),
            "Spark runs at the transport level only"
        );
        let labels: Vec<String> = Comparison::among(&cols)
            .iter()
            .map(Comparison::to_string)
            .collect();
        assert_eq!(
            labels,
            [
                "epoll / raw-tokio",
                "io_uring / raw-tokio",
                "io_uring / epoll",
                "io_uring rpc / epoll rpc",
                "epoll rpc / transport",
                "io_uring rpc / transport",
                "epoll / spark-epoll",
                "io_uring / spark-epoll",
                "epoll rpc / spark-epoll",
                "io_uring rpc / spark-epoll",
                "epoll / spark-nio",
                "io_uring / spark-nio",
                "epoll rpc / spark-nio",
                "io_uring rpc / spark-nio"
            ]
        );
        // No baseline: only rpc / transport; rpc alone: nothing to compare.
        let cols = Column::matrix(&[EPOLL], &[Level::Transport, Level::Rpc]);
        assert_eq!(Comparison::among(&cols).len(), 1);
        assert!(Comparison::among(&Column::matrix(&[EPOLL], &[Level::Rpc])).is_empty());
        let odd = Comparison {
            over: Column::new(URING, Level::Rpc),
            under: Column::new(EPOLL, Level::Transport),
        };
        assert_eq!(odd.to_string(), "io_uring rpc / epoll transport");
    }
}
