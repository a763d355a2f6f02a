//! `fiscus.v1.ReceiptService` over the journal.

use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use fiscus_domain::receipt::{FiscalState, ReceiptKind};
use fiscus_kit::ApiError;
use fiscus_kit::auth::Caller;
use fiscus_kit::error::shift_call;
use fiscus_kit::idempotency::{Operation, canonical_uuid, metadata_operation_id};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::receipt_service_server::ReceiptService;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::config::ProviderKind;
use crate::export;
use crate::forms::Forms;
use crate::journal::Journal;
use crate::outbox::store as outbox_store;
use crate::proto::{self, Document, FromPb, ToPb};
use crate::reference::{Reference, Taxpayer};
use crate::store::{self, ListFilter, Lookup};
use crate::validate::{self, ReceiptChecks, Violations, terminal_only};
use crate::watch::Watchers;
use fiscus_domain::TerminalId;
use fiscus_providers::ProviderError;
use fiscus_providers::ebarimt::EbarimtClient;
use fiscus_providers::fiskaltrust::{JournalType, State, StateFlags, StateOutcome};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The `fiscus.v1.ReceiptService` implementation.
#[derive(Clone)]
pub struct Receipts {
    pub(crate) journal: Arc<Journal>,
    pub(crate) watchers: Arc<Watchers>,
    /// transactionForms.json, when configured.
    pub(crate) forms: Option<Arc<Forms>>,
    pub(crate) reference: Arc<Reference>,
}

impl Receipts {
    /// The POSAPI client of the terminal's merchant, for the reference-data RPCs; a merchant
    /// that is not on e-barimt is FAILED_PRECONDITION.
    fn ebarimt(
        &self,
        caller: &Caller,
        terminal: Option<&pb::Terminal>,
    ) -> Result<(TerminalId, &EbarimtClient), Status> {
        let terminal = terminal_only(terminal)?;
        caller.check(&terminal.merchant_tin)?;
        let client = self
            .journal
            .outbox
            .ebarimt()
            .client(&terminal.merchant_tin)
            .ok_or_else(|| {
                ApiError::FailedPrecondition(format!(
                    "merchant {} is not configured with e-barimt (provider = \"ebarimt\")",
                    terminal.merchant_tin
                ))
            })?;
        Ok((terminal, client))
    }

    /// GetServiceInfo of a fiskaltrust terminal: its queue's state as the last answer gave it.
    async fn fiskaltrust_info(
        &self,
        terminal: &TerminalId,
    ) -> Result<pb::GetServiceInfoResponse, ApiError> {
        let (standing, waiting) = outbox_store::ft_standing(&self.journal.db, terminal).await?;
        let state = standing
            .ft_state
            .map(outbox_store::state_of_bits)
            .unwrap_or_default();
        let flags = match State(state).outcome() {
            StateOutcome::Success(flags) => flags,
            StateOutcome::Error | StateOutcome::Fail => StateFlags::NONE,
        };
        Ok(pb::GetServiceInfoResponse {
            provider: pb::Provider::Fiskaltrust.into(),
            ft_state: state,
            failed_mode: flags.contains(StateFlags::SCU_OUT_OF_SERVICE),
            late_signing: flags.contains(StateFlags::LATE_SIGNING),
            ft_queue_id: standing.ft_queue_id.unwrap_or_default(),
            ft_cashbox_identification: standing.ft_cashbox_identification.unwrap_or_default(),
            pending_receipts: u64::try_from(waiting).unwrap_or_default(),
            ..Default::default()
        })
    }

    /// The token the central API's lookups for the terminal's merchant carry, if it has one.
    async fn bearer(&self, terminal: &TerminalId) -> Result<Option<String>, ApiError> {
        let credential = self
            .journal
            .policy
            .ebarimt_credential(&terminal.merchant_tin);
        self.reference
            .bearer(&terminal.merchant_tin, credential)
            .await
    }
}

