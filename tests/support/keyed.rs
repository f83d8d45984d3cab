//! Keyed-session stores of a [`Backend`]: the backend's own, and a second
//! instance on the same data (its own connections), as another replica of
//! the app would have.

use std::sync::Arc;

use sessionkit::tracker::KeyedStore;

use super::{Backend, Concrete};

impl Backend {
    /// The backend's store as a tracker sees it.
    pub fn keyed_store(&self) -> Arc<dyn KeyedStore> {
        match self.concrete() {
            Concrete::Memory(s) => Arc::new(s),
            #[cfg(feature = "redis")]
            Concrete::Redis(s) => Arc::new(s),
            #[cfg(feature = "postgres")]
            Concrete::Postgres(s) => Arc::new(s),
        }
    }

    /// A second instance's store, as a tracker sees it (see
    /// [`second_concrete`](Backend::second_concrete)).
    pub async fn second_keyed_store(&self) -> Arc<dyn KeyedStore> {
        match self.second_concrete().await {
            Concrete::Memory(s) => Arc::new(s),
            #[cfg(feature = "redis")]
            Concrete::Redis(s) => Arc::new(s),
            #[cfg(feature = "postgres")]
            Concrete::Postgres(s) => Arc::new(s),
        }
    }
}
