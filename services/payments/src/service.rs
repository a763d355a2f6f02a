//! The gRPC edge of PaymentService: every request checked field by field before anything else
//! (INVALID_ARGUMENT naming each field), the caller's merchant checked, ids of other terminals
//! refused, and every mutating RPC done once per operation id.

use std::sync::Arc;
use std::time::Duration;

use fiscus_domain::qr::{
    AmountType, AmountsAsked, PaymentState, QrType, RefundAsk, parse_amount, request_at_creation,
    request_on_permanent_qr, ttl,
};
use fiscus_domain::{Money, TerminalId};
use fiscus_kit::auth::Caller;
use fiscus_kit::idempotency::{self, Operation, metadata_operation_id};
use fiscus_kit::{ApiError, Violations};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::payment_service_server::PaymentService;
use fiscus_providers::mia::QrSettings;
use tonic::{Request, Response, Status};

use crate::mia::upstream_error;
use crate::payments::{Payments, db, tenant};
use crate::proto;
use crate::qrs::{NewQr, NewRequest};
use crate::store::{self, QrRow, RequestRow};
use crate::transactions::{NewRefund, PageToken};
use crate::watch::WatchStream;

type BoxStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// The `fiscus.v1.PaymentService` implementation.
#[derive(Clone)]
pub struct PaymentsService {
    pub payments: Arc<Payments>,
}

/// What PaymentService checks of a request beyond what every service does.
trait PaymentChecks {
    fn session(&mut self, session_id: &str);
    /// An id MIA gave (a UUID).
    fn mia_id(&mut self, field: &str, value: &str);
    fn transaction_id(&mut self, value: &str) -> Option<u64>;
    fn text(&mut self, field: &str, value: &str, max: usize, required: bool);
    fn amounts(
        &mut self,
        problems: Vec<(
            fiscus_domain::qr::AmountField,
            fiscus_domain::qr::AmountProblem,
        )>,
    );
}

impl PaymentChecks for Violations {
    fn session(&mut self, session_id: &str) {
        if session_id.is_empty() {
            self.add(
                "seller_session_id",
                "is required: the session TokenService.SellerLogin answered",
            );
        } else if uuid::Uuid::try_parse(session_id).is_err() {
            self.add(
                "seller_session_id",
                "must be the session id TokenService.SellerLogin answered (a UUID)",
            );
        }
    }

    fn mia_id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.add(field, "is required");
        } else if uuid::Uuid::try_parse(value).is_err() {
            self.add(field, "must be the UUID fiscus answered");
        }
    }

    fn transaction_id(&mut self, value: &str) -> Option<u64> {
        if value.is_empty() {
            self.add("transaction_id", "is required");
            return None;
        }
        let parsed = value
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| value.parse::<u64>().ok())
            .flatten();
        if parsed.is_none() {
            self.add(
                "transaction_id",
                "must be MIA's transaction id (decimal digits)",
            );
        }
        parsed
    }

    fn text(&mut self, field: &str, value: &str, max: usize, required: bool) {
        if required && value.trim().is_empty() {
            self.add(field, "is required");
        } else if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
    }

    fn amounts(
        &mut self,
        problems: Vec<(
            fiscus_domain::qr::AmountField,
            fiscus_domain::qr::AmountProblem,
        )>,
    ) {
        for (field, problem) in problems {
            self.add(field.name(), problem.to_string());
        }
    }
}

/// How long a new watcher waits for MIA's first answer before it is sent the state known.
const FIRST_CHECK_WAIT: Duration = Duration::from_secs(2);

/// How long an upstream-calling operation holds its id: past every MIA call it makes.
fn lease(payments: &Payments) -> Duration {
    payments.config.mia_timeout() * 4 + Duration::from_secs(30)
}

fn operation<R: fiscus_proto::Mutating>(
    terminal: &TerminalId,
    id: &str,
    rpc: &'static str,
    request: &mut R,
) -> Operation {
    Operation::new(&tenant(terminal), id, rpc, request)
}