/// The time now, to the microsecond: what a journaled document can hold.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn micros(ts: &prost_types::Timestamp) -> Option<i64> {
    DateTime::<Utc>::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
        .map(|t| t.timestamp_micros())
}

fn page_size(requested: i32) -> i64 {
    match requested {
        n if n <= 0 => 50,
        n => i64::from(n.min(500)),
    }
}

#[tonic::async_trait]
impl ReceiptService for Receipts {
    #[tracing::instrument(skip_all)]
    async fn sign_receipt(
        &self,
        request: Request<pb::SignReceiptRequest>,
    ) -> Result<Response<pb::SignReceiptResponse>, Status> {
        let metadata_id = metadata_operation_id(&request);
        let caller = Caller::of(&request);
        let mut request = request.into_inner();
        if let Some(terminal) = &request.terminal {
            caller.check(&terminal.merchant_tin)?;
        }
        let now = now();
        let mut v = Violations::default();
        let operation_id =
            validate::operation_id(&request.operation_id, metadata_id.as_deref(), &mut v);
        let draft = validate::sign_request(&request, &self.journal.policy, now, &mut v);
        v.into_result()?;
        let draft = draft.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        let operation = Operation::new(
            &draft.receipt.merchant_tin,
            &operation_id,
            "SignReceipt",
            &mut request,
        );
        let receipt = self.journal.sign(draft, &operation, now).await?;
        Ok(Response::new(pb::SignReceiptResponse {
            receipt: Some(receipt),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_receipt(
        &self,
        request: Request<pb::CancelReceiptRequest>,
    ) -> Result<Response<pb::CancelReceiptResponse>, Status> {
        use pb::cancel_receipt_request::Receipt as R;
        let metadata_id = metadata_operation_id(&request);
        let caller = Caller::of(&request);
        let mut request = request.into_inner();
        if let Some(terminal) = &request.terminal {
            caller.check(&terminal.merchant_tin)?;
        }
        let mut v = Violations::default();
        let operation_id =
            validate::operation_id(&request.operation_id, metadata_id.as_deref(), &mut v);
        let terminal = validate::terminal(request.terminal.as_ref(), "terminal", &mut v);
        v.text("reason", &request.reason, 512, false);
        v.text("cashier", &request.cashier, 128, false);
        let target = match &request.receipt {
            Some(R::ReceiptId(id)) if !id.is_empty() => Some(R::ReceiptId(id.clone())),
            Some(R::ReceiptReference(r)) if !r.is_empty() => Some(R::ReceiptReference(r.clone())),
            _ => {
                v.add(
                    "receipt",
                    "name the receipt by receipt_id or receipt_reference",
                );
                None
            }
        };
        v.into_result()?;
        let (Some(terminal), Some(target)) = (terminal, target) else {
            return Err(ApiError::invalid("receipt", "is required").into());
        };
        let lookup = match &target {
            R::ReceiptId(id) => Lookup::Id(id),
            R::ReceiptReference(r) => Lookup::Reference(&terminal, r),
        };
        let operation = Operation::new(
            &terminal.merchant_tin,
            &operation_id,
            "CancelReceipt",
            &mut request,
        );
        let response = self
            .journal
            .cancel(
                &terminal,
                lookup,
                &request.reason,
                &request.cashier,
                &operation,
                now(),
            )
            .await?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn get_receipt(
        &self,
        request: Request<pb::GetReceiptRequest>,
    ) -> Result<Response<pb::GetReceiptResponse>, Status> {
        use pb::get_receipt_request::Lookup as L;
        let caller = Caller::of(&request);
        let request = request.into_inner();
        if let Some(terminal) = &request.terminal {
            caller.check(&terminal.merchant_tin)?;
        }
        let by_id = matches!(&request.lookup, Some(L::ReceiptId(_)));
        let terminal = if by_id && request.terminal.is_none() {
            None
        } else {
            Some(terminal_only(request.terminal.as_ref())?)
        };
        let lookup = match (&request.lookup, &terminal) {
            (Some(L::ReceiptId(id)), _) if !id.is_empty() => Lookup::Id(id),
            (Some(L::ReceiptReference(r)), Some(t)) if !r.is_empty() => Lookup::Reference(t, r),
            (Some(L::ReceiptNumber(n)), Some(t)) if *n > 0 => Lookup::Number(t, *n),
            _ => {
                return Err(ApiError::invalid(
                    "lookup",
                    "name the receipt by receipt_id, receipt_reference or receipt_number",
                )
                .into());
            }
        };
        let row = store::find(&self.journal.db, &lookup)
            .await
            .map_err(ApiError::from)?
            .filter(|row| terminal.as_ref().is_none_or(|t| row.terminal() == *t))
            .ok_or_else(|| ApiError::NotFound("no such receipt".into()))?;
        caller.check(&row.merchant_tin)?;
        Ok(Response::new(pb::GetReceiptResponse {
            receipt: Some(row.view(Document::Included(&row.document))?),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_receipts(
        &self,
        request: Request<pb::ListReceiptsRequest>,
    ) -> Result<Response<pb::ListReceiptsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal = terminal_only(request.terminal.as_ref())?;
        caller.check(&terminal.merchant_tin)?;
        let before_number = match request.page_token.as_str() {
            "" => None,
            token => Some(
                token
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ApiError::invalid("page_token", "is not a token this service issued")
                    })?,
            ),
        };
        let created = request.created.unwrap_or_default();
        let filter = ListFilter {
            shift_id: (!request.shift_id.is_empty()).then(|| request.shift_id.clone()),
            created_from_us: created.start_time.as_ref().and_then(micros),
            created_to_us: created.end_time.as_ref().and_then(micros),
            kinds: request
                .kinds()
                .filter_map(ReceiptKind::from_pb)
                .map(|k| k.as_str().to_owned())
                .collect(),
            states: request
                .fiscal_states()
                .filter_map(FiscalState::from_pb)
                .map(|s| s.as_str().to_owned())
                .collect(),
            before_number,
        };
        let limit = page_size(request.page_size);
        let rows = store::list(&self.journal.db, &terminal, &filter, limit)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match rows.last() {
            Some(last) if rows.len() as i64 == limit && last.number > 1 => last.number.to_string(),
            _ => String::new(),
        };
        let receipts = rows
            .iter()
            .map(|row| row.view(Document::Omitted))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListReceiptsResponse {
            receipts,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn watch_receipt(
        &self,
        request: Request<pb::WatchReceiptRequest>,
    ) -> Result<Response<BoxStream<pb::WatchReceiptResponse>>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        if request.receipt_id.is_empty() {
            return Err(ApiError::invalid("receipt_id", "is required").into());
        }
        // Subscribe before reading, so no change between the read and the subscription is lost.
        let subscription = self.watchers.subscribe(&request.receipt_id)?;
        let id = &request.receipt_id;
        let row = store::find(&self.journal.db, &Lookup::Id(id))
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("no receipt {id}")))?;
        caller.check(&row.merchant_tin)?;
        let standing = row
            .standing()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("receipt {id}: {e}")))?;
        let first = pb::ReceiptEvent {
            receipt_id: row.id.clone(),
            state: standing.fiscal_state.to_pb().into(),
            message: standing.state_message.clone(),
            timestamp: Some(proto::timestamp(Utc::now())),
        };
        Ok(Response::new(Box::pin(
            subscription.stream(first, request.follow),
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_journal(
        &self,
        request: Request<pb::VerifyJournalRequest>,
    ) -> Result<Response<pb::VerifyJournalResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal = terminal_only(request.terminal.as_ref())?;
        caller.check(&terminal.merchant_tin)?;
        if request.to_number != 0 && request.to_number < request.from_number {
            return Err(ApiError::invalid("to_number", "must not be below from_number").into());
        }
        Ok(Response::new(
            self.journal
                .verify(&terminal, request.from_number, request.to_number)
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn export_journal(
        &self,
        request: Request<pb::ExportJournalRequest>,
    ) -> Result<Response<BoxStream<pb::ExportJournalResponse>>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal = terminal_only(request.terminal.as_ref())?;
        caller.check(&terminal.merchant_tin)?;
        let format = match pb::JournalExportFormat::try_from(request.format) {
            Ok(pb::JournalExportFormat::JsonLines) => export::Format::JsonLines,
            Ok(pb::JournalExportFormat::Csv) => export::Format::Csv,
            _ => return Err(ApiError::invalid("format", "is required: JSON_LINES or CSV").into()),
        };
        let created = request.created.unwrap_or_default();
        let range = export::Range {
            from_number: request.from_number,
            to_number: if request.to_number == 0 {
                u64::MAX
            } else {
                request.to_number
            },
            created_from_us: created.start_time.as_ref().and_then(micros),
            created_to_us: created.end_time.as_ref().and_then(micros),
        };
        let stream = export::stream(self.journal.db.clone(), terminal, format, range);
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn render_receipt(
        &self,
        request: Request<pb::RenderReceiptRequest>,
    ) -> Result<Response<pb::RenderReceiptResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        if request.receipt_id.is_empty() {
            return Err(ApiError::invalid("receipt_id", "is required").into());
        }
        let format = pb::DocumentFormat::try_from(request.format).unwrap_or_default();
        if format == pb::DocumentFormat::Unspecified {
            return Err(ApiError::invalid("format", "is required: TXT, PDF, PNG or JSON").into());
        }
        if request.line_width != 0 && !(32..=64).contains(&request.line_width) {
            return Err(
                ApiError::invalid("line_width", "must be between 32 and 64 (0 = 48)").into(),
            );
        }
        let row = store::find(&self.journal.db, &Lookup::Id(&request.receipt_id))
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("no receipt {}", request.receipt_id)))?;
        caller.check(&row.merchant_tin)?;
        let receipt = row.view(Document::Omitted)?;
        // Rasterizing and compressing take milliseconds of CPU: keep them off the async workers.
        let policy = self.journal.policy.clone();
        let document = tokio::task::spawn_blocking(move || {
            crate::render::render(&receipt, &policy, format, request.line_width, request.copy)
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("rendering task failed: {e}")))??;
        Ok(Response::new(pb::RenderReceiptResponse {
            document: Some(document),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_signing_keys(
        &self,
        request: Request<pb::GetSigningKeysRequest>,
    ) -> Result<Response<pb::GetSigningKeysResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        if request.merchant_tin.is_empty() {
            caller.check_all()?;
        } else {
            caller.check(&request.merchant_tin)?;
        }
        let keys = store::keys(&self.journal.db, &request.merchant_tin)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .filter(|k| request.key_id.is_empty() || k.key_id == request.key_id)
            .map(|k| {
                let unreadable = |e: fiscus_domain::keys::KeyError| {
                    ApiError::Internal(anyhow::anyhow!("signing key {}: {e}", k.key_id))
                };
                let der = fiscus_domain::keys::public_key_der(&k.public_key).map_err(unreadable)?;
                let pem = fiscus_domain::keys::public_key_pem(&k.public_key).map_err(unreadable)?;
                Ok(pb::SigningKey {
                    key_id: k.key_id,
                    algorithm: pb::SignatureAlgorithm::Ed25519.into(),
                    public_key_pem: pem,
                    public_key_der: der,
                    merchant_tin: k.merchant_tin,
                    created_at: proto::micros_timestamp(k.created_at_us),
                    retired_at: None,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(Response::new(pb::GetSigningKeysResponse { keys }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_terminal_shift(
        &self,
        request: Request<pb::SetTerminalShiftRequest>,
    ) -> Result<Response<pb::SetTerminalShiftResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal = shift_call(request.terminal.as_ref(), &request.shift_id, false)?;
        caller.check(&terminal.merchant_tin)?;
        Ok(Response::new(
            self.journal.set_shift(&terminal, &request.shift_id).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_shift_totals(
        &self,
        request: Request<pb::GetShiftTotalsRequest>,
    ) -> Result<Response<pb::GetShiftTotalsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal = shift_call(request.terminal.as_ref(), &request.shift_id, true)?;
        caller.check(&terminal.merchant_tin)?;
        let totals = self
            .journal
            .shift_totals(&terminal, &request.shift_id)
            .await?;
        Ok(Response::new(pb::GetShiftTotalsResponse {
            totals: Some(totals),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_shift_receipts(
        &self,
        request: Request<pb::ListShiftReceiptsRequest>,
    ) -> Result<Response<BoxStream<pb::ListShiftReceiptsResponse>>, Status> {
        use futures::TryStreamExt;
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal = shift_call(request.terminal.as_ref(), &request.shift_id, true)?;
        caller.check(&terminal.merchant_tin)?;
        let stream = self
            .journal
            .shift_receipts(terminal, request.shift_id)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn sign_transaction(
        &self,
        request: Request<pb::SignTransactionRequest>,
    ) -> Result<Response<pb::SignTransactionResponse>, Status> {
        let metadata_id = metadata_operation_id(&request);
        let caller = Caller::of(&request);
        let mut request = request.into_inner();
        if let Some(terminal) = &request.terminal {
            caller.check(&terminal.merchant_tin)?;
        }
        let Some(forms) = &self.forms else {
            return Err(ApiError::FailedPrecondition(
                "no transactionForms.json is configured (receipts.transaction_forms)".to_owned(),
            )
            .into());
        };
        let now = now();
        let mut v = Violations::default();
        let operation_id =
            validate::operation_id(&request.operation_id, metadata_id.as_deref(), &mut v);
        v.text("record_id", &request.record_id, 128, true);
        v.into_result()?;
        let mut receipt_request = forms
            .receipt_request(&request, pb::ReceiptType::B2cReceipt)
            .map_err(ApiError::from)?;
        receipt_request.operation_id = operation_id.clone();
        let mut v = Violations::default();
        let draft = validate::sign_request(&receipt_request, &self.journal.policy, now, &mut v);
        v.into_result()?;
        let draft = draft.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        let operation = Operation::new(
            &draft.receipt.merchant_tin,
            &operation_id,
            "SignTransaction",
            &mut request,
        );
        let receipt = self.journal.sign(draft, &operation, now).await?;
        Ok(Response::new(pb::SignTransactionResponse {
            receipt_issued: true,
            write_back: forms
                .write_back(&request.form_name, &receipt)
                .into_iter()
                .collect(),
            receipt: Some(receipt),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_pending(
        &self,
        request: Request<pb::ListPendingRequest>,
    ) -> Result<Response<pb::ListPendingResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal = terminal_only(request.terminal.as_ref())?;
        caller.check(&terminal.merchant_tin)?;
        let after = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ApiError::invalid("page_token", "is not a token this RPC gave out")
                })?
        };
        if request.page_size < 0 {
            return Err(ApiError::invalid("page_size", "must not be negative").into());
        }
        Ok(Response::new(
            self.journal
                .pending(
                    &terminal,
                    request.include_dead_letters,
                    after,
                    page_size(request.page_size),
                )
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn resend_pending(
        &self,
        request: Request<pb::ResendPendingRequest>,
    ) -> Result<Response<pb::ResendPendingResponse>, Status> {
        let metadata_id = metadata_operation_id(&request);
        let caller = Caller::of(&request);
        let mut request = request.into_inner();
        if let Some(terminal) = &request.terminal {
            caller.check(&terminal.merchant_tin)?;
        }
        let mut v = Violations::default();
        let operation_id =
            validate::operation_id(&request.operation_id, metadata_id.as_deref(), &mut v);
        let terminal = validate::terminal(request.terminal.as_ref(), "terminal", &mut v);
        if request.receipt_ids.len() > 500 {
            v.add("receipt_ids", "at most 500 receipts at once");
        }
        let mut ids = Vec::with_capacity(request.receipt_ids.len());
        for (index, id) in request.receipt_ids.iter().enumerate() {
            match canonical_uuid(id) {
                Some(id) if !ids.contains(&id) => ids.push(id),
                Some(_) => v.add(
                    format!("receipt_ids[{index}]"),
                    "names a receipt already named",
                ),
                None => v.add(
                    format!("receipt_ids[{index}]"),
                    "must be a receipt id (a UUID)",
                ),
            }
        }
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        // The same receipts however they were spelled are the same request.
        request.receipt_ids = ids.clone();
        let operation = Operation::new(
            &terminal.merchant_tin,
            &operation_id,
            "ResendPending",
            &mut request,
        );
        Ok(Response::new(
            self.journal.resend(&terminal, &ids, &operation).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_service_info(
        &self,
        request: Request<pb::GetServiceInfoRequest>,
    ) -> Result<Response<pb::GetServiceInfoResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal = terminal_only(request.terminal.as_ref())?;
        caller.check(&terminal.merchant_tin)?;
        if self.journal.policy.provider(&terminal.merchant_tin) == ProviderKind::Fiskaltrust {
            return Ok(Response::new(self.fiskaltrust_info(&terminal).await?));
        }
        let (_, client) = self.ebarimt(&caller, request.terminal.as_ref())?;
        Ok(Response::new(self.reference.service_info(client).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn export_provider_journal(
        &self,
        request: Request<pb::ExportProviderJournalRequest>,
    ) -> Result<Response<BoxStream<pb::ExportProviderJournalResponse>>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal = terminal_only(request.terminal.as_ref())?;
        caller.check(&terminal.merchant_tin)?;
        let journal_type = match pb::ProviderJournalType::try_from(request.r#type) {
            Ok(pb::ProviderJournalType::ReceiptJournal) => JournalType::ReceiptJournal,
            Ok(pb::ProviderJournalType::ActionJournal) => JournalType::ActionJournal,
            Ok(pb::ProviderJournalType::QueueItem) => JournalType::QueueItem,
            _ => {
                return Err(ApiError::invalid(
                    "type",
                    "is required: RECEIPT_JOURNAL, ACTION_JOURNAL or QUEUE_ITEM",
                )
                .into());
            }
        };
        let queue_id = if request.queue_id.is_empty() {
            let (standing, _) = outbox_store::ft_standing(&self.journal.db, &terminal)
                .await
                .map_err(ApiError::from)?;
            standing.ft_queue_id.ok_or_else(|| {
                ApiError::FailedPrecondition(format!(
                    "terminal {terminal} has no receipt signed by fiskaltrust yet: name its \
                     queue in queue_id"
                ))
            })?
        } else {
            canonical_uuid(&request.queue_id)
                .ok_or_else(|| ApiError::invalid("queue_id", "must be a UUID"))?
        };
        let access = self
            .journal
            .outbox
            .fiskaltrust()
            .journal_access(&terminal.merchant_tin)
            .await
            .ok_or_else(|| not_on_fiskaltrust(&terminal))?
            .map_err(ApiError::Unavailable)?;
        let (client, credentials) = access;
        let mut journal = client
            .journal(&credentials, &queue_id, journal_type)
            .await
            .map_err(|e| match e {
                ProviderError::Refused {
                    status: 404,
                    description,
                    ..
                } => ApiError::NotFound(format!("fiskaltrust: queue {queue_id}: {description}")),
                other => ApiError::Unavailable(other.to_string()),
            })?;
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            loop {
                let next = match journal.chunk().await {
                    Ok(Some(data)) => Ok(pb::ExportProviderJournalResponse {
                        data: data.to_vec(),
                    }),
                    Ok(None) => return,
                    Err(e) => Err(Status::from(ApiError::Unavailable(e.to_string()))),
                };
                let failed = next.is_err();
                if sender.send(next).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn list_bank_accounts(
        &self,
        request: Request<pb::ListBankAccountsRequest>,
    ) -> Result<Response<pb::ListBankAccountsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let (terminal, client) = self.ebarimt(&caller, request.terminal.as_ref())?;
        let tin = if request.tin.is_empty() {
            terminal.merchant_tin.clone()
        } else {
            taxpayer_tin("tin", &request.tin)?
        };
        Ok(Response::new(
            self.reference
                .bank_accounts(&terminal.merchant_tin, client, &tin)
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_taxpayer_info(
        &self,
        request: Request<pb::GetTaxpayerInfoRequest>,
    ) -> Result<Response<pb::GetTaxpayerInfoResponse>, Status> {
        use pb::get_taxpayer_info_request::Taxpayer as T;
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let (terminal, client) = self.ebarimt(&caller, request.terminal.as_ref())?;
        let token = self.bearer(&terminal).await?;
        let tin;
        let lookup = match &request.taxpayer {
            Some(T::Tin(text)) => {
                tin = taxpayer_tin("tin", text)?;
                Taxpayer::Tin(&tin)
            }
            Some(T::RegNo(reg_no)) if !reg_no.trim().is_empty() && reg_no.chars().count() <= 16 => {
                Taxpayer::RegNo(reg_no.trim())
            }
            Some(T::RegNo(_)) => {
                return Err(ApiError::invalid(
                    "reg_no",
                    "must be a state registration number such as \"АА12345678\"",
                )
                .into());
            }
            None => {
                return Err(ApiError::invalid("taxpayer", "name it by tin or reg_no").into());
            }
        };
        Ok(Response::new(
            self.reference
                .taxpayer(&terminal.merchant_tin, client, token.as_deref(), &lookup)
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_branch_info(
        &self,
        request: Request<pb::GetBranchInfoRequest>,
    ) -> Result<Response<pb::GetBranchInfoResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let (terminal, client) = self.ebarimt(&caller, request.terminal.as_ref())?;
        let token = self.bearer(&terminal).await?;
        Ok(Response::new(
            self.reference
                .branches(&terminal.merchant_tin, client, token.as_deref())
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_tax_types(
        &self,
        request: Request<pb::ListTaxTypesRequest>,
    ) -> Result<Response<pb::ListTaxTypesResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let (terminal, client) = self.ebarimt(&caller, request.terminal.as_ref())?;
        let only = proto::enum_field::<fiscus_domain::TaxType, pb::TaxType>(request.tax_type);
        if only.is_none() && request.tax_type != 0 {
            return Err(ApiError::invalid("tax_type", "is not a tax type").into());
        }
        let vat_rate = self.journal.policy.vat_rate.to_string();
        let token = self.bearer(&terminal).await?;
        Ok(Response::new(
            self.reference
                .tax_types(
                    &terminal.merchant_tin,
                    client,
                    token.as_deref(),
                    &vat_rate,
                    only,
                )
                .await?,
        ))
    }
}

/// A TIN as e-barimt writes it: 11 to 14 digits.
fn taxpayer_tin(field: &str, text: &str) -> Result<String, ApiError> {
    let tin = text.trim();
    if (11..=14).contains(&tin.len()) && tin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(tin.to_owned())
    } else {
        Err(ApiError::invalid(
            field,
            format!("must be a TIN of 11 to 14 digits, not {text:?}"),
        ))
    }
}

fn not_on_fiskaltrust(terminal: &TerminalId) -> ApiError {
    ApiError::FailedPrecondition(format!(
        "merchant {} is not configured with fiskaltrust (provider = \"fiskaltrust\")",
        terminal.merchant_tin
    ))
}
