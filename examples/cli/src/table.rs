//! Plain-text tables with aligned columns.

use std::fmt::Write as _;

use crate::terminal;

/// A table: a header and rows of cells.
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Cells are escaped as [`terminal::escape`] does.
    escape: bool,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            escape: false,
        }
    }

    /// A table whose cells are escaped when `on` (for a terminal: cells may hold
    /// device-controlled text, such as error messages; see [`terminal`]).
    pub(crate) fn escaped(mut self, on: bool) -> Self {
        self.escape = on;
        self
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        let cells = if self.escape {
            cells
                .into_iter()
                .map(|c| terminal::escape(&c).into_owned())
                .collect()
        } else {
            cells
        };
        self.rows.push(cells);
    }

    /// The table as text, one line per row, columns separated by two spaces.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let width = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<width$}");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let mut t = Table::new(&["id", "name"]);
        t.row(vec!["1".into(), "core-sw-01".into()]);
        t.row(vec!["10".into(), "r".into()]);
        assert_eq!(t.render(), "id  name\n1   core-sw-01\n10  r\n");
    }

    #[test]
    fn an_escaped_table_escapes_its_cells_and_aligns_what_it_shows() {
        let cells = || vec!["1".to_owned(), "e\x1b[2J\u{9b}".to_owned()];
        let mut t = Table::new(&["id", "error"]).escaped(true);
        t.row(cells());
        assert_eq!(t.render(), "id  error\n1   e\\x1b[2J\\u{9b}\n");
        let mut raw = Table::new(&["id", "error"]);
        raw.row(cells());
        assert!(raw.render().contains('\x1b'));
    }
}
