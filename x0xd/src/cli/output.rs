//! Readable output: a table for a list of records, `key: value` lines for a record.

use serde_json::Value;

/// Renders a daemon answer for people (the `ok` field is implied by success).
pub fn render(v: &Value) -> String {
    let Value::Object(map) = v else {
        return scalar(v);
    };
    let fields: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.as_str() != "ok").collect();
    // One list of records, maybe beside a few scalars: a table under the scalars.
    let mut out = String::new();
    let mut tables = Vec::new();
    for (k, val) in &fields {
        match val {
            Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
                tables.push((k, items));
            }
            Value::Object(_) => {
                out.push_str(&format!("{k}:\n"));
                for line in render(val).lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
            _ => out.push_str(&format!("{k}: {}\n", scalar(val))),
        }
    }
    for (k, items) in tables {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("{k} ({}):\n", items.len()));
        out.push_str(&table(items));
    }
    out
}

/// A value on one line: strings bare, lists comma-separated, objects as JSON.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        Value::Array(a) if a.is_empty() => "(none)".to_string(),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A text table of records, one column per field (in the JSON object's key order).
fn table(items: &[Value]) -> String {
    let mut cols: Vec<String> = Vec::new();
    for it in items {
        if let Value::Object(m) = it {
            for k in m.keys() {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| {
            cols.iter()
                .map(|c| it.get(c).map_or_else(String::new, scalar))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
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
    let mut out = line(&cols.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>());
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_become_a_table_and_scalars_lines() {
        let v = json!({"ok": true, "count": 2, "peers": [{"id": "aa", "addr": "x"}, {"id": "bbb", "addr": null}]});
        let s = render(&v);
        assert!(s.contains("count: 2"), "{s}");
        assert!(s.contains("ADDR  ID\n"), "{s}");
        assert!(s.contains("-     bbb\n"), "{s}");
        assert!(!s.contains("ok"), "{s}");
    }
}
