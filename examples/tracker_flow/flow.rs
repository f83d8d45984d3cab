//! The conversation of `tracker_flow`: two workers, each with its own
//! tracker on its own store connection, handle the events of one chat
//! conversation, whichever receives the next one — as replicas behind a
//! queue would. `tests/tracker_flow.rs` runs it on every store.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sessionkit::tracker::{KeyedState, KeyedStore, Tracker, TrackerError};
use tokio::sync::{mpsc, oneshot};

/// The state of one conversation, kept under the application's own key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Who is talking to the bot.
    pub user: String,
    /// Every message, in order.
    pub messages: Vec<String>,
}

/// What a worker is asked to do.
#[derive(Debug, Clone)]
pub enum Event {
    /// A user opened a conversation.
    Opened { key: String, user: String },
    /// A message arrived: appended under the lock.
    Message { key: String, text: String },
    /// The conversation was closed.
    Closed { key: String },
    /// Someone looks at a closed conversation.
    Review { key: String },
    /// The user came back to a closed conversation.
    Reopened { key: String },
}

/// One line of the log the flow returns: which worker did what, and the
/// conversation as that worker left it.
#[derive(Debug, Clone)]
pub struct Step {
    pub worker: &'static str,
    pub what: String,
    pub state: KeyedState,
    pub version: u64,
    pub conversation: Conversation,
}

type Job = (Event, oneshot::Sender<Result<Step, TrackerError>>);

/// A worker: takes events off its queue and answers each with a [`Step`].
fn worker(name: &'static str, tracker: Tracker<Conversation>) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(8);
    tokio::spawn(async move {
        while let Some((event, reply)) = rx.recv().await {
            let _ = reply.send(handle(name, &tracker, event).await);
        }
    });
    tx
}

async fn handle(
    worker: &'static str,
    t: &Tracker<Conversation>,
    event: Event,
) -> Result<Step, TrackerError> {
    let step = |what: String, s: sessionkit::tracker::Tracked<Conversation>| Step {
        worker,
        what,
        state: s.state,
        version: s.version,
        conversation: s.value,
    };
    Ok(match event {
        Event::Opened { key, user } => {
            let first = Conversation {
                user,
                messages: Vec::new(),
            };
            step(format!("started {key}"), t.start(&key, &first).await?)
        }
        Event::Message { key, text } => {
            // Lock and read in one store step; the write is fenced.
            let (mut conv, mut lock) = t.get_locked(&key).await?;
            conv.value.messages.push(text.clone());
            let written = lock.update(&conv.value).await?;
            lock.release().await?;
            step(format!("added {text:?} under the lock"), written)
        }
        Event::Closed { key } => step(format!("finished {key}"), t.finish_and_get(&key).await?),
        Event::Review { key } => step(
            format!("read {key} as finished"),
            t.get_finished(&key).await?,
        ),
        Event::Reopened { key } => step(format!("resumed {key}"), t.resume_and_get(&key).await?),
    })
}

/// Runs the conversation `key` through two workers, one on `store_a` and
/// one on `store_b` (two connections to the same Redis or database, or
/// one memory store), alternating between them. Answers each step.
pub async fn run(
    store_a: Arc<dyn KeyedStore>,
    store_b: Arc<dyn KeyedStore>,
    key: &str,
) -> Result<Vec<Step>, TrackerError> {
    let a = worker("worker A", Tracker::from_arc(store_a, "chat"));
    let b = worker("worker B", Tracker::from_arc(store_b, "chat"));
    let key = key.to_owned();
    let events = [
        Event::Opened {
            key: key.clone(),
            user: "ada".to_owned(),
        },
        Event::Message {
            key: key.clone(),
            text: "hello, I need help with an invoice".to_owned(),
        },
        Event::Message {
            key: key.clone(),
            text: "bot: which invoice number?".to_owned(),
        },
        Event::Message {
            key: key.clone(),
            text: "INV-1024".to_owned(),
        },
        Event::Closed { key: key.clone() },
        Event::Review { key: key.clone() },
        Event::Reopened { key: key.clone() },
        Event::Message {
            key: key.clone(),
            text: "one more thing".to_owned(),
        },
    ];
    let mut steps = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        let to = if i % 2 == 0 { &a } else { &b };
        let (reply, answer) = oneshot::channel();
        to.send((event, reply))
            .await
            .map_err(|_| sessionkit::Error::store("a worker stopped"))?;
        let step = answer
            .await
            .map_err(|_| sessionkit::Error::store("a worker dropped its answer"))??;
        steps.push(step);
    }
    Ok(steps)
}
