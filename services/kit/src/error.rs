//! One mapping from what went wrong to the gRPC status a client sees.
//!
//! Bad input becomes `INVALID_ARGUMENT` carrying a `google.rpc.BadRequest` with one field
//! violation per problem, named by field path; unexpected failures are logged in full and
//! answered with a message that leaks nothing.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// One problem with one field of a request, e.g. `items[2].quantity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Every problem of a request, collected field by field while it is read: answered together
/// as one INVALID_ARGUMENT.
#[derive(Debug, Default)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation::new(field, description));
    }

    /// `Ok` when nothing was found wrong, else INVALID_ARGUMENT naming every field.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }

    /// The operation id of a mutating request, from its field and the `x-operation-id`
    /// metadata ([`crate::idempotency::operation_id`]); empty when it is wrong.
    pub fn operation_id(&mut self, field: &str, metadata: Option<&str>) -> String {
        crate::idempotency::operation_id(field, metadata).unwrap_or_else(|violations| {
            self.0.extend(violations);
            String::new()
        })
    }

    /// A shift id in `field`: the UUID ShiftService gave the shift, in its canonical form.
    pub fn shift_id(&mut self, field: &str, value: &str, required: bool) {
        if value.is_empty() {
            if required {
                self.add(field, "is required");
            }
        } else if crate::idempotency::canonical_uuid(value).as_deref() != Some(value) {
            self.add(field, "must be the shift id ShiftService answered (a UUID)");
        }
    }

    /// The terminal in `field`, every malformed part named (`terminal.pos_no`).
    pub fn terminal(
        &mut self,
        field: &str,
        terminal: Option<&fiscus_proto::v1::Terminal>,
    ) -> Option<fiscus_domain::TerminalId> {
        let Some(t) = terminal else {
            self.add(field, "is required");
            return None;
        };
        match fiscus_domain::TerminalId::parse(&t.merchant_tin, &t.branch_no, &t.pos_no) {
            Ok(id) => Some(id),
            Err(problems) => {
                for problem in problems {
                    let value = match problem.part {
                        "merchant_tin" => &t.merchant_tin,
                        "branch_no" => &t.branch_no,
                        _ => &t.pos_no,
                    };
                    let name = format!("{field}.{}", problem.part);
                    if value.is_empty() {
                        self.add(name, "is required");
                    } else {
                        self.add(name, problem.to_string());
                    }
                }
                None
            }
        }
    }
}

/// The terminal and shift of a call ShiftService makes to a service that records into shifts
/// (SetTerminalShift, a shift's totals and lines), both checked, every problem named.
pub fn shift_call(
    terminal: Option<&fiscus_proto::v1::Terminal>,
    shift_id: &str,
    required: bool,
) -> Result<fiscus_domain::TerminalId, ApiError> {
    let mut v = Violations::default();
    let terminal = v.terminal("terminal", terminal);
    v.shift_id("shift_id", shift_id, required);
    v.into_result()?;
    terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))
}

/// Every error a fiscus RPC can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request: {}", summary(.0))]
    InvalidArgument(Vec<Violation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn summary(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// A single bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![Violation::new(field, description)])
    }

    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Aborted(_) => Code::Aborted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => {
                let message = format!("invalid request: {}", summary(&violations));
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Internal(source) => {
                // The chain may name tables, hosts or values: it goes to the log, not the caller.
                tracing::error!(error = format!("{source:#}"), "internal error");
                Status::internal(
                    "internal error; the request was not completed, see the server log",
                )
            }
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

/// What a caller is told when the journal database could not be used: retrying with the same
/// operation id is always safe, and is how to learn an outcome that is unknown.
const DATABASE_UNAVAILABLE: &str =
    "the journal database is unavailable; retry with the same operation_id";

impl From<sqlx::Error> for ApiError {
    /// Contention is the caller's to retry (ABORTED); an unreachable, restarting or overloaded
    /// database is UNAVAILABLE; anything else is internal.
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(DATABASE_UNAVAILABLE.into()),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // lock_not_available, serialization_failure, deadlock_detected
                Some("55P03" | "40001" | "40P01") => Self::Aborted(
                    "the operation is still in progress or contended; retry with the same operation_id".into(),
                ),
                // SQLITE_BUSY, SQLITE_LOCKED
                Some("5" | "6" | "517" | "262") => Self::Aborted(
                    "the journal is busy; retry with the same operation_id".into(),
                ),
                // Shutting down, crashed, starting up; too many connections; statement_timeout;
                // any connection exception (class 08).
                Some("57P01" | "57P02" | "57P03" | "53300" | "57014") => {
                    Self::Unavailable(DATABASE_UNAVAILABLE.into())
                }
                Some(code) if code.starts_with("08") => {
                    Self::Unavailable(DATABASE_UNAVAILABLE.into())
                }
                _ => Self::Internal(error.into()),
            },
            _ => Self::Internal(error.into()),
        }
    }
}

/// Reads the field violations back from a status (clients and tests).
pub fn field_violations(status: &Status) -> Vec<Violation> {
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| Violation::new(v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_every_field_violation() {
        let status: Status = ApiError::InvalidArgument(vec![
            Violation::new("terminal.merchant_tin", "is required"),
            Violation::new("items[2].quantity", "must be positive"),
        ])
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("items[2].quantity"));
        let fields: Vec<_> = field_violations(&status)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["terminal.merchant_tin", "items[2].quantity"]);
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status: Status = ApiError::Internal(anyhow::anyhow!(
            "password authentication failed for hunter2"
        ))
        .into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }

    #[test]
    fn known_cases_keep_their_code() {
        let status: Status = ApiError::FailedPrecondition("shift is closed".into()).into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "shift is closed");
    }
}
