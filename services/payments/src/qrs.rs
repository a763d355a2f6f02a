//! QR codes and their payment requests: creation (looked up at MIA before posting again when an
//! answer was lost), reading, listing, cancelling, and the state of a payment.

use fiscus_domain::TerminalId;
use fiscus_domain::qr::{AmountType, Amounts, PaymentState, QrType};
use fiscus_kit::ApiError;
use fiscus_proto::v1 as pb;
use fiscus_providers::mia::{QrExtension, QrInfo, QrState};
use uuid::Uuid;

use crate::mia::{Seller, outcome_unknown, refusal, upstream_error};
use crate::payments::{Payments, db};
use crate::proto;
use crate::store::{self, QrRow, RequestRow};

/// A QR code to create, checked.
pub struct NewQr {
    pub terminal: TerminalId,
    pub qr_type: QrType,
    pub amount_type: AmountType,
    pub request: Option<Amounts>,
    pub client_reference: String,
    pub include_image: bool,
}

/// A payment request to attach, checked.
pub struct NewRequest {
    pub qr: QrRow,
    pub amounts: Amounts,
    pub client_reference: String,
}

fn lost(what: &str) -> ApiError {
    ApiError::Unavailable(format!(
        "MIA's answer to {what} was lost: its outcome is unknown; retry with the same operation_id \
         (fiscus looks it up at MIA before posting again)"
    ))
}

fn parse_uuid(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("stored id {id:?} is not a UUID")))
}

fn decode_image(info: &QrInfo, include: bool) -> Vec<u8> {
    use base64::Engine as _;
    if !include {
        return Vec::new();
    }
    info.qr_image
        .as_deref()
        .and_then(|image| base64::engine::general_purpose::STANDARD.decode(image).ok())
        .unwrap_or_default()
}

/// A payment request fiscus does not know, as MIA describes it.
fn foreign_extension(extension: &QrExtension) -> pb::QrExtension {
    let now = store::now_us();
    let left = i64::try_from(extension.expires_in.as_micros()).unwrap_or(i64::MAX);
    pb::QrExtension {
        extension_id: extension.extension_id.to_string(),
        expires_in_seconds: i32::try_from(extension.expires_in.as_secs()).unwrap_or(i32::MAX),
        expires_at: proto::timestamp_us(now.saturating_add(left)),
        amount: proto::money(extension.amount.map(|m| m.minor())),
        min_amount: proto::money(extension.min_amount.map(|m| m.minor())),
        max_amount: proto::money(extension.max_amount.map(|m| m.minor())),
        client_reference: String::new(),
    }
}

/// Whether MIA's request carries exactly `amounts`.
fn same_amounts(extension: &QrExtension, amounts: &Amounts) -> bool {
    (extension.amount, extension.min_amount, extension.max_amount) == amounts.parts()
}

impl Payments {
    /// Refuses a second static or hybrid QR on a terminal, naming the active one; a QR this
    /// database still holds active is asked at MIA first (it may have been cancelled elsewhere).
    async fn refuse_second_permanent(
        &self,
        terminal: &TerminalId,
        seller: &Seller,
    ) -> Result<(), ApiError> {
        let Some(active) = store::active_permanent_qr(&self.db, terminal)
            .await
            .map_err(db)?
        else {
            return Ok(());
        };
        let id = parse_uuid(&active.qr_id)?;
        let status = self
            .mia
            .call(seller, |client, token| async move {
                client.qr(&token, id, false).await
            })
            .await
            .map_err(|e| upstream_error(e, "the terminal's active QR code"))?;
        if status.state == QrState::Active {
            return Err(ApiError::FailedPrecondition(format!(
                "terminal {}/{}/{} has an active {} QR code already: {} (cancel it with CancelQr first; \
                 a terminal has at most one active static or hybrid QR)",
                terminal.merchant_tin,
                terminal.branch_no,
                terminal.pos_no,
                active.qr_type,
                active.qr_id
            )));
        }
        store::set_qr_state(&self.db, &active.qr_id, status.state.as_str())
            .await
            .map_err(db)
    }

