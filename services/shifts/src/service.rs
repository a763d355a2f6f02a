//! `fiscus.v1.ShiftService`: a terminal's shifts, opened and closed one at a time under the
//! terminal's row lock, with the journal told of each change under its chain head's lock, and
//! Z-reports computed once at closing and stored.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use fiscus_domain::TerminalId;
use fiscus_kit::auth::Caller;
use fiscus_kit::cache::SharedCache;
use fiscus_kit::db::{Database, DatabaseStatus};
use fiscus_kit::idempotency::{self, Operation, metadata_operation_id};
use fiscus_kit::{ApiError, Violations};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::shift_service_server::ShiftService;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::peers::Recorders;
use crate::report;
use crate::store::{self, Named, ShiftRow};

/// How long an OpenShift or CloseShift holds its operation id while it runs.
const LEASE: Duration = Duration::from_secs(30);

/// The `fiscus.v1.ShiftService` implementation.
#[derive(Clone)]
pub struct Shifts(pub Arc<Inner>);

pub struct Inner {
    pub db: Database,
    pub db_status: DatabaseStatus,
    pub cache: SharedCache,
    pub recorders: Recorders,
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn timestamp(us: i64) -> Option<prost_types::Timestamp> {
    DateTime::<Utc>::from_timestamp_micros(us).map(|t| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

fn micros(ts: &prost_types::Timestamp) -> Option<i64> {
    DateTime::<Utc>::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
        .map(|t| t.timestamp_micros())
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The contract's view of a stored shift.
fn shift(row: &ShiftRow) -> pb::Shift {
    pb::Shift {
        shift_id: row.id.clone(),
        terminal: Some(pb::Terminal {
            merchant_tin: row.merchant_tin.clone(),
            branch_no: row.branch_no.clone(),
            pos_no: row.pos_no.clone(),
        }),
        number: count(row.number),
        state: if row.state == store::OPEN {
            pb::ShiftState::Open
        } else {
            pb::ShiftState::Closed
        }
        .into(),
        opened_at: timestamp(row.opened_at_us),
        closed_at: row.closed_at_us.and_then(timestamp),
        opened_by: row.opened_by.clone(),
        closed_by: row.closed_by.clone(),
        z_report_number: count(row.z_number),
        upstream_shift_id: row.upstream_shift_id.clone(),
    }
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::from(e)
}

/// What ShiftService checks of a request beyond what every service does.
trait ShiftChecks {
    fn operator(&mut self, field: &str, value: &str);
    fn format(&mut self, field: &str, value: i32) -> Option<pb::DocumentFormat>;
}

impl ShiftChecks for Violations {
    fn operator(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.add(field, "is required: the name or id of the operator");
        } else if value.chars().count() > 128 {
            self.add(field, "must be at most 128 characters");
        }
    }

    fn format(&mut self, field: &str, value: i32) -> Option<pb::DocumentFormat> {
        match pb::DocumentFormat::try_from(value) {
            Ok(pb::DocumentFormat::Unspecified) => None,
            Ok(format) => Some(format),
            Err(_) => {
                self.add(field, "must be JSON, TXT, PDF or PNG (or unset)");
                None
            }
        }
    }
}

fn no_shift(terminal: &TerminalId) -> ApiError {
    ApiError::FailedPrecondition(format!("terminal {terminal} has no open shift"))
}

impl Inner {
    /// The request's terminal, once the fields have been checked: refused when the caller may
    /// not touch its merchant, or while this service's database does not answer.
    fn reachable(
        &self,
        caller: &Caller,
        terminal: Option<TerminalId>,
    ) -> Result<TerminalId, Status> {
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        self.db_status.check()?;
        Ok(terminal)
    }

    /// The report, full when asked, and rendered when a format is asked.
    async fn finish(
        &self,
        mut report: pb::Report,
        merchant_name: &str,
        full: bool,
        format: Option<pb::DocumentFormat>,
    ) -> Result<(pb::Report, Option<pb::RenderedDocument>), ApiError> {
        if full {
            let shift = report.shift.clone().unwrap_or_default();
            let terminal = terminal_of(&shift)?;
            report.transactions = self.recorders.lines(&terminal, &shift.shift_id).await?;
            report.full = true;
        }
        let document = format
            .map(|format| report::render(&report, merchant_name, format))
            .transpose()?;
        Ok((report, document))
    }

    async fn open_shift(
        &self,
        terminal: &TerminalId,
        opened_by: &str,
        seller_session_id: &str,
    ) -> Result<pb::OpenShiftResponse, ApiError> {
        let mut tx = self.db.begin().await.map_err(db)?;
        let counters = store::lock_terminal(&mut tx, terminal).await.map_err(db)?;
        if let Some(open) = store::open_in(&mut tx, terminal).await.map_err(db)? {
            return Err(ApiError::FailedPrecondition(format!(
                "terminal {terminal} has shift {} (number {}) open, opened by {}: close it first",
                open.id, open.number, open.opened_by
            )));
        }
        let row = ShiftRow {
            id: uuid::Uuid::now_v7().to_string(),
            merchant_tin: terminal.merchant_tin.clone(),
            branch_no: terminal.branch_no.clone(),
            pos_no: terminal.pos_no.clone(),
            number: counters.last_shift_number.saturating_add(1),
            state: store::OPEN.to_owned(),
            opened_at_us: now().timestamp_micros(),
            opened_by: opened_by.to_owned(),
            closed_at_us: None,
            closed_by: String::new(),
            z_number: 0,
            upstream_shift_id: String::new(),
        };
        store::insert_open(&mut tx, &row).await.map_err(db)?;
        // The journal takes the shift while the terminal is locked here: no other OpenShift or
        // CloseShift of the terminal can come between.
        self.recorders
            .set_shift(terminal, &row.id, seller_session_id)
            .await?;
        tx.commit().await.map_err(db)?;
        tracing::info!(terminal = %terminal, shift = %row.id, number = row.number, "shift opened");
        Ok(pb::OpenShiftResponse {
            shift: Some(shift(&row)),
        })
    }

    async fn close_shift(
        &self,
        terminal: &TerminalId,
        expected: &str,
        closed_by: &str,
        seller_session_id: &str,
    ) -> Result<pb::CloseShiftResponse, ApiError> {
        let mut tx = self.db.begin().await.map_err(db)?;
        let counters = store::lock_terminal(&mut tx, terminal).await.map_err(db)?;
        let mut row = store::open_in(&mut tx, terminal)
            .await
            .map_err(db)?
            .ok_or_else(|| no_shift(terminal))?;
        if !expected.is_empty() && row.id != expected {
            return Err(ApiError::FailedPrecondition(format!(
                "terminal {terminal} has shift {} open, not {expected}",
                row.id
            )));
        }
        // Once the journal has left the shift, no receipt joins it: its totals are final.
        self.recorders
            .set_shift(terminal, "", seller_session_id)
            .await?;
        let totals = self.recorders.totals(terminal, &row.id).await?;
        let closed_at = now();
        row.state = store::CLOSED.to_owned();
        row.closed_at_us = Some(closed_at.timestamp_micros());
        row.closed_by = closed_by.to_owned();
        row.z_number = counters.last_z_number.saturating_add(1);
        let merchant_name = totals.receipts.merchant_name.clone();
        let generated_at = timestamp(closed_at.timestamp_micros()).unwrap_or_default();
        let z = report::summary(
            pb::ReportKind::Z,
            count(row.z_number),
            &shift(&row),
            generated_at,
            totals,
        );
        store::close(&mut tx, &row, &z.encode_to_vec(), &merchant_name)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tracing::info!(terminal = %terminal, shift = %row.id, z_number = row.z_number, "shift closed");
        Ok(pb::CloseShiftResponse {
            shift: Some(shift(&row)),
            z_report: Some(z),
            document: None,
        })
    }
}

fn terminal_of(shift: &pb::Shift) -> Result<TerminalId, ApiError> {
    let t = shift.terminal.clone().unwrap_or_default();
    TerminalId::parse(&t.merchant_tin, &t.branch_no, &t.pos_no).map_err(|_| {
        ApiError::Internal(anyhow::anyhow!("shift {} has no terminal", shift.shift_id))
    })
}

fn page_size(requested: i32) -> i64 {
    match requested {
        n if n <= 0 => 50,
        n => i64::from(n.min(500)),
    }
}

#[tonic::async_trait]
impl ShiftService for Shifts {
    #[tracing::instrument(skip_all)]
    async fn open_shift(
        &self,
        request: Request<pb::OpenShiftRequest>,
    ) -> Result<Response<pb::OpenShiftResponse>, Status> {
        let metadata_id = metadata_operation_id(&request);
        let caller = Caller::of(&request);
        let mut request = request.into_inner();
        let mut v = Violations::default();
        let operation_id = v.operation_id(&request.operation_id, metadata_id.as_deref());
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.operator("opened_by", &request.opened_by);
        v.into_result()?;
        let this = &self.0;
        let terminal = this.reachable(&caller, terminal)?;
        let operation = Operation::new(
            &terminal.merchant_tin,
            &operation_id,
            "OpenShift",
            &mut request,
        );
        let opened = idempotency::once_upstream(
            &this.db,
            this.cache.as_ref(),
            &operation,
            LEASE,
            this.open_shift(
                &terminal,
                request.opened_by.trim(),
                &request.seller_session_id,
            ),
        )
        .await?;
        Ok(Response::new(opened))
    }

    #[tracing::instrument(skip_all)]
    async fn get_current_shift(
        &self,
        request: Request<pb::GetCurrentShiftRequest>,
    ) -> Result<Response<pb::GetCurrentShiftResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.into_result()?;
        let terminal = self.0.reachable(&caller, terminal)?;
        let open = store::open(&self.0.db, &terminal).await.map_err(db)?;
        Ok(Response::new(pb::GetCurrentShiftResponse {
            open: open.is_some(),
            shift: open.as_ref().map(shift),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn close_shift(
        &self,
        request: Request<pb::CloseShiftRequest>,
    ) -> Result<Response<pb::CloseShiftResponse>, Status> {
        let metadata_id = metadata_operation_id(&request);
        let caller = Caller::of(&request);
        let mut request = request.into_inner();
        let mut v = Violations::default();
        let operation_id = v.operation_id(&request.operation_id, metadata_id.as_deref());
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.operator("closed_by", &request.closed_by);
        v.shift_id("shift_id", &request.shift_id, false);
        let format = v.format("format", request.format);
        v.into_result()?;
        let this = &self.0;
        let terminal = this.reachable(&caller, terminal)?;
        // How the report is shown is not part of the operation: a retry asking another format
        // is the same closing.
        let (full, format_asked) = (request.full, request.format);
        request.full = false;
        request.format = 0;
        let operation = Operation::new(
            &terminal.merchant_tin,
            &operation_id,
            "CloseShift",
            &mut request,
        );
        request.full = full;
        request.format = format_asked;
        let closed = idempotency::once_upstream(
            &this.db,
            this.cache.as_ref(),
            &operation,
            LEASE,
            this.close_shift(
                &terminal,
                &request.shift_id,
                request.closed_by.trim(),
                &request.seller_session_id,
            ),
        )
        .await?;
        // The closing's answer is stored as it was; the name a rendered report is printed with
        // is the shift's, read only when a document is asked for.
        let merchant_name = match (format, &closed.shift) {
            (Some(_), Some(shift)) => store::find(&this.db, &terminal, Named::Id(&shift.shift_id))
                .await
                .map_err(db)?
                .and_then(|(_, z)| z)
                .map(|z| z.merchant_name)
                .unwrap_or_default(),
            _ => String::new(),
        };
        let (z_report, document) = this
            .finish(
                closed.z_report.unwrap_or_default(),
                &merchant_name,
                full,
                format,
            )
            .await?;
        Ok(Response::new(pb::CloseShiftResponse {
            shift: closed.shift,
            z_report: Some(z_report),
            document,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_x_report(
        &self,
        request: Request<pb::GetXReportRequest>,
    ) -> Result<Response<pb::GetXReportResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.shift_id("shift_id", &request.shift_id, false);
        let format = v.format("format", request.format);
        v.into_result()?;
        let this = &self.0;
        let terminal = this.reachable(&caller, terminal)?;
        let open = store::open(&this.db, &terminal)
            .await
            .map_err(db)?
            .ok_or_else(|| no_shift(&terminal))?;
        if !request.shift_id.is_empty() && request.shift_id != open.id {
            return Err(ApiError::FailedPrecondition(format!(
                "shift {} is not open on terminal {terminal}: an X-report is of the open shift \
                 ({}); a closed shift has its Z-report",
                request.shift_id, open.id
            ))
            .into());
        }
        let totals = this.recorders.totals(&terminal, &open.id).await?;
        let merchant_name = totals.receipts.merchant_name.clone();
        let generated_at = timestamp(now().timestamp_micros()).unwrap_or_default();
        let x = report::summary(pb::ReportKind::X, 0, &shift(&open), generated_at, totals);
        let (report, document) = this.finish(x, &merchant_name, request.full, format).await?;
        Ok(Response::new(pb::GetXReportResponse {
            report: Some(report),
            document,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_z_report(
        &self,
        request: Request<pb::GetZReportRequest>,
    ) -> Result<Response<pb::GetZReportResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        let named = match &request.report {
            Some(pb::get_z_report_request::Report::ShiftId(id)) => {
                if id.is_empty() {
                    v.add("shift_id", "is required, or report_number");
                } else {
                    v.shift_id("shift_id", id, true);
                }
                Some(Named::Id(id))
            }
            Some(pb::get_z_report_request::Report::ReportNumber(0)) => {
                v.add("report_number", "must be 1 or more");
                None
            }
            Some(pb::get_z_report_request::Report::ReportNumber(n)) => Some(Named::ZNumber(*n)),
            None => {
                v.add("report", "is required: shift_id or report_number");
                None
            }
        };
        let format = v.format("format", request.format);
        v.into_result()?;
        let this = &self.0;
        let terminal = this.reachable(&caller, terminal)?;
        let named = named.ok_or_else(|| ApiError::invalid("report", "is required"))?;
        let (row, stored) = store::find(&this.db, &terminal, named)
            .await
            .map_err(db)?
            .ok_or_else(|| {
                ApiError::NotFound(match named {
                    Named::Id(id) => format!("no shift {id} on terminal {terminal}"),
                    Named::ZNumber(n) => format!("no Z-report number {n} on terminal {terminal}"),
                })
            })?;
        let stored = stored.ok_or_else(|| {
            ApiError::FailedPrecondition(format!(
                "shift {} of terminal {terminal} is still open: it has an X-report, and its \
                 Z-report comes when it closes",
                row.id
            ))
        })?;
        let z = pb::Report::decode(stored.report.as_slice()).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!(
                "the stored Z-report of shift {} does not decode: {e}",
                row.id
            ))
        })?;
        let (report, document) = this
            .finish(z, &stored.merchant_name, request.full, format)
            .await?;
        Ok(Response::new(pb::GetZReportResponse {
            report: Some(report),
            document,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_shifts(
        &self,
        request: Request<pb::ListShiftsRequest>,
    ) -> Result<Response<pb::ListShiftsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        let state = match pb::ShiftState::try_from(request.state) {
            Ok(pb::ShiftState::Unspecified) => None,
            Ok(pb::ShiftState::Open) => Some(store::OPEN),
            Ok(pb::ShiftState::Closed) => Some(store::CLOSED),
            Err(_) => {
                v.add("state", "must be OPEN or CLOSED (or unset)");
                None
            }
        };
        let before_number = if request.page_token.is_empty() {
            None
        } else {
            let n = request.page_token.parse::<i64>().ok().filter(|n| *n > 0);
            if n.is_none() {
                v.add("page_token", "must be a next_page_token fiscus answered");
            }
            n
        };
        if request.page_size < 0 {
            v.add("page_size", "must not be negative");
        }
        let opened = request.opened.unwrap_or_default();
        let filter = store::ListFilter {
            opened_from_us: opened.start_time.as_ref().and_then(micros),
            opened_to_us: opened.end_time.as_ref().and_then(micros),
            state,
            before_number,
        };
        if let (Some(from), Some(to)) = (filter.opened_from_us, filter.opened_to_us)
            && to <= from
        {
            v.add("opened.end_time", "must be after opened.start_time");
        }
        v.into_result()?;
        let terminal = self.0.reachable(&caller, terminal)?;
        let limit = page_size(request.page_size);
        let rows = store::list(&self.0.db, &terminal, &filter, limit)
            .await
            .map_err(db)?;
        let next_page_token = match rows.last() {
            Some(last) if i64::try_from(rows.len()).unwrap_or(0) == limit => {
                last.number.to_string()
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListShiftsResponse {
            shifts: rows.iter().map(shift).collect(),
            next_page_token,
        }))
    }
}
