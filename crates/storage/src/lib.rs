/*!
Storage tiers: folders of PlainPB partition files, one file per PV and partition.

A [`Tier`] (the Java appliance's `PlainPBStoragePlugin`: STS, MTS, LTS) has a name, a root
folder and a partition granularity. It maps a PV to its files
(`<root>/<chunk key><partition>.pb`), appends batches of samples to the right partitions, lists
the partitions of a PV from the folder (as Java does, so a Java appliance's data folders are
read as they are) and runs queries: the samples of `[from, to]`, preceded by the last sample at
or before `from` (the Java retrieval rule that lets a slowly changing PV show a value).

The tier is blocking I/O; async callers use `spawn_blocking`. Moving data between tiers (ETL)
comes later and will build on [`Tier::partitions`].
*/
#![deny(missing_docs)]

mod error;
mod query;
mod tier;

pub use crate::error::StorageError;
pub use crate::query::TierQuery;
pub use crate::tier::{Partition, Tier};
