//! The configured data stores: any number of tiers, built from `pb://` URLs in the
//! configuration, sharing one backend (and so one PV write lock per PV across them), and
//! optionally a last `blackhole://` store, the ETL destination that discards (retention).

use crate::backend::Backend;
use crate::error::StorageError;
use crate::locks::PvLock;
use crate::tier::{DeleteCounts, DiskUsage, SyncPolicy, Tier};
use crate::url::{StoreUrl, blackhole_name, blackhole_url};
use archiver_pb::Timestamp;

/// The tiers of this appliance, by name, in configuration order (STS, MTS, LTS...).
#[derive(Debug, Clone)]
pub struct DataStores {
    backend: Backend,
    tiers: Vec<Tier>,
    blackhole: Option<String>,
}

impl DataStores {
    /// No tiers yet, over `backend`.
    pub fn new(backend: Backend) -> Self {
        DataStores {
            backend,
            tiers: Vec::new(),
            blackhole: None,
        }
    }

    /// The tiers of `urls` (see [`Tier::from_url`]), in order, over `backend`; a
    /// `blackhole://` URL (see [`DataStores::set_blackhole`]) may come last. A bad URL, two
    /// stores of one name or a store after the blackhole are errors naming it.
    pub fn from_urls<I, S>(urls: I, backend: Backend) -> Result<Self, StorageError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut stores = DataStores::new(backend);
        for url in urls {
            if let Some(name) = blackhole_name(url.as_ref()) {
                stores.set_blackhole(name)?;
                continue;
            }
            let tier = Tier::from_url(url.as_ref(), &stores.backend)?;
            stores.add(tier)?;
        }
        Ok(stores)
    }

    /// The tiers of `tiers`, in order, over the backend of the first (so tiers built on one
    /// backend keep sharing its PV locks; a tier on another backend is moved to it, see
    /// [`DataStores::add`]). No tiers: the real filesystem. Refuses two tiers of one name.
    pub fn from_tiers(tiers: impl IntoIterator<Item = Tier>) -> Result<Self, StorageError> {
        let mut tiers = tiers.into_iter().peekable();
        let backend = tiers
            .peek()
            .map_or_else(Backend::fs, |t| t.backend().clone());
        let mut stores = DataStores::new(backend);
        for tier in tiers {
            stores.add(tier)?;
        }
        Ok(stores)
    }

    /// Adds `tier` (built on another backend, it is moved to this one, so that it shares
    /// the PV locks). Refuses a second tier of the same name.
    pub fn add(&mut self, tier: Tier) -> Result<&Tier, StorageError> {
        if self.get(tier.name()).is_some() || self.blackhole.as_deref() == Some(tier.name()) {
            return Err(StorageError::DuplicateStore(tier.name().to_string()));
        }
        if let Some(b) = &self.blackhole {
            return Err(StorageError::AfterBlackhole {
                blackhole: b.clone(),
                store: tier.name().to_string(),
            });
        }
        // Compared as written, component by component (`a/sts` and `a/sts/` are one
        // folder; `a/sts` and `a/sts2` are two); links are not followed.
        if let Some(other) = self
            .tiers
            .iter()
            .find(|t| t.root().starts_with(tier.root()) || tier.root().starts_with(t.root()))
        {
            return Err(StorageError::SharedStoreFolder {
                first: other.name().to_string(),
                first_root: other.root().display().to_string(),
                second: tier.name().to_string(),
                second_root: tier.root().display().to_string(),
            });
        }
        let policy = tier.sync_policy();
        let tier = Tier::from_store_url(tier.store_url().clone(), tier.root(), &self.backend)
            .with_sync_policy(policy);
        self.tiers.push(tier);
        Ok(&self.tiers[self.tiers.len() - 1])
    }

    /// Makes the blackhole store `name` the last store: ETL from the last tier into it
    /// deletes what it moves (Java's `BlackholeStoragePlugin`; retention). Refused when a
    /// store of that name exists or a blackhole is already set.
    pub fn set_blackhole(&mut self, name: impl Into<String>) -> Result<(), StorageError> {
        let name = name.into();
        if self.get(&name).is_some() || self.blackhole.is_some() {
            return Err(StorageError::DuplicateStore(name));
        }
        self.blackhole = Some(name);
        Ok(())
    }

    /// The name of the blackhole store, if one is configured.
    pub fn blackhole(&self) -> Option<&str> {
        self.blackhole.as_deref()
    }

    /// The URLs of every store, in order: the tiers' then the blackhole's (what a new
    /// PV's `PVTypeInfo.dataStores` lists).
    pub fn urls(&self) -> Vec<String> {
        let mut out: Vec<String> = self.tiers.iter().map(Tier::url).collect();
        out.extend(self.blackhole.as_deref().map(blackhole_url));
        out
    }

    /// Sets the sync policy of the tier named `name`; false if there is none.
    pub fn set_sync_policy(&mut self, name: &str, policy: SyncPolicy) -> bool {
        match self.tiers.iter_mut().find(|t| t.name() == name) {
            Some(t) => {
                *t = t.clone().with_sync_policy(policy);
                true
            }
            None => false,
        }
    }

    /// The tiers, in configuration order.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The tier named `name`.
    pub fn get(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name() == name)
    }

    /// The backend the tiers share.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The tiers of a PV's `dataStores` URLs, in its order. Each URL is matched to a
    /// configured tier **by name** (the `name` parameter, the store's identity in Java):
    /// this appliance's configuration says where each named store lives, so a type info
    /// imported from another host (with its `rootFolder`, or a `${VAR}` placeholder) maps to
    /// the local folders, and a catalogue entry can never make the server write elsewhere.
    /// A URL that does not parse, or names a store not configured, is an error naming it.
    /// A `blackhole://` URL holds no data and gives no tier.
    pub fn resolve<S: AsRef<str>>(&self, data_stores: &[S]) -> Result<Vec<Tier>, StorageError> {
        data_stores
            .iter()
            .filter(|url| blackhole_name(url.as_ref()).is_none())
            .map(|url| {
                let url = url.as_ref();
                let parsed = StoreUrl::parse(url).map_err(|source| StorageError::BadUrl {
                    url: url.to_string(),
                    source,
                })?;
                self.get(&parsed.name)
                    .cloned()
                    .ok_or_else(|| StorageError::UnknownStore {
                        name: parsed.name,
                        url: url.to_string(),
                    })
            })
            .collect()
    }

    /// Takes the write lock of `pv`, shared by every tier here; hold it to make a move
    /// between tiers (or several writes) one step, through the tiers' `*_locked` methods.
    pub fn lock_pv(&self, pv: &str) -> Result<PvLock, StorageError> {
        self.backend.locks().lock(pv).map_err(lock_error)
    }

    /// Takes the move lock of `pv` (see [`Backend::moves`](crate::Backend::moves)),
    /// waiting while an ETL batch or another consolidation or deletion holds it.
    pub fn lock_pv_moves(&self, pv: &str) -> Result<PvLock, StorageError> {
        self.backend.moves().lock(pv).map_err(lock_error)
    }

    /// Takes the move lock of `pv` if nobody holds it (`None` if another thread does).
    pub fn try_lock_pv_moves(&self, pv: &str) -> Result<Option<PvLock>, StorageError> {
        self.backend.moves().try_lock(pv).map_err(lock_error)
    }

    /// Deletes the samples of `pv` with `from ≤ time < to` from every tier, under one hold
    /// of its move lock (an ETL batch skips the PV meanwhile) and its write lock (see [`Tier::delete_range_locked`]); stops at the first error
    /// (what was done stays done; calling again finishes it).
    pub fn delete_range(
        &self,
        pv: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<DeleteCounts, StorageError> {
        let _moves = self.lock_pv_moves(pv)?;
        let lock = self.lock_pv(pv)?;
        let mut total = DeleteCounts::default();
        for tier in &self.tiers {
            total.add(&tier.delete_range_locked(&lock, from, to)?);
        }
        Ok(total)
    }

    /// Files and bytes of every tier, by name, in order: one walk of each tier's folder
    /// (for the storage reports and metrics; `.pb` files only).
    pub fn store_usage(&self) -> Result<Vec<(String, DiskUsage)>, StorageError> {
        let mut out = Vec::new();
        for tier in &self.tiers {
            let mut u = DiskUsage::default();
            let mut stack = vec![tier.root().to_path_buf()];
            let io = self.backend.io();
            while let Some(dir) = stack.pop() {
                let entries = match io.list_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(tier.io_error(&dir, e)),
                };
                for e in entries {
                    let path = dir.join(&e.name);
                    if e.is_dir {
                        stack.push(path);
                    } else if path.extension().is_some_and(|x| x == "pb") {
                        u.files += 1;
                        u.bytes += io.len(&path).unwrap_or(0);
                    }
                }
            }
            out.push((tier.name().to_string(), u));
        }
        Ok(out)
    }

    /// Disk use of `pv` in each tier, by name, in order.
    pub fn disk_usage(&self, pv: &str) -> Result<Vec<(String, DiskUsage)>, StorageError> {
        self.tiers
            .iter()
            .map(|t| Ok((t.name().to_string(), t.disk_usage(pv)?)))
            .collect()
    }

    /// Removes every partition file of `pv` from every tier, under one hold of its move
    /// and write locks; returns how many files. Every tier is tried; the first error is
    /// returned.
    pub fn remove_pv_data(&self, pv: &str) -> Result<usize, StorageError> {
        let _moves = self.lock_pv_moves(pv)?;
        let lock = self.lock_pv(pv)?;
        let mut removed = 0;
        let mut first_err = None;
        for tier in &self.tiers {
            match tier.remove_pv_data_locked(&lock) {
                Ok(n) => removed += n,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}

/// A lock refused (taken twice by one thread) as a [`StorageError`].
fn lock_error(source: crate::locks::Reentrant) -> StorageError {
    StorageError::Lock {
        tier: "*".to_string(),
        source,
    }
}
