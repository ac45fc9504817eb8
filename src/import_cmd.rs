//! `archiver import`: taking over a Java appliance's PVs. Reads `PVTypeInfo` JSON documents
//! in the Java shape — a file holding one, a JSON array of them (what the Java appliance's
//! `exportConfig` answers), or a folder of such files (`*.json`) — and puts them in the
//! catalogue of `--data-dir`, as they are (paused flags, sampling, `dataStores` with their
//! Java URLs: a PV's stores are found by name among the configured ones, so the
//! `${ARCHAPPL_SHORT_TERM_FOLDER}` of a Java policy needs no rewriting).
//!
//! With `--retired`, every configured store is also walked for PVs whose files exist but
//! which have no `PVTypeInfo` (retired PVs); each gets one made from its files' header
//! (type, element count, and EGU, PREC and the limits of its `headers`), paused, so that retrieval serves it and the engine never
//! connects it. One header is read per PV and folder.
//!
//! Run it while no archiver uses the folder (it takes the folder's lock, as `serve` does).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use archiver_pb::{PbReader, Timestamp};
use archiver_registry::{PvTypeInfo, Registry, SamplingMethod, SqliteRegistry};
use archiver_storage::{Backend, DataStores};
use serde_json::Value;

use crate::config::FileConfig;
use crate::progress::{EVERY, Progress};

/// Arguments of `archiver import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// PVTypeInfo JSON files (one object, or an array as `exportConfig` writes) or folders
    /// of them (`*.json`).
    #[arg(value_name = "FILE_OR_FOLDER")]
    pub sources: Vec<PathBuf>,
    /// Configuration file (its `[storage]` stores are walked by `--retired`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The archiver's data folder (its catalogue); over `data_dir` of the config file and
    /// ARCHIVER_DATA_DIR, whose default is ./archiver-data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Replace PVs already in the catalogue (default: keep them and say so).
    #[arg(long)]
    pub replace: bool,
    /// Also register retired PVs: files in the stores with no PVTypeInfo.
    #[arg(long)]
    pub retired: bool,
}

/// The PVTypeInfo objects of one JSON document.
fn infos_of(doc: Value, from: &Path) -> Result<Vec<PvTypeInfo>> {
    let items = match doc {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => bail!(
            "{}: neither a PVTypeInfo object nor an array of them",
            from.display()
        ),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            PvTypeInfo::from_json_value(v)
                .with_context(|| format!("{}: PVTypeInfo #{i}", from.display()))
        })
        .collect()
}

fn read_sources(sources: &[PathBuf]) -> Result<Vec<PvTypeInfo>> {
    let mut files = Vec::new();
    for s in sources {
        if s.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(s)
                .with_context(|| format!("cannot list {}", s.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else {
            files.push(s.clone());
        }
    }
    let mut out = Vec::new();
    let mut progress = Progress::new("files read", Some(files.len() as u64), EVERY);
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let doc: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", f.display()))?;
        out.extend(infos_of(doc, &f)?);
        progress.add(1, &mut std::io::stderr());
    }
    Ok(out)
}

/// The PVs with files in `stores` and their first file's header, one header per PV and
/// folder (the files of one PV share the file name up to the chunk key's terminator).
fn files_by_pv(
    stores: &DataStores,
) -> Result<BTreeMap<String, (PathBuf, archiver_pb::PayloadInfo)>> {
    let mut out = BTreeMap::new();
    let mut progress = Progress::new("folders walked for retired PVs", None, EVERY);
    for tier in stores.tiers() {
        let mut seen = BTreeSet::new();
        let mut stack = vec![tier.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            progress.add(1, &mut std::io::stderr());
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Some(stem) = name.strip_suffix(".pb") else {
                    continue;
                };
                let key = stem.rfind(':').map_or(stem, |i| &stem[..i]);
                if !seen.insert(dir.join(key)) {
                    continue;
                }
                match PbReader::open(&p) {
                    Ok(r) => {
                        let h = r.header().clone();
                        out.entry(h.pv_name.clone()).or_insert((p, h));
                    }
                    Err(e) => eprintln!("skipping {}: {e}", p.display()),
                }
            }
        }
    }
    Ok(out)
}

/// Runs `archiver import`; prints what it did.
pub fn run(args: &ImportArgs) -> Result<()> {
    let file = FileConfig::layered(args.config.as_deref())?;
    let data_dir = file.data_dir(args.data_dir.as_deref())?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let _lock = crate::serve::lock_data_dir(&data_dir)?;
    let registry = SqliteRegistry::open(&data_dir.join("registry.sqlite"))
        .with_context(|| format!("cannot open the registry in {}", data_dir.display()))?;
    let started = std::time::Instant::now();
    if args.sources.is_empty() && !args.retired {
        bail!("nothing to import: give PVTypeInfo files or folders, or --retired");
    }
    let infos = read_sources(&args.sources)?;
    let mut known: BTreeSet<String> = registry.all_pv_names()?.into_iter().collect();
    let (mut put, mut kept) = (Vec::new(), 0usize);
    for info in infos {
        if known.contains(&info.pv_name) && !args.replace {
            eprintln!(
                "{} is already in the catalogue; kept (--replace to replace)",
                info.pv_name
            );
            kept += 1;
            continue;
        }
        known.insert(info.pv_name.clone());
        put.push(info);
    }
    registry.put_type_infos(&put)?;
    println!(
        "imported {} PVTypeInfos ({kept} already present, kept)",
        put.len()
    );
    let mut retired_count = 0;
    if args.retired {
        let stores = file.storage.data_stores(&data_dir, Backend::fs())?;
        let now = Timestamp::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)),
            0,
        );
        let mut retired = Vec::new();
        for (pv, (path, header)) in files_by_pv(&stores)? {
            if known.contains(&pv) {
                continue;
            }
            let count = header
                .element_count
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(1);
            let mut info = match PvTypeInfo::new_for_archiving(
                &pv,
                header.payload_type,
                count,
                SamplingMethod::Monitor,
                1.0,
                stores.urls(),
                now,
            ) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("skipping {} ({}): {e}", pv, path.display());
                    continue;
                }
            };
            // What the Java appliance recorded of the PV (EGU, PREC, limits), as a live
            // PV's type info holds it: retrieval's `meta` comes from it.
            info.set_from_headers(&header.headers);
            info.paused = true;
            retired.push(info);
        }
        registry.put_type_infos(&retired)?;
        println!(
            "registered {} retired PVs (files without a PVTypeInfo), paused",
            retired.len()
        );
        retired_count = retired.len();
    }
    println!(
        "import done in {:.1} s: {} PVs in the catalogue of {} ({} imported, {kept} kept, \
         {retired_count} retired registered)",
        started.elapsed().as_secs_f64(),
        known.len() + retired_count,
        data_dir.display(),
        put.len(),
    );
    Ok(())
}