    /// CreateQr's work, once per operation.
    pub async fn create_qr(
        &self,
        operation_id: &str,
        new: &NewQr,
        seller: &Seller,
    ) -> Result<pb::CreateQrResponse, ApiError> {
        if new.qr_type.is_permanent() {
            self.refuse_second_permanent(&new.terminal, seller).await?;
        }
        if store::attempt(&self.db, operation_id)
            .await
            .map_err(db)?
            .is_some()
            && let Some(found) = self.find_lost_qr(new, seller).await?
        {
            tracing::info!(qr = %found.qr_id, operation = operation_id, "a QR whose creation's answer was lost was found at MIA");
            return self.record_qr(operation_id, new, found, seller).await;
        }
        store::record_attempt(
            &self.db,
            operation_id,
            "CreateQr",
            &new.terminal.to_string(),
        )
        .await
        .map_err(db)?;
        let (qr_type, amount_type, request) = (new.qr_type, new.amount_type, new.request);
        let created = self
            .mia
            .call(seller, |client, token| async move {
                client
                    .create_qr(&token, qr_type, amount_type, request.as_ref())
                    .await
            })
            .await;
        match created {
            Ok(info) => self.record_qr(operation_id, new, info, seller).await,
            Err(e) if outcome_unknown(&e) => {
                tracing::warn!(error = %e, operation = operation_id, "the QR creation's outcome is unknown");
                Err(lost("the QR creation"))
            }
            Err(e) => {
                store::forget_attempt(&self.db, operation_id)
                    .await
                    .map_err(db)?;
                Err(upstream_error(e, "the QR code"))
            }
        }
    }

    /// An active QR at MIA that fiscus does not know and that has what `new` asked for: what
    /// a creation whose answer was lost made.
    async fn find_lost_qr(&self, new: &NewQr, seller: &Seller) -> Result<Option<QrInfo>, ApiError> {
        let (qr_type, image) = (new.qr_type, new.include_image);
        let active = self
            .mia
            .call(seller, |client, token| async move {
                client.active_qrs(&token, Some(qr_type), image).await
            })
            .await
            .map_err(|e| upstream_error(e, "the terminal's active QR codes"))?;
        let ids: Vec<String> = active.iter().map(|q| q.qr_id.to_string()).collect();
        let known: Vec<String> = store::qrs(&self.db, &ids)
            .await
            .map_err(db)?
            .into_iter()
            .map(|q| q.qr_id)
            .collect();
        Ok(active.into_iter().find(|qr| {
            !known.contains(&qr.qr_id.to_string())
                && qr.qr_type == new.qr_type
                && qr.amount_type == new.amount_type
                && match (&qr.extension, new.request) {
                    (Some(extension), Some(amounts)) => same_amounts(extension, &amounts),
                    (None, None) => true,
                    _ => false,
                }
        }))
    }

    async fn record_qr(
        &self,
        operation_id: &str,
        new: &NewQr,
        info: QrInfo,
        seller: &Seller,
    ) -> Result<pb::CreateQrResponse, ApiError> {
        let now = store::now_us();
        let terminal = &new.terminal;
        let row = QrRow {
            qr_id: info.qr_id.to_string(),
            merchant_tin: terminal.merchant_tin.clone(),
            branch_no: terminal.branch_no.clone(),
            pos_no: terminal.pos_no.clone(),
            qr_type: info.qr_type.as_str().to_owned(),
            amount_type: info.amount_type.as_str().to_owned(),
            qr_text: info.qr_text.clone(),
            state: QrState::Active.as_str().to_owned(),
            currency: self.config.currency.clone(),
            client_reference: new.client_reference.clone(),
            operation_id: operation_id.to_owned(),
            created_at_us: now,
            updated_at_us: now,
        };
        let request = info.extension.as_ref().map(|extension| {
            let amounts = new.request.unwrap_or(Amounts::Free);
            request_row(
                &row,
                extension,
                &amounts,
                &new.client_reference,
                &seller.session_id,
                operation_id,
                now,
            )
        });
        store::insert_qr(&self.db, &row, request.as_ref())
            .await
            .map_err(|e| taken(e, "the QR code"))?;
        Ok(pb::CreateQrResponse {
            qr: Some(proto::qr(
                &row,
                request.as_ref().map(|r| proto::extension(r, now)),
                decode_image(&info, new.include_image),
            )),
        })
    }