fn not_on_terminal(what: &str, id: &str, terminal: &TerminalId) -> ApiError {
    ApiError::NotFound(format!(
        "{what}: fiscus issued no {id} on terminal {terminal}"
    ))
}

impl PaymentsService {
    fn p(&self) -> &Payments {
        &self.payments
    }

    /// The terminal of one of ShiftService's requests, whose shift id is checked.
    fn shift_request(
        &self,
        caller: &Caller,
        terminal: Option<&pb::Terminal>,
        shift_id: &str,
        required: bool,
    ) -> Result<TerminalId, Status> {
        let terminal = fiscus_kit::error::shift_call(terminal, shift_id, required)?;
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        Ok(terminal)
    }

    async fn once<Res, F>(&self, operation: &Operation, work: F) -> Result<Res, Status>
    where
        Res: prost::Message + Default,
        F: std::future::Future<Output = Result<Res, ApiError>>,
    {
        Ok(idempotency::once_upstream(
            &self.p().db,
            self.p().cache.as_ref(),
            operation,
            lease(self.p()),
            work,
        )
        .await?)
    }

    /// The QR code `qr_id` of `terminal`, as fiscus recorded it.
    async fn qr_of(&self, terminal: &TerminalId, qr_id: &str) -> Result<QrRow, ApiError> {
        store::qr(&self.p().db, qr_id)
            .await
            .map_err(db)?
            .filter(|q| q.terminal() == *terminal)
            .ok_or_else(|| not_on_terminal("qr_id", &format!("QR code {qr_id}"), terminal))
    }

    /// The payment request a status or watch request names (an extension, or a dynamic QR's).
    async fn request_of(
        &self,
        terminal: &TerminalId,
        extension_id: Option<&str>,
        qr_id: Option<&str>,
    ) -> Result<RequestRow, ApiError> {
        if let Some(extension_id) = extension_id {
            return store::request(&self.p().db, extension_id)
                .await
                .map_err(db)?
                .filter(|r| r.terminal() == *terminal)
                .ok_or_else(|| {
                    not_on_terminal(
                        "extension_id",
                        &format!("payment request {extension_id}"),
                        terminal,
                    )
                });
        }
        let qr_id = qr_id.unwrap_or_default();
        let qr = self.qr_of(terminal, qr_id).await?;
        if qr.qr_type != QrType::Dynamic.as_str() {
            return Err(ApiError::FailedPrecondition(format!(
                "qr_id: QR code {qr_id} is {}: name one of its payment requests by extension_id",
                qr.qr_type
            )));
        }
        store::newest_request_of(&self.p().db, qr_id)
            .await
            .map_err(db)?
            .ok_or_else(|| {
                not_on_terminal(
                    "qr_id",
                    &format!("payment request of QR code {qr_id}"),
                    terminal,
                )
            })
    }
}

/// The `payment` oneof of status and watch requests, checked.
fn payment_ref(
    v: &mut Violations,
    payment: Option<&pb::get_payment_status_request::Payment>,
) -> (Option<String>, Option<String>) {
    use pb::get_payment_status_request::Payment;
    match payment {
        Some(Payment::ExtensionId(id)) => {
            v.mia_id("extension_id", id);
            (Some(id.clone()), None)
        }
        Some(Payment::QrId(id)) => {
            v.mia_id("qr_id", id);
            (None, Some(id.clone()))
        }
        None => {
            v.add("payment", "one of extension_id and qr_id is required");
            (None, None)
        }
    }
}

fn watch_payment_ref(
    payment: Option<&pb::watch_payment_request::Payment>,
) -> Option<pb::get_payment_status_request::Payment> {
    use pb::get_payment_status_request::Payment as Status;
    use pb::watch_payment_request::Payment;
    payment.map(|p| match p {
        Payment::ExtensionId(id) => Status::ExtensionId(id.clone()),
        Payment::QrId(id) => Status::QrId(id.clone()),
    })
}

