//! `archiver pb`: print or check PlainPB files (ours or the Java appliance's).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use archiver_pb::{FieldValue, LineDecoder, PayloadInfo, PbReader, Sample, Timestamp, Value};
use serde_json::json;

/// Arguments of `archiver pb`: files to print or check, or the `generate` subcommand.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PbArgs {
    /// `archiver pb generate ...` (a file literally named `generate` is `./generate`).
    #[command(subcommand)]
    pub command: Option<PbCommand>,
    /// Print each file as one JSON document instead of text lines.
    #[arg(long, conflicts_with = "check")]
    pub json: bool,
    /// Verify each file (header, decodable lines, increasing times, one year) and exit
    /// non-zero with a message at the first problem.
    #[arg(long)]
    pub check: bool,
    /// The .pb files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Subcommands of `archiver pb`.
#[derive(Debug, clap::Subcommand)]
pub enum PbCommand {
    /// Write synthetic data (N PVs × rate × duration) as PlainPB into a data store.
    Generate(crate::pb_generate::GenerateArgs),
}

/// Runs `archiver pb`; returns the process exit code.
pub fn run(args: &PbArgs) -> Result<i32> {
    if let Some(PbCommand::Generate(g)) = &args.command {
        return crate::pb_generate::run(g);
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut code = 0;
    for path in &args.files {
        if args.check {
            match check_file(path)? {
                Ok(summary) => writeln!(out, "{}: OK, {summary}", path.display())?,
                Err(problem) => {
                    out.flush()?;
                    eprintln!("{}: {problem}", path.display());
                    code = 1;
                    break;
                }
            }
        } else if args.json {
            print_json(path, &mut out)?;
        } else {
            print_text(path, &mut out)?;
        }
    }
    out.flush()?;
    Ok(code)
}

fn open(path: &Path) -> Result<PbReader<std::fs::File>> {
    PbReader::open(path).with_context(|| format!("{}: cannot read as PlainPB", path.display()))
}

fn print_text(path: &Path, out: &mut impl Write) -> Result<()> {
    let mut r = open(path)?;
    let h = r.header().clone();
    writeln!(out, "# file {}", path.display())?;
    write!(
        out,
        "# pv {} type {} ({}) year {}",
        h.pv_name,
        h.payload_type,
        h.payload_type.number(),
        h.year
    )?;
    if let Some(c) = h.element_count {
        write!(out, " elementCount {c}")?;
    }
    writeln!(out)?;
    for f in &h.headers {
        writeln!(out, "# header {}={}", f.name, f.val)?;
    }
    let mut n = 0u64;
    while let Some(s) = r.next_sample()? {
        n += 1;
        write!(out, "{}\t", s.time)?;
        write_value_text(&s.value, out)?;
        write!(out, "\tseverity={}\tstatus={}", s.severity, s.status)?;
        for f in &s.field_values {
            write!(out, "\t{}={}", f.name, f.val)?;
        }
        if let Some(c) = s.field_actual_change {
            write!(out, "\tfieldactualchange={c}")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "# {n} samples, {} undecodable lines skipped{}",
        r.skipped_lines(),
        if r.torn_tail() {
            ", file ends inside a line"
        } else {
            ""
        }
    )?;
    Ok(())
}

fn write_value_text(v: &Value, out: &mut impl Write) -> io::Result<()> {
    fn list<T: std::fmt::Display>(v: &[T], out: &mut impl Write) -> io::Result<()> {
        write!(out, "[")?;
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                write!(out, ",")?;
            }
            write!(out, "{x}")?;
        }
        write!(out, "]")
    }
    match v {
        Value::ScalarString(s) => write!(out, "{s:?}"),
        Value::ScalarShort(x) | Value::ScalarEnum(x) => write!(out, "{x}"),
        Value::ScalarFloat(x) => write!(out, "{x}"),
        Value::ScalarByte(x) => write!(out, "{x}"),
        Value::ScalarInt(x) => write!(out, "{x}"),
        Value::ScalarDouble(x) => write!(out, "{x}"),
        Value::VectorString(v) => {
            let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            list(&quoted, out)
        }
        Value::VectorShort(v) | Value::VectorEnum(v) => list(v, out),
        Value::VectorFloat(v) => list(v, out),
        Value::VectorChar(v) => list(v, out),
        Value::VectorInt(v) => list(v, out),
        Value::VectorDouble(v) => list(v, out),
        Value::V4GenericBytes(v) => write!(out, "0x{}", hex(v)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON number for a finite float, else the strings `NaN`, `Infinity`, `-Infinity`
/// (JSON has no such numbers; the Java appliance emits invalid JSON here).
fn json_f64(x: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => serde_json::Value::Number(n),
        None if x.is_nan() => json!("NaN"),
        None if x > 0.0 => json!("Infinity"),
        None => json!("-Infinity"),
    }
}

/// An f32 printed with its own shortest digits (0.1, not 0.10000000149011612).
fn json_f32(x: f32) -> serde_json::Value {
    if x.is_finite() {
        json_f64(x.to_string().parse().unwrap_or(f64::from(x)))
    } else {
        json_f64(f64::from(x))
    }
}

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::ScalarString(s) => json!(s),
        Value::ScalarShort(x) | Value::ScalarEnum(x) => json!(x),
        Value::ScalarFloat(x) => json_f32(*x),
        Value::ScalarByte(x) => json!(x),
        Value::ScalarInt(x) => json!(x),
        Value::ScalarDouble(x) => json_f64(*x),
        Value::VectorString(v) => json!(v),
        Value::VectorShort(v) | Value::VectorEnum(v) => json!(v),
        Value::VectorFloat(v) => v.iter().map(|x| json_f32(*x)).collect(),
        Value::VectorChar(v) => json!(v),
        Value::VectorInt(v) => json!(v),
        Value::VectorDouble(v) => v.iter().map(|x| json_f64(*x)).collect(),
        Value::V4GenericBytes(v) => json!(hex(v)),
    }
}

