//! What the command API needs to know about a workflow beyond the kernel's [`Workflow`]: how its
//! instances are named on the wire, which command creates one, and how its refusals are
//! answered. The pipeline ([`crate::service`], [`crate::idempotency`], [`crate::http`]) is
//! written once against [`WorkflowApi`]; each workflow's route module implements it.

use crate::error::ApiError;
use domain::kernel::Workflow;
use event_store::EventStore;
use std::fmt::{Debug, Display};
use std::future::Future;
use uuid::Uuid;

/// How a refusal is answered: the HTTP status it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The instance does not exist (404).
    NotFound,
    /// The command is not allowed in the instance's current state (409).
    Conflict,
    /// The command's content contradicts the instance (422).
    Invalid,
}

impl From<domain::ErrorKind> for RefusalKind {
    fn from(kind: domain::ErrorKind) -> Self {
        match kind {
            domain::ErrorKind::NotFound => Self::NotFound,
            domain::ErrorKind::Conflict => Self::Conflict,
            domain::ErrorKind::Invalid => Self::Invalid,
        }
    }
}

/// A workflow's named error, as the API answers it.
pub trait Refusal: std::error::Error + Send + Sync + 'static {
    /// A stable machine-readable code, e.g. `illegal_transition`.
    fn code(&self) -> &'static str;
    fn kind(&self) -> RefusalKind;
}

/// One instance's id: it names the workflow the instance belongs to, so the pipeline knows the
/// workflow from the id it is given.
pub trait InstanceId: Copy + Display + Debug + Send + Sync + 'static {
    type Workflow: WorkflowApi<Id = Self>;
}

/// A workflow served by the command API.
pub trait WorkflowApi: Workflow<Error: Refusal> {
    type Id: InstanceId<Workflow = Self>;
    /// The field of an outcome (and the path parameter) naming the instance, e.g. `order_id`.
    const ID_FIELD: &'static str;
    /// Where the instances live: an instance is at `<COLLECTION>/<id>`, e.g. `/orders`.
    const COLLECTION: &'static str;
    /// The problem code of an instance whose stream holds an event that cannot be decoded.
    const HISTORY_UNREADABLE_CODE: &'static str;

    /// Whether `command` creates the instance: its stream is expected not to exist yet, so the
    /// first attempt appends without reading it.
    fn creates(command: &Self::Command) -> bool;

    /// The id of an instance named by a UUID.
    fn id_from_uuid(uuid: Uuid) -> Self::Id;

    /// An instance id as the client wrote it.
    ///
    /// # Errors
    /// What is wrong with `raw`.
    fn parse_id(raw: &str) -> Result<Self::Id, String>;

    /// The title of a problem for a refusal of `kind`.
    fn refusal_title(kind: RefusalKind) -> &'static str;

    /// Completes `command` with facts the workflow reads from other streams when the command is
    /// handled (a return request reads its order's lines and delivery), so that `decide` stays
    /// pure. Runs before each decision, after the instance's stream is read; a refusal it
    /// returns ([`ApiError::Refused`]) is answered, and kept under an idempotency key, like one
    /// of `decide`'s. By default the command is taken as sent.
    ///
    /// # Errors
    /// Store errors, or a refusal when what was read makes the command meaningless.
    fn prepare(
        store: &dyn EventStore,
        command: Self::Command,
    ) -> impl Future<Output = Result<Self::Command, ApiError>> + Send {
        let _ = store;
        std::future::ready(Ok(command))
    }
}
