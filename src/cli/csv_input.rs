//! Files the operator names on the command line: device CSVs for `device
//! import` and campaign targets, firmware images.

use std::path::Path;

use anyhow::{anyhow, bail, Context};

use super::output::escape;
use crate::ota::devices::{validate, NewDevice};

/// Opens a file the operator named, with a message that says what is wrong
/// (missing, a directory, unreadable) instead of failing later as a read
/// or network error.
pub fn open_file(path: &Path, what: &str) -> anyhow::Result<std::fs::File> {
    let shown = escape(&path.display().to_string());
    let meta = std::fs::metadata(path).with_context(|| format!("cannot open {what} {shown}"))?;
    if meta.is_dir() {
        bail!("{shown} is a directory; give the path of a {what}");
    }
    std::fs::File::open(path).with_context(|| format!("cannot open {what} {shown}"))
}

/// A CSV reader that takes an optional header row and ragged lines (so
/// each line's problem can be reported by number).
fn csv_reader(path: &Path) -> anyhow::Result<csv::Reader<std::fs::File>> {
    let file = open_file(path, "CSV file")?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(file))
}

/// Whether the first cell of a first row is a column title rather than a
/// device: `name`, `Device`, `DeviceName`, `device_name`, `Endpoint`, ...
/// (case, spaces, `_` and `-` ignored).
pub fn is_header(first_cell: &str) -> bool {
    let key: String = first_cell
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '#'))
        .flat_map(char::to_lowercase)
        .collect();
    matches!(
        key.as_str(),
        "name"
            | "names"
            | "device"
            | "devices"
            | "devicename"
            | "devicenames"
            | "deviceid"
            | "endpoint"
            | "endpointname"
    )
}

fn line_of(record: &Result<csv::StringRecord, csv::Error>, index: usize) -> u64 {
    record
        .as_ref()
        .ok()
        .and_then(|r| r.position())
        .map(|p| p.line())
        .unwrap_or(index as u64 + 1)
}

/// Reads `name,product[,version]` rows (a header row is optional). Every
/// bad line is reported with its line number; any bad line means nothing
/// is imported.
pub fn read_devices_csv(path: &Path) -> anyhow::Result<Vec<NewDevice>> {
    let mut reader = csv_reader(path)?;
    let shown = escape(&path.display().to_string());
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    let mut first = true;
    for (i, record) in reader.records().enumerate() {
        let line = line_of(&record, i);
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("line {line}: {}", escape(&e.to_string())));
                continue;
            }
        };
        if record.iter().all(str::is_empty) {
            continue;
        }
        if std::mem::take(&mut first) && record.get(0).is_some_and(is_header) {
            continue;
        }
        if record.len() < 2 || record.len() > 3 {
            errors.push(format!(
                "line {line}: expected name,product[,version], got {} fields",
                record.len()
            ));
            continue;
        }
        let device = NewDevice {
            name: record[0].to_string(),
            product: record[1].to_string(),
            version: record.get(2).filter(|v| !v.is_empty()).map(str::to_string),
        };
        match validate(&device) {
            Ok(()) => devices.push(device),
            Err(m) => errors.push(format!("line {line}: {}", escape(&m))),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("{shown}: {e}");
        }
        return Err(anyhow!(
            "{} bad line(s) in {shown} (first: {}); nothing imported",
            errors.len(),
            errors[0]
        ));
    }
    if devices.is_empty() {
        return Err(anyhow!("{shown} lists no devices"));
    }
    Ok(devices)
}

/// Reads device names from the first column of a CSV file, for campaign
/// targets. A first row whose first cell is a column title (see
/// [`is_header`]) is not a device.
pub fn read_device_names(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut reader = csv_reader(path)?;
    let shown = escape(&path.display().to_string());
    let mut names = Vec::new();
    let mut first = true;
    for (i, record) in reader.records().enumerate() {
        let line = line_of(&record, i);
        let record = record.with_context(|| format!("{shown} line {line}"))?;
        let name = record.get(0).unwrap_or_default();
        if name.is_empty() {
            continue;
        }
        if std::mem::take(&mut first) && is_header(name) {
            continue;
        }
        if !crate::ota::valid_device_name(name) {
            return Err(anyhow!(
                "{shown} line {line}: {} is not a valid device name",
                escape(&format!("{name:?}"))
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_words_are_recognised() {
        for h in [
            "name",
            "Name",
            "DeviceName",
            "device_name",
            "Device Name",
            "device",
            "DEVICES",
            "endpoint",
        ] {
            assert!(is_header(h), "{h}");
        }
        for d in ["d1", "meter-0001", "sensor", "named"] {
            assert!(!is_header(d), "{d}");
        }
    }

    #[test]
    fn names_skip_a_header_only_on_the_first_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "DeviceName,Product\nd1,p\n\nd2,p\n").unwrap();
        assert_eq!(read_device_names(&path).unwrap(), ["d1", "d2"]);
        std::fs::write(&path, "d1\nname\n").unwrap();
        assert_eq!(read_device_names(&path).unwrap(), ["d1", "name"]);
        let err = read_device_names(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
}