fn fields_json(fields: &[FieldValue]) -> serde_json::Value {
    fields
        .iter()
        .map(|f| (f.name.clone(), json!(f.val)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn header_json(h: &PayloadInfo) -> serde_json::Value {
    let mut o = json!({
        "type": h.payload_type.number(),
        "typeName": h.payload_type.name(),
        "pvName": h.pv_name,
        "year": h.year,
    });
    if let Some(c) = h.element_count {
        o["elementCount"] = json!(c);
    }
    o["headers"] = fields_json(&h.headers);
    o
}

fn sample_json(s: &Sample) -> serde_json::Value {
    let mut o = json!({
        "time": s.time.to_string(),
        "secs": s.time.secs,
        "nanos": s.time.nanos,
        "val": value_json(&s.value),
        "severity": s.severity,
        "status": s.status,
    });
    if !s.field_values.is_empty() {
        o["fields"] = fields_json(&s.field_values);
    }
    if let Some(c) = s.field_actual_change {
        o["fieldActualChange"] = json!(c);
    }
    if let Some(r) = s.repeat_count {
        o["repeatCount"] = json!(r);
    }
    if let Some(t) = s.user_tag {
        o["userTag"] = json!(t);
    }
    o
}

/// One JSON document per file, streamed: samples are written as they are read.
fn print_json(path: &Path, out: &mut impl Write) -> Result<()> {
    let mut r = open(path)?;
    write!(
        out,
        "{{\"file\":{},\"header\":{},\"samples\":[",
        json!(path.display().to_string()),
        header_json(r.header())
    )?;
    let mut first = true;
    while let Some(s) = r.next_sample()? {
        out.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        serde_json::to_writer(&mut *out, &sample_json(s))?;
    }
    writeln!(
        out,
        "\n],\"skippedLines\":{},\"tornTail\":{}}}",
        r.skipped_lines(),
        r.torn_tail()
    )?;
    Ok(())
}

/// `Ok(Ok(summary))` for a good file, `Ok(Err(problem))` for the first problem found.
fn check_file(path: &Path) -> Result<std::result::Result<String, String>> {
    let mut r = match PbReader::open(path) {
        Ok(r) => r,
        Err(archiver_pb::ReadError::Io(e)) => {
            bail!("{}: cannot read: {e}", path.display())
        }
        Err(e) => return Ok(Err(format!("line 1 (byte offset 0): {e}"))),
    };
    let header = r.header().clone();
    let mut decoder = LineDecoder::for_header(&header);
    let mut sample = Sample::new(Timestamp::default(), Value::zero(header.payload_type));
    let mut last: Option<Timestamp> = None;
    let mut line_no = 1u64;
    let mut count = 0u64;
    let mut end = r.header_len(); // where the next line starts
    while let Some(line) = r.next_line()? {
        line_no += 1;
        end = line.offset + line.bytes.len() as u64 + 1;
        let at = format!("line {line_no} (byte offset {})", line.offset);
        if let Err(e) = decoder.decode(line.bytes, &mut sample) {
            return Ok(Err(format!("{at}: sample does not decode: {e}")));
        }
        if sample.time.year() != header.year {
            return Ok(Err(format!(
                "{at}: sample time {} is not in the header's year {}",
                sample.time, header.year
            )));
        }
        if let Some(prev) = last.filter(|prev| sample.time <= *prev) {
            return Ok(Err(format!(
                "{at}: sample time {} is not after the previous sample's {prev}",
                sample.time
            )));
        }
        last = Some(sample.time);
        count += 1;
    }
    if r.torn_tail() {
        return Ok(Err(format!(
            "line {} (byte offset {end}): file ends inside a line (torn last write)",
            line_no + 1
        )));
    }
    Ok(Ok(format!(
        "{count} samples, pv {}, type {}, year {}",
        header.pv_name, header.payload_type, header.year
    )))
}