    /// GetQr: the QR as MIA says it is now (its state kept here too).
    pub async fn get_qr(
        &self,
        row: QrRow,
        seller: &Seller,
        include_image: bool,
    ) -> Result<pb::Qr, ApiError> {
        let id = parse_uuid(&row.qr_id)?;
        let status = self
            .mia
            .call(seller, |client, token| async move {
                client.qr(&token, id, include_image).await
            })
            .await
            .map_err(|e| upstream_error(e, "the QR code"))?;
        let mut row = row;
        if status.state.as_str() != row.state {
            store::set_qr_state(&self.db, &row.qr_id, status.state.as_str())
                .await
                .map_err(db)?;
            row.state = status.state.as_str().to_owned();
        }
        let info = status.qr;
        let extension = match info.as_ref().and_then(|i| i.extension.as_ref()) {
            Some(extension) => Some(self.known_extension(extension).await?),
            None => None,
        };
        let image = info
            .as_ref()
            .map(|i| decode_image(i, include_image))
            .unwrap_or_default();
        Ok(proto::qr(&row, extension, image))
    }

    /// A payment request MIA shows, with what fiscus knows of it.
    async fn known_extension(&self, extension: &QrExtension) -> Result<pb::QrExtension, ApiError> {
        Ok(
            match store::request(&self.db, &extension.extension_id.to_string())
                .await
                .map_err(db)?
            {
                Some(row) => proto::extension(&row, store::now_us()),
                None => foreign_extension(extension),
            },
        )
    }

    /// ListActiveQrs: MIA's active QR codes of the terminal, with what fiscus knows of them.
    pub async fn active_qrs(
        &self,
        terminal: &TerminalId,
        qr_type: Option<QrType>,
        include_image: bool,
        seller: &Seller,
    ) -> Result<Vec<pb::Qr>, ApiError> {
        let active = self
            .mia
            .call(seller, |client, token| async move {
                client.active_qrs(&token, qr_type, include_image).await
            })
            .await
            .map_err(|e| upstream_error(e, "the terminal's active QR codes"))?;
        let ids: Vec<String> = active.iter().map(|q| q.qr_id.to_string()).collect();
        let known = store::qrs(&self.db, &ids).await.map_err(db)?;
        let mut qrs = Vec::with_capacity(active.len());
        for info in active {
            let id = info.qr_id.to_string();
            let row = known
                .iter()
                .find(|k| k.qr_id == id)
                .cloned()
                .unwrap_or_else(|| QrRow {
                    qr_id: id,
                    merchant_tin: terminal.merchant_tin.clone(),
                    branch_no: terminal.branch_no.clone(),
                    pos_no: terminal.pos_no.clone(),
                    qr_type: info.qr_type.as_str().to_owned(),
                    amount_type: info.amount_type.as_str().to_owned(),
                    qr_text: info.qr_text.clone(),
                    state: String::new(),
                    currency: self.config.currency.clone(),
                    client_reference: String::new(),
                    operation_id: String::new(),
                    created_at_us: 0,
                    updated_at_us: 0,
                });
            let row = QrRow {
                state: QrState::Active.as_str().to_owned(),
                ..row
            };
            let extension = match &info.extension {
                Some(extension) => Some(self.known_extension(extension).await?),
                None => None,
            };
            let mut qr = proto::qr(&row, extension, decode_image(&info, include_image));
            if row.created_at_us == 0 {
                qr.created_at = None;
            }
            qrs.push(qr);
        }
        Ok(qrs)
    }

