//! Prints a meta.k8s.io/v1 Table the way `kubectl get` does: upper-case headers,
//! columns padded to the widest cell, priority>0 columns left out.

use serde_json::Value;

pub fn render(table: &Value, with_namespace: bool) -> String {
    let columns: Vec<(usize, String)> = table
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .enumerate()
                .filter(|(_, c)| c.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
                .map(|(i, c)| {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                    (i, name.to_uppercase())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut header: Vec<String> = Vec::new();
    if with_namespace {
        header.push("NAMESPACE".into());
    }
    header.extend(columns.iter().map(|(_, n)| n.clone()));
    let mut rows = vec![header];
    for row in table
        .get("rows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let cells = row.get("cells").and_then(Value::as_array);
        let mut line = Vec::new();
        if with_namespace {
            let ns = row
                .pointer("/object/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            line.push(ns.to_string());
        }
        for (i, _) in &columns {
            let cell = cells.and_then(|c| c.get(*i)).unwrap_or(&Value::Null);
            line.push(cell_text(cell));
        }
        rows.push(line);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 3;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => "<none>".into(),
        Value::String(s) if s.is_empty() => "<none>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pads_columns_and_hides_wide_ones() {
        let table = json!({
            "columnDefinitions": [
                {"name": "Name", "type": "string", "priority": 0},
                {"name": "Secret Ref", "type": "string", "priority": 0},
                {"name": "Hidden", "type": "string", "priority": 1}
            ],
            "rows": [
                {"cells": ["test-client", "idporten-secret", "x"], "object": {"metadata": {"namespace": "ns"}}},
                {"cells": ["b", null, "y"], "object": {"metadata": {"namespace": "other"}}}
            ]
        });
        let text = render(&table, true);
        assert_eq!(
            text,
            "NAMESPACE   NAME          SECRET REF\n\
             ns          test-client   idporten-secret\n\
             other       b             <none>\n"
        );
    }
}
