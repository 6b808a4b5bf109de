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

/// A device's DTLS credential from an import file (the key as hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvCredential {
    pub device: String,
    pub identity: String,
    pub key: String,
}

/// Reads `name,product[,version]` rows (a header row is optional), and
/// `name,product,version,identity,key` rows (version may be empty) with the
/// device's DTLS-PSK identity and hex key. Every bad line is reported with
/// its line number (never with its key); any bad line means nothing is
/// imported.
pub fn read_devices_csv_with_keys(
    path: &Path,
) -> anyhow::Result<(Vec<NewDevice>, Vec<CsvCredential>)> {
    let mut credentials = Vec::new();
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
        if !matches!(record.len(), 2 | 3 | 5) {
            errors.push(format!(
                "line {line}: expected name,product[,version[,identity,key]], got {} fields",
                record.len()
            ));
            continue;
        }
        if record.len() == 5 {
            let (identity, key) = (record[3].to_string(), record[4].to_string());
            if !crate::dtls::keys::valid_identity(&identity) {
                errors.push(format!(
                    "line {line}: identity must be 1-128 printable ASCII characters"
                ));
                continue;
            }
            // Never echo the key: only say what is wrong with it.
            if let Err(m) = crate::dtls::keys::parse_key(&key) {
                errors.push(format!("line {line}: {m}"));
                continue;
            }
            credentials.push(CsvCredential {
                device: record[0].to_string(),
                identity,
                key,
            });
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
    Ok((devices, credentials))
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
    fn device_rows_may_carry_a_psk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(
            &path,
            "name,product,version,identity,key\nd1,p,,id1,00112233\nd2,p,1.0\n",
        )
        .unwrap();
        let (devices, creds) = read_devices_csv_with_keys(&path).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].version, None);
        assert_eq!(
            creds,
            [CsvCredential {
                device: "d1".into(),
                identity: "id1".into(),
                key: "00112233".into()
            }]
        );
        std::fs::write(&path, "d1,p,,id1,zz\n").unwrap();
        let err = read_devices_csv_with_keys(&path).unwrap_err().to_string();
        assert!(err.contains("hexadecimal") && !err.contains("zz"), "{err}");
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