    /// CancelQr's work, once per operation: cancelled at MIA (or found cancelled when an
    /// earlier answer was lost), with its pending requests.
    pub async fn cancel_qr(&self, row: QrRow, seller: &Seller) -> Result<pb::Qr, ApiError> {
        let id = parse_uuid(&row.qr_id)?;
        let cancelled = self
            .mia
            .call(seller, |client, token| async move {
                client.cancel_qr(&token, id).await
            })
            .await;
        match cancelled {
            Ok(()) => {}
            Err(e) if matches!(refusal(&e), Some("QR_NOT_ACTIVE")) => {
                let status = self
                    .mia
                    .call(seller, |client, token| async move {
                        client.qr(&token, id, false).await
                    })
                    .await
                    .map_err(|e| upstream_error(e, "the QR code"))?;
                store::set_qr_state(&self.db, &row.qr_id, status.state.as_str())
                    .await
                    .map_err(db)?;
                if status.state != QrState::Cancelled {
                    return Err(ApiError::FailedPrecondition(format!(
                        "QR code {} is {} and cannot be cancelled",
                        row.qr_id,
                        proto::qr_state_to_pb(status.state).as_str_name()
                    )));
                }
            }
            Err(e) => return Err(upstream_error(e, "the QR code's cancellation")),
        }
        store::set_qr_state(&self.db, &row.qr_id, QrState::Cancelled.as_str())
            .await
            .map_err(db)?;
        for request in store::pending_requests_of(&self.db, &row.qr_id)
            .await
            .map_err(db)?
        {
            self.write_state(
                &request,
                PaymentState::Cancelled,
                request.total_payments,
                "",
                None,
            )
            .await?;
        }
        let row = QrRow {
            state: QrState::Cancelled.as_str().to_owned(),
            ..row
        };
        Ok(proto::qr(&row, None, Vec::new()))
    }

    /// CreatePaymentRequest's work, once per operation.
    pub async fn create_request(
        &self,
        operation_id: &str,
        new: &NewRequest,
        seller: &Seller,
    ) -> Result<pb::CreatePaymentRequestResponse, ApiError> {
        let id = parse_uuid(&new.qr.qr_id)?;
        if store::attempt(&self.db, operation_id)
            .await
            .map_err(db)?
            .is_some()
        {
            let status = self
                .mia
                .call(seller, |client, token| async move {
                    client.qr(&token, id, false).await
                })
                .await
                .map_err(|e| upstream_error(e, "the QR code"))?;
            if let Some(extension) = status.qr.and_then(|q| q.extension)
                && same_amounts(&extension, &new.amounts)
                && store::request(&self.db, &extension.extension_id.to_string())
                    .await
                    .map_err(db)?
                    .is_none()
            {
                tracing::info!(extension = %extension.extension_id, operation = operation_id, "a payment request whose creation's answer was lost was found at MIA");
                return self
                    .record_request(operation_id, new, &extension, seller)
                    .await;
            }
        }
        store::record_attempt(
            &self.db,
            operation_id,
            "CreatePaymentRequest",
            &new.qr.qr_id,
        )
        .await
        .map_err(db)?;
        let amounts = new.amounts;
        let created = self
            .mia
            .call(seller, |client, token| async move {
                client.create_extension(&token, id, &amounts).await
            })
            .await;
        match created {
            Ok(extension) => {
                self.record_request(operation_id, new, &extension, seller)
                    .await
            }
            Err(e) if outcome_unknown(&e) => {
                tracing::warn!(error = %e, operation = operation_id, "the payment request's outcome is unknown");
                Err(lost("the payment request"))
            }
            Err(e) => {
                store::forget_attempt(&self.db, operation_id)
                    .await
                    .map_err(db)?;
                Err(upstream_error(e, "the payment request"))
            }
        }
    }

    async fn record_request(
        &self,
        operation_id: &str,
        new: &NewRequest,
        extension: &QrExtension,
        seller: &Seller,
    ) -> Result<pb::CreatePaymentRequestResponse, ApiError> {
        let now = store::now_us();
        let row = request_row(
            &new.qr,
            extension,
            &new.amounts,
            &new.client_reference,
            &seller.session_id,
            operation_id,
            now,
        );
        store::insert_request(&self.db, &row)
            .await
            .map_err(|e| taken(e, "the payment request"))?;
        Ok(pb::CreatePaymentRequestResponse {
            extension: Some(proto::extension(&row, now)),
        })
    }

