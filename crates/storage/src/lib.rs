/*!
Storage tiers: folders of PlainPB partition files, one file per PV and partition, read and
written through a storage backend.

# Brief overview

* [`Tier`] — a store (the Java appliance's `PlainPBStoragePlugin`: STS, MTS, LTS) with a
  name, a root folder and a partition granularity. It maps a PV to its files
  (`<root>/<chunk key><partition>.pb`), appends batches of samples (or already encoded
  lines) to the right partitions, lists the partitions of a PV from the folder (as Java
  does, so a Java appliance's data folders are read as they are), runs queries
  ([`TierQuery`]: the samples of `[from, to]`, preceded by the last sample at or before
  `from`, the Java retrieval rule that lets a slowly changing PV show a value), removes a
  PV's files and replaces a partition file atomically.
* [`StoreUrl`] — a parsed data store URL
  (`pb://localhost?name=STS&rootFolder=...&partitionGranularity=PARTITION_HOUR`, with the
  ETL parameters `hold`, `gather`, `consolidateOnShutdown`, `pp`, `reducedata`... kept);
  [`Tier::from_url`] builds a tier from one, [`Tier::url`] writes it back.
* [`DataStores`] — the configured tiers by name, built from URLs, so that the number of
  tiers comes from configuration; [`DataStores::resolve`] maps a PV's `dataStores` to them.
* [`StorageBackend`] — every file and folder operation (open, append, read, set length,
  sync, rename, remove, list, create a folder, sync a folder); [`FsBackend`] is the real
  filesystem, [`testing::SimBackend`] an in-memory one that injects errors, `ENOSPC`,
  short writes and crashes for tests. The per-file half is [`archiver_pb::FileIo`], so the
  PlainPB writer and reader run over any backend.
* [`Backend`] — a backend plus its table of per-PV write locks ([`PvLock`]): every
  append, rewrite and removal of a PV, in whichever tier built on that backend, takes the
  PV's lock, so the engine's writer and an ETL job serialize on it. Sharded and without a
  global lock; an entry lives only while its lock is held or awaited (see [`locks`]).

* [`journal`] — the write-ahead journal's files: segments of CRC-checked frames of the
  samples the engine buffers, [`journal::replay`] into the short-term store at start-up.

The tier is blocking I/O; async callers use `spawn_blocking`.

# Durability: when a write is durable

* **Appends** (the engine's writer, once per PV per write period; later ETL into a tier)
  follow the tier's [`SyncPolicy`]:
  * [`SyncPolicy::OsWriteback`] (the default; the Java appliance's behaviour): nothing is
    synced. An append that returned `Ok` is in the kernel: it survives a crash of the
    process at once, and a power loss or kernel crash once the kernel has written it back
    (Linux: dirty data older than `vm.dirty_expire_centisecs`, 30 s by default, goes out
    at the next writeback, every 5 s). The right choice for an STS on a RAM disk, and for
    tens of thousands of PVs on a disk where one `fdatasync` per file per write period
    would cost more than the writing (see "Measured cost").
  * [`SyncPolicy::EachWrite`]: each append call ends with `fdatasync` of every file it
    wrote, so `Ok` means durable ("synced at the end of each write period, per file");
    a file or folder it creates has its folder synced right after the creation, so the
    new name is as durable as the data.
* **A failed append** (an I/O error, `ENOSPC`, a short write) leaves every file as it was:
  the writer truncates a partial write back, and the tier rolls back the partitions the
  same call had already written. The caller keeps the batch and retries it whole (the
  engine's writer does), and since a file refuses samples not newer than its last one,
  nothing is ever stored twice.
* **After a crash** a file holds a prefix of what was appended to it, in order, each
  sample once, possibly followed by a torn line: readers never return a torn line, and the
  next append cuts it off ([`archiver_pb::PbWriter`] repair on open). A file without a
  complete header (a crash while creating it) reads as empty and is started afresh by the
  next append.
* **Rewrites** ([`Tier::replace_partition_locked`]) always sync, whatever the policy, by
  the rename protocol: the new contents go to `<file>.rewrite`, which is synced and renamed
  over the file, then the folder is synced; a crash leaves the old file or the new one,
  whole.
* **Removals** ([`Tier::remove_pv_data`]) sync the folder under `EachWrite`; under
  `OsWriteback` a power loss may bring removed files back (data asked to be removed,
  never data lost).

# Measured cost

`benches/sync_cost.rs` (`cargo bench -p archiver-storage --bench sync_cost`): one write
period of the engine's writer, `append_lines` of 10 scalar samples to each of 2,000 PVs'
hourly files, ext4 on the development VM's virtual disk, shared with other builds (three
runs, median of 9 periods each):

| | a period, files existing | the period that creates the files |
|---|---|---|
| `OsWriteback` | 5.8–6.9 µs per PV (12–14 ms) | 15–21 µs per PV |
| `EachWrite` | 230–300 µs per PV (0.45–0.6 s), worst periods 2.4–3 ms per PV | 0.7–5 ms per PV |
| `PbWriter::open` + `append_lines`, before the backend existed | 5.4–6.7 µs per PV | |

The backend and the PV lock cost nothing measurable; `fdatasync` costs 40–50 times the
write. For 10,000 PVs and a 10 s write period, `EachWrite` would spend 2–3 s of every
period (and whole periods at the worst) syncing, on the writer's one thread: hence the
default. Choose `EachWrite` for a store whose every acknowledged sample must survive a
power loss and whose PV count and disk allow it.

# Example

```
use archiver_storage::{Backend, DataStores};
use archiver_pb::{PayloadType, Sample, Timestamp, Value};

let dir = tempfile::tempdir()?;
let root = dir.path().display();
let stores = DataStores::from_urls(
    [
        format!("pb://localhost?name=STS&rootFolder={root}/sts&partitionGranularity=PARTITION_HOUR"),
        format!("pb://localhost?name=LTS&rootFolder={root}/lts&partitionGranularity=PARTITION_YEAR"),
    ],
    Backend::fs(),
)?;
// A PV's dataStores (from its PVTypeInfo) resolve by store name.
let tiers = stores.resolve(&["pb://localhost?name=STS&rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}&partitionGranularity=PARTITION_HOUR"])?;
let t = Timestamp::new(1_700_000_000, 0);
let counts = tiers[0].append("A:B", PayloadType::ScalarDouble, &[Sample::new(t, Value::ScalarDouble(1.5))])?;
assert_eq!(counts.written, 1);
assert_eq!(tiers[0].last_time("A:B")?, Some(t));
assert_eq!(stores.remove_pv_data("A:B")?, 1);
# Ok::<(), Box<dyn std::error::Error>>(())
```
*/
#![deny(missing_docs)]

mod backend;
mod error;
pub mod etl;
mod faults;
mod index;
pub mod journal;
pub mod locks;
mod query;
mod stores;
pub mod testing;
mod tier;
mod url;

pub use crate::backend::{
    Backend, BackendCounters, DirEntry, DirStamp, FsBackend, OpenMode, StorageBackend,
};
pub use crate::error::StorageError;
pub use crate::etl::{
    ChainStore, Etl, EtlCounts, EtlMode, EtlPv, NamedFlags, OutOfSpacePolicy, Reducer,
};
pub use crate::faults::{LastWriteError, StoreWriteFailures, WriteFailureReason};
pub use crate::locks::{PvLock, PvLocks};
pub use crate::query::TierQuery;
pub use crate::stores::DataStores;
pub use crate::tier::{DeleteCounts, DiskUsage, Partition, SyncPolicy, Tier};
pub use crate::url::{StoreUrl, UrlError, blackhole_name, blackhole_url};