#[tonic::async_trait]
impl PaymentService for PaymentsService {
    #[tracing::instrument(skip_all)]
    async fn create_qr(
        &self,
        request: Request<pb::CreateQrRequest>,
    ) -> Result<Response<pb::CreateQrResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let mut v = Violations::default();
        let id = v.operation_id(&request.operation_id, metadata_id.as_deref());
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        let qr_type = proto::qr_type_from_pb(request.r#type);
        if qr_type.is_none() {
            v.add("type", "is required: DYNAMIC, STATIC or HYBRID");
        }
        let amount_type = proto::amount_type_from_pb(request.amount_type);
        if amount_type.is_none() {
            v.add("amount_type", "is required: FIXED, FREE or CONTROLLED");
        }
        v.text("client_reference", &request.client_reference, 128, false);
        let mut payment_request = None;
        if let (Some(qr_type), Some(amount_type)) = (qr_type, amount_type) {
            let asked = AmountsAsked {
                amount: &request.amount,
                min_amount: &request.min_amount,
                max_amount: &request.max_amount,
            };
            match request_at_creation(qr_type, amount_type, asked) {
                Ok(amounts) => payment_request = amounts,
                Err(problems) => v.amounts(problems),
            }
        }
        v.into_result()?;
        let (Some(terminal), Some(qr_type), Some(amount_type)) = (terminal, qr_type, amount_type)
        else {
            return Err(ApiError::invalid("terminal", "is required").into());
        };
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        let operation = operation(&terminal, &id, "CreateQr", &mut request);
        let new = NewQr {
            terminal,
            qr_type,
            amount_type,
            request: payment_request,
            client_reference: request.client_reference.clone(),
            include_image: request.include_image,
        };
        let work = async {
            let seller = self
                .p()
                .mia
                .seller(&new.terminal, &request.seller_session_id)
                .await?;
            self.p().create_qr(&id, &new, &seller).await
        };
        Ok(Response::new(self.once(&operation, work).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_qr(
        &self,
        request: Request<pb::GetQrRequest>,
    ) -> Result<Response<pb::GetQrResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        v.mia_id("qr_id", &request.qr_id);
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        let row = self.qr_of(&terminal, &request.qr_id).await?;
        let seller = self
            .p()
            .mia
            .seller(&terminal, &request.seller_session_id)
            .await?;
        let qr = self.p().get_qr(row, &seller, request.include_image).await?;
        Ok(Response::new(pb::GetQrResponse { qr: Some(qr) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_active_qrs(
        &self,
        request: Request<pb::ListActiveQrsRequest>,
    ) -> Result<Response<pb::ListActiveQrsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        let qr_type = match pb::QrType::try_from(request.r#type) {
            Ok(pb::QrType::Unspecified) => None,
            Ok(_) => proto::qr_type_from_pb(request.r#type),
            Err(_) => {
                v.add("type", "must be DYNAMIC, STATIC, HYBRID or unset");
                None
            }
        };
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        let seller = self
            .p()
            .mia
            .seller(&terminal, &request.seller_session_id)
            .await?;
        let qrs = self
            .p()
            .active_qrs(&terminal, qr_type, request.include_image, &seller)
            .await?;
        Ok(Response::new(pb::ListActiveQrsResponse { qrs }))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_qr(
        &self,
        request: Request<pb::CancelQrRequest>,
    ) -> Result<Response<pb::CancelQrResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let mut v = Violations::default();
        let id = v.operation_id(&request.operation_id, metadata_id.as_deref());
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        v.mia_id("qr_id", &request.qr_id);
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        let row = self.qr_of(&terminal, &request.qr_id).await?;
        let operation = operation(&terminal, &id, "CancelQr", &mut request);
        let work = async {
            let seller = self
                .p()
                .mia
                .seller(&terminal, &request.seller_session_id)
                .await?;
            let qr = self.p().cancel_qr(row, &seller).await?;
            Ok(pb::CancelQrResponse { qr: Some(qr) })
        };
        Ok(Response::new(self.once(&operation, work).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn create_payment_request(
        &self,
        request: Request<pb::CreatePaymentRequestRequest>,
    ) -> Result<Response<pb::CreatePaymentRequestResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let mut v = Violations::default();
        let id = v.operation_id(&request.operation_id, metadata_id.as_deref());
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        v.mia_id("qr_id", &request.qr_id);
        v.text("client_reference", &request.client_reference, 128, false);
        // The amounts' form is checked before the QR is looked up; what they must be, after.
        for (field, text) in [
            ("amount", &request.amount),
            ("min_amount", &request.min_amount),
            ("max_amount", &request.max_amount),
        ] {
            if !text.is_empty()
                && let Err(problem) = parse_amount(text)
            {
                v.add(field, problem.to_string());
            }
        }
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        let qr = self.qr_of(&terminal, &request.qr_id).await?;
        let qr_type = QrType::parse(&qr.qr_type).unwrap_or(QrType::Dynamic);
        let amount_type = AmountType::parse(&qr.amount_type).unwrap_or(AmountType::Free);
        let asked = AmountsAsked {
            amount: &request.amount,
            min_amount: &request.min_amount,
            max_amount: &request.max_amount,
        };
        let amounts = match request_on_permanent_qr(qr_type, amount_type, asked) {
            Err(dynamic) => {
                return Err(ApiError::FailedPrecondition(format!("qr_id: {dynamic}")).into());
            }
            Ok(Err(problems)) => {
                let mut v = Violations::default();
                v.amounts(problems);
                return Err(v
                    .into_result()
                    .err()
                    .unwrap_or_else(|| {
                        ApiError::invalid("amount", "does not fit the QR code's amount type")
                    })
                    .into());
            }
            Ok(Ok(amounts)) => amounts,
        };
        if qr.state != "active" {
            return Err(ApiError::FailedPrecondition(format!(
                "qr_id: QR code {} is {}; it takes no payment request",
                qr.qr_id, qr.state
            ))
            .into());
        }
        let operation = operation(&terminal, &id, "CreatePaymentRequest", &mut request);
        let new = NewRequest {
            qr,
            amounts,
            client_reference: request.client_reference.clone(),
        };
        let work = async {
            let seller = self
                .p()
                .mia
                .seller(&terminal, &request.seller_session_id)
                .await?;
            self.p().create_request(&id, &new, &seller).await
        };
        Ok(Response::new(self.once(&operation, work).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_payment_request(
        &self,
        request: Request<pb::CancelPaymentRequestRequest>,
    ) -> Result<Response<pb::CancelPaymentRequestResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let mut v = Violations::default();
        let id = v.operation_id(&request.operation_id, metadata_id.as_deref());
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        v.mia_id("extension_id", &request.extension_id);
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        let row = self
            .request_of(&terminal, Some(&request.extension_id), None)
            .await?;
        let qr_type = QrType::parse(&row.qr_type).unwrap_or(QrType::Dynamic);
        if !qr_type.request_is_cancellable() {
            return Err(ApiError::FailedPrecondition(format!(
                "extension_id: only a hybrid QR's payment request can be cancelled; {} belongs to a {} QR (cancel the QR with CancelQr)",
                row.extension_id, row.qr_type
            ))
            .into());
        }
        let operation = operation(&terminal, &id, "CancelPaymentRequest", &mut request);
        let work = async {
            let seller = self
                .p()
                .mia
                .seller(&terminal, &request.seller_session_id)
                .await?;
            let state = self.p().cancel_request(row, &seller).await?;
            Ok(pb::CancelPaymentRequestResponse {
                state: proto::payment_state_to_pb(state).into(),
            })
        };
        Ok(Response::new(self.once(&operation, work).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_payment_status(
        &self,
        request: Request<pb::GetPaymentStatusRequest>,
    ) -> Result<Response<pb::GetPaymentStatusResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        let (extension_id, qr_id) = payment_ref(&mut v, request.payment.as_ref());
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        let row = self
            .request_of(&terminal, extension_id.as_deref(), qr_id.as_deref())
            .await?;
        let seller = self
            .p()
            .mia
            .seller(&terminal, &request.seller_session_id)
            .await?;
        Ok(Response::new(self.p().status(&row, &seller).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn watch_payment(
        &self,
        request: Request<pb::WatchPaymentRequest>,
    ) -> Result<Response<BoxStream<pb::WatchPaymentResponse>>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        let payment = watch_payment_ref(request.payment.as_ref());
        let (extension_id, qr_id) = payment_ref(&mut v, payment.as_ref());
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        let row = self
            .request_of(&terminal, extension_id.as_deref(), qr_id.as_deref())
            .await?;
        let seller = self
            .p()
            .mia
            .seller(&terminal, &request.seller_session_id)
            .await?;
        let payments = self.p();
        let (subscription, first) = payments
            .watchers
            .subscribe(&row.extension_id, &seller.session_id)?;
        let qr_type = QrType::parse(&row.qr_type).unwrap_or(QrType::Dynamic);
        let state = PaymentState::parse(&row.state).unwrap_or(PaymentState::Pending);
        let now = store::now_us();
        let mut current = row;
        if first && crate::watch::open(state, qr_type, current.expires_at_us, now) {
            // The first stream here asks MIA at once (unless a replica did within its round),
            // so that a payment made before anybody watched is told at once. A slow MIA does
            // not hold the stream up: the state known goes first, and the answer follows.
            let interval =
                i64::try_from(payments.config.poll_interval().as_micros()).unwrap_or(i64::MAX);
            let claimed = store::claim_now(
                &payments.db,
                &current.extension_id,
                &seller.session_id,
                now,
                now.saturating_add(interval),
                now.saturating_add(interval.saturating_mul(3)),
            )
            .await
            .map_err(db)?;
            if claimed && payments.config.poll_mia {
                let check = tokio::spawn({
                    let payments = self.payments.clone();
                    let row = current.clone();
                    let seller = seller.clone();
                    async move { payments.check(&row, &seller).await }
                });
                match tokio::time::timeout(FIRST_CHECK_WAIT, check).await {
                    Ok(Ok(Ok(fresh))) => current = fresh,
                    Ok(Ok(Err(e))) => {
                        tracing::debug!(error = %e, "asking MIA for a newly watched payment failed; the poller tries again");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the first check of a watched payment panicked")
                    }
                    Err(_) => tracing::debug!(
                        "MIA is slow to answer for a newly watched payment; its answer follows"
                    ),
                }
            }
        }
        let (version, event) = payments.event_of(&current).await?;
        payments
            .watchers
            .deliver(&current.extension_id, version, event);
        let left = current.expires_at_us.saturating_sub(store::now_us()).max(0);
        let expires_in = Duration::from_micros(u64::try_from(left).unwrap_or(0));
        let stream: WatchStream = subscription.stream(request.follow, qr_type, expires_in);
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        v.text("shift_id", &request.shift_id, 64, true);
        if !request.shift_id.is_empty()
            && !request
                .shift_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            v.add("shift_id", "must be letters, digits, '-' or '_'");
        }
        let page_size = match request.page_size {
            0 => 50,
            n if n < 0 => {
                v.add("page_size", "must not be negative");
                50
            }
            n => usize::try_from(n).unwrap_or(500).min(500),
        };
        let before = if request.page_token.is_empty() {
            None
        } else {
            match PageToken::decode(&request.page_token) {
                Some(token) if token.shift_id == request.shift_id => Some(token.before),
                Some(_) => {
                    v.add(
                        "page_token",
                        "belongs to another shift_id: send the other fields unchanged",
                    );
                    None
                }
                None => {
                    v.add("page_token", "is not a next_page_token fiscus answered");
                    None
                }
            }
        };
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        let seller = self
            .p()
            .mia
            .seller(&terminal, &request.seller_session_id)
            .await?;
        Ok(Response::new(
            self.p()
                .list_transactions(&terminal, &seller, &request.shift_id, page_size, before)
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        let transaction_id = v.transaction_id(&request.transaction_id);
        v.into_result()?;
        let (Some(terminal), Some(transaction_id)) = (terminal, transaction_id) else {
            return Err(ApiError::invalid("terminal", "is required").into());
        };
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        if let Some(known) = store::transaction(&self.p().db, &request.transaction_id)
            .await
            .map_err(db)?
            && known.terminal() != terminal
        {
            return Err(not_on_terminal(
                "transaction_id",
                &format!("transaction {}", request.transaction_id),
                &terminal,
            )
            .into());
        }
        let seller = self
            .p()
            .mia
            .seller(&terminal, &request.seller_session_id)
            .await?;
        let transaction = self
            .p()
            .get_transaction(&terminal, &seller, transaction_id)
            .await?;
        Ok(Response::new(pb::GetTransactionResponse {
            transaction: Some(transaction),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn refund_transaction(
        &self,
        request: Request<pb::RefundTransactionRequest>,
    ) -> Result<Response<pb::RefundTransactionResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let mut v = Violations::default();
        let id = v.operation_id(&request.operation_id, metadata_id.as_deref());
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        let transaction_id = v.transaction_id(&request.transaction_id);
        let ask = match (request.full_refund, request.amount.is_empty()) {
            (true, true) => Some(RefundAsk::Full),
            (true, false) => {
                v.add("amount", "must be empty for a full refund");
                None
            }
            (false, true) => {
                v.add(
                    "amount",
                    "is required for a partial refund (or set full_refund)",
                );
                None
            }
            (false, false) => match parse_amount(&request.amount) {
                Ok(amount) => Some(RefundAsk::Partial(amount)),
                Err(problem) => {
                    v.add("amount", problem.to_string());
                    None
                }
            },
        };
        if !request.currency.is_empty()
            && (request.currency.len() != 3
                || !request.currency.bytes().all(|b| b.is_ascii_uppercase()))
        {
            v.add("currency", "must be an ISO 4217 code such as MDL");
        }
        v.text("reason_code", &request.reason_code, 64, true);
        v.text("reason_message", &request.reason_message, 512, false);
        v.into_result()?;
        let (Some(terminal), Some(transaction_id), Some(ask)) = (terminal, transaction_id, ask)
        else {
            return Err(ApiError::invalid("terminal", "is required").into());
        };
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        // What fiscus knows is checked before MIA is called: the terminal, the currency, and
        // what is left to refund.
        if let Some(known) = store::transaction(&self.p().db, &request.transaction_id)
            .await
            .map_err(db)?
        {
            if known.terminal() != terminal {
                return Err(not_on_terminal(
                    "transaction_id",
                    &format!("transaction {}", request.transaction_id),
                    &terminal,
                )
                .into());
            }
            if !request.currency.is_empty() && request.currency != known.currency {
                return Err(ApiError::invalid(
                    "currency",
                    format!("must be the transaction's currency, {}", known.currency),
                )
                .into());
            }
            let pending = store::sent_refunds(&self.p().db, &request.transaction_id)
                .await
                .map_err(db)?;
            if pending.is_empty() {
                fiscus_domain::qr::refund_amount(
                    fiscus_domain::Money::from_minor(known.amount_minor),
                    fiscus_domain::Money::from_minor(known.refunded_minor),
                    ask,
                )
                .map_err(|e| {
                    if e == fiscus_domain::qr::RefundRefused::NotPositive {
                        ApiError::invalid("amount", e.to_string())
                    } else {
                        ApiError::FailedPrecondition(format!(
                            "refund of transaction {} refused: {e}",
                            request.transaction_id
                        ))
                    }
                })?;
            }
        }
        let operation = operation(&terminal, &id, "RefundTransaction", &mut request);
        let new = NewRefund {
            terminal: terminal.clone(),
            transaction_id,
            ask,
            currency: request.currency.clone(),
            reason_code: request.reason_code.clone(),
            reason_message: request.reason_message.clone(),
        };
        let work = async {
            let seller = self
                .p()
                .mia
                .seller(&terminal, &request.seller_session_id)
                .await?;
            self.p().refund(&id, &new, &seller).await
        };
        Ok(Response::new(self.once(&operation, work).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_terminal_settings(
        &self,
        request: Request<pb::GetTerminalSettingsRequest>,
    ) -> Result<Response<pb::GetTerminalSettingsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        v.into_result()?;
        let terminal = terminal.ok_or_else(|| ApiError::invalid("terminal", "is required"))?;
        caller.check(&terminal.merchant_tin)?;
        let seller = self
            .p()
            .mia
            .seller(&terminal, &request.seller_session_id)
            .await?;
        let settings = self
            .p()
            .mia
            .call(&seller, |client, token| async move {
                client.settings(&token).await
            })
            .await
            .map_err(|e| upstream_error(e, "the terminal's settings"))?;
        Ok(Response::new(pb::GetTerminalSettingsResponse {
            settings: Some(settings_to_pb(&settings)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_terminal_settings(
        &self,
        request: Request<pb::UpdateTerminalSettingsRequest>,
    ) -> Result<Response<pb::UpdateTerminalSettingsResponse>, Status> {
        let caller = Caller::of(&request);
        let metadata_id = metadata_operation_id(&request);
        let mut request = request.into_inner();
        let mut v = Violations::default();
        let id = v.operation_id(&request.operation_id, metadata_id.as_deref());
        let terminal = v.terminal("terminal", request.terminal.as_ref());
        v.session(&request.seller_session_id);
        let mut wanted = None;
        match &request.settings {
            None => v.add("settings", "is required"),
            Some(settings) => {
                let qr_type = proto::qr_type_from_pb(settings.qr_type);
                if qr_type.is_none() {
                    v.add("settings.qr_type", "is required: DYNAMIC, STATIC or HYBRID");
                }
                let amount_type = proto::amount_type_from_pb(settings.qr_amount_type);
                if amount_type.is_none() {
                    v.add(
                        "settings.qr_amount_type",
                        "is required: FIXED, FREE or CONTROLLED",
                    );
                }
                let qr_ttl = match ttl::parse(settings.qr_ttl_seconds) {
                    Ok(seconds) => Some(seconds),
                    Err(e) => {
                        v.add("settings.qr_ttl_seconds", e.to_string());
                        None
                    }
                };
                if let (Some(qr_type), Some(amount_type), Some(qr_ttl)) =
                    (qr_type, amount_type, qr_ttl)
                {
                    wanted = Some(QrSettings {
                        qr_type,
                        amount_type,
                        qr_ttl,
                        prohibit_settings_change: settings.prohibit_settings_change,
                        when_updated: None,
                    });
                }
            }
        }
        v.into_result()?;
        let (Some(terminal), Some(wanted)) = (terminal, wanted) else {
            return Err(ApiError::invalid("settings", "is required").into());
        };
        caller.check(&terminal.merchant_tin)?;
        self.p().db_status.check()?;
        // updated_at is output only: it does not make another request.
        if let Some(settings) = request.settings.as_mut() {
            settings.updated_at = None;
        }
        let operation = operation(&terminal, &id, "UpdateTerminalSettings", &mut request);
        let work = async {
            let seller = self
                .p()
                .mia
                .seller(&terminal, &request.seller_session_id)
                .await?;
            let mia = &self.p().mia;
            mia.call(&seller, |client, token| {
                let wanted = wanted.clone();
                async move { client.update_settings(&token, &wanted).await }
            })
            .await
            .map_err(|e| upstream_error(e, "the terminal's settings"))?;
            let stored = mia
                .call(&seller, |client, token| async move {
                    client.settings(&token).await
                })
                .await
                .map_err(|e| upstream_error(e, "the terminal's settings"))?;
            Ok(pb::UpdateTerminalSettingsResponse {
                settings: Some(settings_to_pb(&stored)),
            })
        };
        Ok(Response::new(self.once(&operation, work).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn set_terminal_shift(
        &self,
        request: Request<pb::SetTerminalShiftRequest>,
    ) -> Result<Response<pb::SetTerminalShiftResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal =
            self.shift_request(&caller, request.terminal.as_ref(), &request.shift_id, false)?;
        // A MIA terminal's MIA shift goes with fiscus's: opened before payments are recorded
        // into the new shift, closed before the ending one stops taking them (a failure leaves
        // the terminal's shift as it was, for ShiftService's retry).
        if !request.seller_session_id.is_empty() && self.p().mia.client().is_ok() {
            if request.shift_id.is_empty() {
                self.p()
                    .close_mia_shift(&terminal, &request.seller_session_id)
                    .await?;
            } else {
                self.p()
                    .open_mia_shift(&terminal, &request.shift_id, &request.seller_session_id)
                    .await?;
            }
        }
        let previous_shift_id =
            store::set_terminal_shift(&self.p().db, &terminal, &request.shift_id)
                .await
                .map_err(db)?;
        Ok(Response::new(pb::SetTerminalShiftResponse {
            previous_shift_id,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_shift_payment_totals(
        &self,
        request: Request<pb::GetShiftPaymentTotalsRequest>,
    ) -> Result<Response<pb::GetShiftPaymentTotalsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal =
            self.shift_request(&caller, request.terminal.as_ref(), &request.shift_id, true)?;
        let totals = store::shift_totals(&self.p().db, &terminal, &request.shift_id)
            .await
            .map_err(db)?;
        let mia = self.p().mia_z_report(&terminal, &request.shift_id).await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Response::new(pb::GetShiftPaymentTotalsResponse {
            qr_payment_count: count(totals.payments),
            qr_payment_sum: Money::from_minor(totals.paid_minor).to_string(),
            qr_refund_count: count(totals.refunds),
            qr_refund_sum: Money::from_minor(totals.refunded_minor).to_string(),
            mia_checked: mia.is_some(),
            mia_payment_count: mia.as_ref().map_or(0, |z| z.payment_count),
            mia_payment_sum: mia
                .as_ref()
                .map(|z| z.payment_sum.to_string())
                .unwrap_or_default(),
            mia_refund_count: mia.as_ref().map_or(0, |z| z.cancellation_count),
            mia_refund_sum: mia
                .as_ref()
                .map(|z| z.cancellation_sum.to_string())
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_shift_payments(
        &self,
        request: Request<pb::ListShiftPaymentsRequest>,
    ) -> Result<Response<BoxStream<pb::ListShiftPaymentsResponse>>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let terminal =
            self.shift_request(&caller, request.terminal.as_ref(), &request.shift_id, true)?;
        let db = self.p().db.clone();
        let shift_id = request.shift_id;
        const CHUNK: i64 = 500;
        let stream = futures::stream::try_unfold(Some((i64::MIN, String::new())), move |from| {
            let (db, terminal, shift_id) = (db.clone(), terminal.clone(), shift_id.clone());
            async move {
                let Some((at, id)) = from else {
                    return Ok(None);
                };
                let rows = store::shift_payments(&db, &terminal, &shift_id, (at, &id), CHUNK)
                    .await
                    .map_err(|e| Status::from(crate::payments::db(e)))?;
                let next = match rows.last() {
                    None => return Ok(None),
                    Some(last) if i64::try_from(rows.len()).unwrap_or(0) == CHUNK => {
                        Some((last.at_us, last.id.clone()))
                    }
                    Some(_) => None,
                };
                let payments = rows.iter().map(proto::shift_payment).collect();
                Ok(Some((pb::ListShiftPaymentsResponse { payments }, next)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

fn settings_to_pb(settings: &QrSettings) -> pb::TerminalSettings {
    pb::TerminalSettings {
        qr_type: proto::qr_type_to_pb(settings.qr_type).into(),
        qr_amount_type: proto::amount_type_to_pb(settings.amount_type).into(),
        qr_ttl_seconds: settings.qr_ttl,
        prohibit_settings_change: settings.prohibit_settings_change,
        updated_at: settings
            .when_updated
            .and_then(|at| proto::timestamp_us(at.timestamp_micros())),
    }
}