    /// CancelPaymentRequest's work, once per operation: the state after it, CANCELLED or the
    /// payer's PAID.
    pub async fn cancel_request(
        &self,
        row: RequestRow,
        seller: &Seller,
    ) -> Result<PaymentState, ApiError> {
        let id = parse_uuid(&row.extension_id)?;
        let cancelled = self
            .mia
            .call(seller, |client, token| async move {
                client.cancel_extension(&token, id).await
            })
            .await;
        match cancelled {
            Ok(()) => {
                let mut current = row;
                // Written over the version read; a poll that wrote first is read again.
                for _ in 0..3 {
                    let state =
                        PaymentState::parse(&current.state).unwrap_or(PaymentState::Pending);
                    if state.is_final() {
                        break;
                    }
                    current = self
                        .write_state(
                            &current,
                            PaymentState::Cancelled,
                            current.total_payments,
                            "",
                            None,
                        )
                        .await?;
                }
                Ok(PaymentState::parse(&current.state).unwrap_or(PaymentState::Cancelled))
            }
            Err(e) if matches!(refusal(&e), Some("EXTENSION_NOT_ACTIVE")) => {
                // Paid, expired, or cancelled by this very operation before its answer was lost.
                let now = self.check(&row, seller).await?;
                Ok(PaymentState::parse(&now.state).unwrap_or(PaymentState::Pending))
            }
            Err(e) => Err(upstream_error(e, "the payment request's cancellation")),
        }
    }

    /// GetPaymentStatus: the state as MIA says it now.
    pub async fn status(
        &self,
        row: &RequestRow,
        seller: &Seller,
    ) -> Result<pb::GetPaymentStatusResponse, ApiError> {
        let now = self.check(row, seller).await?;
        let (_, event) = self.event_of(&now).await?;
        Ok(pb::GetPaymentStatusResponse {
            state: event.state,
            error_description: event.message.clone(),
            last_transaction: event.transaction.clone(),
            total_payments: event.total_payments,
        })
    }
}

fn request_row(
    qr: &QrRow,
    extension: &QrExtension,
    amounts: &Amounts,
    client_reference: &str,
    session_id: &str,
    operation_id: &str,
    now: i64,
) -> RequestRow {
    let (amount, min, max) = amounts.parts();
    let left = i64::try_from(extension.expires_in.as_micros()).unwrap_or(i64::MAX);
    RequestRow {
        extension_id: extension.extension_id.to_string(),
        qr_id: qr.qr_id.clone(),
        merchant_tin: qr.merchant_tin.clone(),
        branch_no: qr.branch_no.clone(),
        pos_no: qr.pos_no.clone(),
        qr_type: qr.qr_type.clone(),
        amount_type: qr.amount_type.clone(),
        amount_minor: amount.map(|m| m.minor()),
        min_amount_minor: min.map(|m| m.minor()),
        max_amount_minor: max.map(|m| m.minor()),
        client_reference: client_reference.to_owned(),
        expires_at_us: now.saturating_add(left),
        state: PaymentState::Pending.as_str().to_owned(),
        error_description: String::new(),
        total_payments: 0,
        last_transaction_id: None,
        version: 0,
        seller_session_id: session_id.to_owned(),
        operation_id: operation_id.to_owned(),
        created_at_us: now,
    }
}

/// A row that another operation recorded first (it adopted the same lost creation): retry.
fn taken(error: sqlx::Error, what: &str) -> ApiError {
    let unique = matches!(&error, sqlx::Error::Database(e) if e.is_unique_violation());
    if unique {
        ApiError::Aborted(format!(
            "{what} was recorded by a concurrent operation; retry with the same operation_id"
        ))
    } else {
        db(error)
    }
}
