//! What a command prints: a table for people, JSON for scripts (`--json`).

use serde_json::Value;

/// A command's result: JSON always; a table and/or a line for the human form.
#[derive(Debug, Default)]
pub struct Output {
    pub json: Value,
    pub table: Option<Table>,
    pub message: Option<String>,
}

impl Output {
    pub fn render(&self, json: bool) -> String {
        if json {
            return format!(
                "{}\n",
                serde_json::to_string_pretty(&self.json).unwrap_or_default()
            );
        }
        let mut out = String::new();
        if let Some(message) = &self.message {
            out.push_str(message);
            out.push('\n');
        }
        if let Some(table) = &self.table {
            out.push_str(&table.render());
        }
        out
    }
}

#[derive(Debug, Default)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Columns padded to their widest cell, two spaces apart.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .chain(std::iter::once(self.headers[i].len()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| -> String {
            let mut s = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            s.truncate(s.trim_end().len());
            s.push('\n');
            s
        };
        let mut out = line(self.headers.clone());
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["TOPIC", "PARTITIONS"]);
        t.row(vec!["a-long-name".into(), "3".into()]);
        t.row(vec!["b".into(), "12".into()]);
        assert_eq!(
            t.render(),
            "TOPIC        PARTITIONS\na-long-name  3\nb            12\n"
        );
    }
}
