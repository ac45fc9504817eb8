//! The configured data stores ([`DataStores`]) as the plan's [`StoreResolver`].
//!
//! A `dataStores` URL names a store by its `name` parameter (the store's identity in Java):
//! `pb://localhost?name=MTS&rootFolder=/elsewhere&...` is read from this appliance's MTS,
//! wherever the URL says the folder is, so a type info imported from another host, or
//! written with a `${VAR}` placeholder, reads the local folders, and a catalogue entry can
//! never make the server read elsewhere ([`DataStores::resolve`]). A URL that does not
//! parse or names no configured store is an error here; [`crate::plan()`] then reads the
//! default stores instead (and logs it once).
//!
//! The default stores are every configured store, oldest data first (LTS, MTS, STS): what
//! a new PV's `PVTypeInfo.dataStores` lists, in reading order. A PV not yet in the
//! catalogue has its data in the first (the STS, where the engine writes); listing the
//! others costs one folder listing each and finds data a move between tiers put there.

use archiver_storage::{DataStores, Tier};

use crate::plan::{StoreResolver, StoreUrlError};

impl StoreResolver for DataStores {
    fn resolve(&self, url: &str) -> Result<Tier, StoreUrlError> {
        match DataStores::resolve(self, std::slice::from_ref(&url)) {
            Ok(mut tiers) => tiers.pop().ok_or_else(|| StoreUrlError(url.to_string())),
            Err(e) => Err(StoreUrlError(e.to_string())),
        }
    }

    fn default_stores(&self) -> Vec<Tier> {
        self.tiers().iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::Granularity;

    fn stores() -> DataStores {
        DataStores::from_tiers([
            Tier::new("STS", "/a/sts", Granularity::Hour),
            Tier::new("MTS", "/a/mts", Granularity::Day),
            Tier::new("LTS", "/a/lts", Granularity::Year),
        ])
        .expect("stores")
    }

    fn url(name: &str, root: &str) -> String {
        format!("pb://localhost?name={name}&rootFolder={root}&partitionGranularity=PARTITION_DAY")
    }

    #[test]
    fn urls_resolve_by_store_name_to_the_local_folders() {
        let s = stores();
        let tier = StoreResolver::resolve(&s, &url("MTS", "/elsewhere")).expect("mts");
        assert_eq!(tier.name(), "MTS");
        assert_eq!(tier.root(), std::path::Path::new("/a/mts"));
        let tier =
            StoreResolver::resolve(&s, &url("LTS", "${ARCHAPPL_LONG_TERM_FOLDER}")).expect("lts");
        assert_eq!(tier.root(), std::path::Path::new("/a/lts"));
        // Names are exact; a URL that does not parse names nothing.
        for bad in [
            url("lts", "/a"),
            url("XSTS", "/a/sts"),
            "pb://localhost?name=STS".into(),
        ] {
            let e = StoreResolver::resolve(&s, &bad).expect_err("no store");
            assert!(!e.0.is_empty(), "{bad}");
        }
        let e = StoreResolver::resolve(&s, &url("XSTS", "/a/sts")).expect_err("unknown");
        assert!(e.0.contains("XSTS"), "{e}");
    }

    #[test]
    fn the_default_stores_are_every_store_oldest_data_first() {
        let names: Vec<String> = stores()
            .default_stores()
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        assert_eq!(names, ["LTS", "MTS", "STS"]);
    }
}
