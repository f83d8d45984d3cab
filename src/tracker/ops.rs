//! [`Tracker`]: every operation on keyed sessions, each one store call.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;

use super::{Tracked, TrackerError, TrackerLock, TrackerSettings};
use crate::events::{EventBus, EventFeed, EventKind, KeyedChange, NewEvent};
use crate::store::keyed::{
    Guard, KeyedId, KeyedOp, KeyedRecord, KeyedReply, KeyedState, KeyedStore,
};
use crate::store::ms_to_datetime;

/// Keyed sessions of one kind, holding values of type `T`, in a
/// [`KeyedStore`] shared by every instance. Cheap to clone.
///
/// ```
/// use sessionkit::tracker::{Tracker, TrackerError};
/// use sessionkit::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), TrackerError> {
/// let chats: Tracker<Vec<String>> = Tracker::new(MemoryStore::new(), "chat");
/// chats.start("conv-42", &vec!["hello".to_owned()]).await?;
///
/// // Read, change, write back only if nobody wrote in between.
/// let mut conv = chats.get("conv-42").await?;
/// conv.value.push("how can I help?".to_owned());
/// chats.update("conv-42", &conv.value, conv.version).await?;
///
/// // Or under the lock, for a read-modify-write that must not interleave.
/// let (mut conv, mut lock) = chats.get_locked("conv-42").await?;
/// conv.value.push("bye".to_owned());
/// lock.update(&conv.value).await?;
/// lock.finish().await?;
///
/// assert!(matches!(chats.get("conv-42").await, Err(TrackerError::Finished)));
/// assert_eq!(chats.get_finished("conv-42").await?.value.len(), 3);
/// # Ok(()) }
/// ```
pub struct Tracker<T> {
    pub(super) store: Arc<dyn KeyedStore>,
    pub(super) name: Arc<str>,
    pub(super) settings: TrackerSettings,
    /// The bus of [`with_events`](Self::with_events), if events are on.
    pub(super) events: Option<Arc<dyn EventBus>>,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for Tracker<T> {
    fn clone(&self) -> Self {
        Tracker {
            store: Arc::clone(&self.store),
            name: Arc::clone(&self.name),
            settings: self.settings,
            events: self.events.clone(),
            _value: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Tracker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("events", &self.events.is_some())
            .field("store", &self.store)
            .finish()
    }
}

type Result<T, E = TrackerError> = std::result::Result<T, E>;

/// The error for a reply that is not a record.
pub(super) fn refused(reply: KeyedReply, expected: KeyedState) -> TrackerError {
    match reply {
        KeyedReply::Missing | KeyedReply::Done(_) | KeyedReply::Record(_) => TrackerError::NotFound,
        KeyedReply::Active if expected == KeyedState::Finished => TrackerError::NotFinished,
        KeyedReply::Active => TrackerError::AlreadyStarted,
        KeyedReply::Finished => TrackerError::Finished,
        KeyedReply::Conflict { version } => TrackerError::Conflict { current: version },
        KeyedReply::Fenced => TrackerError::LockLost,
        KeyedReply::Held { lease_left } => TrackerError::Locked { lease_left },
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Tracker<T> {
    /// Keyed sessions named `name` (their namespace: two trackers with
    /// different names never see each other's keys) in `store`, with the
    /// default [`TrackerSettings`].
    pub fn new(store: impl KeyedStore, name: &str) -> Self {
        Self::from_arc(Arc::new(store), name)
    }

    /// [`new`](Self::new) from a shared store.
    pub fn from_arc(store: Arc<dyn KeyedStore>, name: &str) -> Self {
        Tracker {
            store,
            name: name.into(),
            settings: TrackerSettings::default(),
            events: None,
            _value: PhantomData,
        }
    }

    /// The same tracker publishing an [`EventKind::Keyed`] event on `bus`
    /// (the store's: [`MemoryStore::events`](crate::MemoryStore::events),
    /// `RedisStore::events`, `PostgresStore::events`) after each start,
    /// write, finish, resume and removal, for every instance's
    /// [`events`](Self::events). See [`crate::events`] for the delivery.
    pub fn with_events(mut self, bus: impl EventBus) -> Self {
        self.events = Some(Arc::new(bus));
        self
    }

    /// A feed of this tracker's events (its name's, from every instance),
    /// from now on.
    ///
    /// # Errors
    /// [`Store`](TrackerError::Store) with
    /// [`Error::EventsOff`](crate::Error::EventsOff) without
    /// [`with_events`](Self::with_events); store failures.
    pub async fn events(&self) -> Result<EventFeed> {
        let bus = self.events.as_ref().ok_or(crate::Error::EventsOff)?;
        let feed = bus.subscribe().await?;
        let name = Arc::clone(&self.name);
        Ok(feed.filtered(
            move |e| matches!(&e.kind, EventKind::Keyed { tracker, .. } if **tracker == *name),
        ))
    }

    /// Publishes `change` of `key` if events are on. After the operation
    /// succeeded: a failure to publish is logged, since the operation
    /// stands.
    pub(super) async fn emit(&self, key: &str, change: KeyedChange) {
        let Some(bus) = &self.events else { return };
        let event = NewEvent {
            kind: EventKind::Keyed {
                tracker: self.name.to_string(),
                key: key.to_owned(),
                change,
            },
            session: None,
            user: None,
        };
        if let Err(e) = bus.publish(event).await {
            tracing::warn!(error = %e, "a keyed session event could not be published and is lost");
        }
    }

    /// The same tracker with other settings.
    pub fn with_settings(mut self, settings: TrackerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &TrackerSettings {
        &self.settings
    }

    /// The store id of `key`.
    pub fn id(&self, key: &str) -> KeyedId {
        KeyedId::new(&self.name, key)
    }

    pub(super) async fn call(&self, id: &KeyedId, op: KeyedOp<'_>) -> Result<KeyedReply> {
        Ok(self.store.keyed(id, op, &self.settings.timeouts()).await?)
    }

    /// One call that must answer a record, else the error for `expected`.
    pub(super) async fn record(
        &self,
        id: &KeyedId,
        op: KeyedOp<'_>,
        expected: KeyedState,
    ) -> Result<KeyedRecord> {
        match self.call(id, op).await? {
            KeyedReply::Record(r) => Ok(r),
            other => Err(refused(other, expected)),
        }
    }

    pub(super) fn encode(&self, value: &T) -> Result<String> {
        let json = serde_json::to_string(value).map_err(TrackerError::Serialize)?;
        let max = self.settings.max_value_bytes;
        if json.len() > max {
            return Err(TrackerError::TooLarge {
                size: json.len(),
                max,
            });
        }
        Ok(json)
    }

    /// Starts the session `key` with `value`.
    ///
    /// # Errors
    /// [`AlreadyStarted`](TrackerError::AlreadyStarted) if it is active,
    /// [`Finished`](TrackerError::Finished) if it is finished (resume or
    /// remove it), [`TooLarge`](TrackerError::TooLarge).
    pub async fn start(&self, key: &str, value: &T) -> Result<Tracked<T>> {
        let json = self.encode(value)?;
        let r = self
            .record(
                &self.id(key),
                KeyedOp::Start { value: &json },
                KeyedState::Active,
            )
            .await?;
        self.emit(key, KeyedChange::Started).await;
        Tracked::decode(r)
    }

    /// Reads the active session `key`, refreshing its sliding expiry. A
    /// read writes only when that moves the expiry by a tenth of the
    /// sliding window or a second, whichever is less
    /// ([`Expiry::touch_due`](crate::store::keyed::Expiry::touch_due)), so
    /// reads in quick succession cost the store no write.
    ///
    /// # Errors
    /// [`NotFound`](TrackerError::NotFound), [`Finished`](TrackerError::Finished).
    pub async fn get(&self, key: &str) -> Result<Tracked<T>> {
        self.read(key, KeyedState::Active).await
    }

    /// Reads the finished session `key`, refreshing its finished sliding
    /// expiry (if it has one).
    ///
    /// # Errors
    /// [`NotFound`](TrackerError::NotFound), [`NotFinished`](TrackerError::NotFinished).
    pub async fn get_finished(&self, key: &str) -> Result<Tracked<T>> {
        self.read(key, KeyedState::Finished).await
    }

    async fn read(&self, key: &str, state: KeyedState) -> Result<Tracked<T>> {
        let op = KeyedOp::Get { state, touch: true };
        Tracked::decode(self.record(&self.id(key), op, state).await?)
    }

    /// Refreshes the active session's sliding expiry without decoding it.
    /// Answers the new expiry.
    ///
    /// # Errors
    /// [`NotFound`](TrackerError::NotFound), [`Finished`](TrackerError::Finished).
    pub async fn refresh(&self, key: &str) -> Result<OffsetDateTime> {
        let op = KeyedOp::Get {
            state: KeyedState::Active,
            touch: true,
        };
        let r = self.record(&self.id(key), op, KeyedState::Active).await?;
        Ok(ms_to_datetime(r.expires_ms))
    }

    /// Writes `value` if the session is still at `version` (compare and
    /// set) and no other holder has the lock. Answers the new version.
    ///
    /// # Errors
    /// [`Conflict`](TrackerError::Conflict) (another write came first:
    /// read again and retry), [`Locked`](TrackerError::Locked),
    /// [`NotFound`](TrackerError::NotFound), [`Finished`](TrackerError::Finished),
    /// [`TooLarge`](TrackerError::TooLarge). None of them writes anything.
    pub async fn update(&self, key: &str, value: &T, version: u64) -> Result<u64> {
        Ok(self.update_and_get(key, value, version).await?.version)
    }

    /// [`update`](Self::update), answering the session as written.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn update_and_get(&self, key: &str, value: &T, version: u64) -> Result<Tracked<T>> {
        let json = self.encode(value)?;
        let op = KeyedOp::Update {
            value: &json,
            guard: Guard::Version(version),
        };
        let r = self.record(&self.id(key), op, KeyedState::Active).await?;
        let version = r.version;
        self.emit(key, KeyedChange::Updated { version }).await;
        Tracked::decode(r)
    }

    /// Finishes the active session `key`: it moves, in one step, to the
    /// finished state with the finished expiry, and its lock (if any) ends.
    ///
    /// # Errors
    /// [`NotFound`](TrackerError::NotFound), [`Finished`](TrackerError::Finished)
    /// (someone finished it first).
    pub async fn finish(&self, key: &str) -> Result<()> {
        self.finish_and_get(key).await.map(drop)
    }

    /// [`finish`](Self::finish), answering the session as finished.
    ///
    /// # Errors
    /// As [`finish`](Self::finish).
    pub async fn finish_and_get(&self, key: &str) -> Result<Tracked<T>> {
        let op = KeyedOp::Finish { guard: None };
        let r = self.record(&self.id(key), op, KeyedState::Active).await?;
        self.emit(key, KeyedChange::Finished).await;
        Tracked::decode(r)
    }

    /// Moves the finished session `key` back to the active state, with the
    /// active expiry counted from now.
    ///
    /// # Errors
    /// [`NotFound`](TrackerError::NotFound), [`NotFinished`](TrackerError::NotFinished)
    /// (it is active: someone resumed it first).
    pub async fn resume(&self, key: &str) -> Result<()> {
        self.resume_and_get(key).await.map(drop)
    }

    /// [`resume`](Self::resume), answering the session as resumed.
    ///
    /// # Errors
    /// As [`resume`](Self::resume).
    pub async fn resume_and_get(&self, key: &str) -> Result<Tracked<T>> {
        let r = self
            .record(&self.id(key), KeyedOp::Resume, KeyedState::Finished)
            .await?;
        self.emit(key, KeyedChange::Resumed).await;
        Tracked::decode(r)
    }

    /// Deletes the session `key`, active or finished. Answers whether there
    /// was one.
    ///
    /// # Errors
    /// Only [`Store`](TrackerError::Store).
    pub async fn remove(&self, key: &str) -> Result<bool> {
        match self.call(&self.id(key), KeyedOp::Remove).await? {
            KeyedReply::Done(existed) => {
                if existed {
                    self.emit(key, KeyedChange::Removed).await;
                }
                Ok(existed)
            }
            other => Err(refused(other, KeyedState::Active)),
        }
    }

    /// Takes the lock of the active session `key`, waiting up to
    /// [`lock_wait`](TrackerSettings::lock_wait) for another holder.
    ///
    /// # Errors
    /// [`LockTimeout`](TrackerError::LockTimeout), [`NotFound`](TrackerError::NotFound),
    /// [`Finished`](TrackerError::Finished).
    pub async fn lock(&self, key: &str) -> Result<TrackerLock<T>> {
        Ok(self.lock_record(key).await?.1)
    }

    /// Takes the lock and reads the session in the same store step (so no
    /// write can come between the two), waiting as [`lock`](Self::lock).
    ///
    /// # Errors
    /// As [`lock`](Self::lock), and [`Deserialize`](TrackerError::Deserialize).
    pub async fn get_locked(&self, key: &str) -> Result<(Tracked<T>, TrackerLock<T>)> {
        let (record, lock) = self.lock_record(key).await?;
        Ok((Tracked::decode(record)?, lock))
    }
}
