//! What ShiftService asks of the services that record into shifts: ReceiptService's journal
//! and, where QR payments are taken, PaymentService — each told of a shift's change, and each
//! adding up its own records of a shift.

use std::time::Duration;

use fiscus_domain::TerminalId;
use fiscus_kit::ApiError;
use fiscus_kit::peers::ServiceIdentity;
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::payment_service_client::PaymentServiceClient;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub struct Recorders {
    pub receipts: Channel,
    /// None where this deployment takes no QR payments (`shifts.with_payments = false`).
    pub payments: Option<Channel>,
    pub identity: ServiceIdentity,
    pub timeout: Duration,
}

/// What a shift's records add up to.
pub struct Totals {
    pub receipts: pb::ShiftReceiptTotals,
    pub payments: pb::GetShiftPaymentTotalsResponse,
}

fn terminal_pb(terminal: &TerminalId) -> Option<pb::Terminal> {
    Some(pb::Terminal {
        merchant_tin: terminal.merchant_tin.clone(),
        branch_no: terminal.branch_no.clone(),
        pos_no: terminal.pos_no.clone(),
    })
}

/// A peer's failure, as this service answers it: what the peer refused stays a precondition
/// that failed; a peer that cannot be reached, or does not answer in time, is UNAVAILABLE (the
/// caller retries with the same operation id).
fn peer(what: &str, status: Status) -> ApiError {
    match status.code() {
        tonic::Code::InvalidArgument
        | tonic::Code::FailedPrecondition
        | tonic::Code::PermissionDenied
        | tonic::Code::NotFound => {
            ApiError::FailedPrecondition(format!("{what}: {}", status.message()))
        }
        _ => ApiError::Unavailable(format!("{what}: {}", status.message())),
    }
}

impl Recorders {
    /// A call as this service, with its deadline.
    async fn call<T>(&self, what: &str, message: T) -> Result<Request<T>, ApiError> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        self.identity
            .prepare(&mut request)
            .await
            .map_err(|status| peer(what, status))?;
        Ok(request)
    }

    /// Makes `shift_id` (empty: none) the shift each recorder records `terminal` into from now
    /// on; once this answers, nothing more is recorded into the shift it ends. With a seller
    /// session PaymentService opens or closes that seller's MIA shift with it.
    pub async fn set_shift(
        &self,
        terminal: &TerminalId,
        shift_id: &str,
        seller_session_id: &str,
    ) -> Result<(), ApiError> {
        let message = pb::SetTerminalShiftRequest {
            terminal: terminal_pb(terminal),
            shift_id: shift_id.to_owned(),
            seller_session_id: seller_session_id.to_owned(),
        };
        const RECEIPTS: &str = "ReceiptService.SetTerminalShift";
        let request = self.call(RECEIPTS, message.clone()).await?;
        ReceiptServiceClient::new(self.receipts.clone())
            .set_terminal_shift(request)
            .await
            .map_err(|status| peer(RECEIPTS, status))?;
        if let Some(payments) = &self.payments {
            const PAYMENTS: &str = "PaymentService.SetTerminalShift";
            let request = self.call(PAYMENTS, message).await?;
            PaymentServiceClient::new(payments.clone())
                .set_terminal_shift(request)
                .await
                .map_err(|status| peer(PAYMENTS, status))?;
        }
        Ok(())
    }

    /// What the shift's receipts and QR payments add up to.
    pub async fn totals(&self, terminal: &TerminalId, shift_id: &str) -> Result<Totals, ApiError> {
        const RECEIPTS: &str = "ReceiptService.GetShiftTotals";
        let request = self
            .call(
                RECEIPTS,
                pb::GetShiftTotalsRequest {
                    terminal: terminal_pb(terminal),
                    shift_id: shift_id.to_owned(),
                },
            )
            .await?;
        let receipts = ReceiptServiceClient::new(self.receipts.clone())
            .get_shift_totals(request)
            .await
            .map_err(|status| peer(RECEIPTS, status))?
            .into_inner()
            .totals
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("ReceiptService answered no shift totals"))
            })?;
        let payments = match &self.payments {
            None => pb::GetShiftPaymentTotalsResponse {
                qr_payment_sum: "0.00".to_owned(),
                qr_refund_sum: "0.00".to_owned(),
                ..Default::default()
            },
            Some(payments) => {
                const PAYMENTS: &str = "PaymentService.GetShiftPaymentTotals";
                let request = self
                    .call(
                        PAYMENTS,
                        pb::GetShiftPaymentTotalsRequest {
                            terminal: terminal_pb(terminal),
                            shift_id: shift_id.to_owned(),
                        },
                    )
                    .await?;
                PaymentServiceClient::new(payments.clone())
                    .get_shift_payment_totals(request)
                    .await
                    .map(Response::into_inner)
                    .map_err(|status| peer(PAYMENTS, status))?
            }
        };
        Ok(Totals { receipts, payments })
    }

    /// Every receipt and QR payment of the shift, in time order, as a full report lists them.
    pub async fn lines(
        &self,
        terminal: &TerminalId,
        shift_id: &str,
    ) -> Result<Vec<pb::ReportTransaction>, ApiError> {
        const RECEIPTS: &str = "ReceiptService.ListShiftReceipts";
        let request = self
            .call(
                RECEIPTS,
                pb::ListShiftReceiptsRequest {
                    terminal: terminal_pb(terminal),
                    shift_id: shift_id.to_owned(),
                },
            )
            .await?;
        let mut lines: Vec<pb::ReportTransaction> =
            ReceiptServiceClient::new(self.receipts.clone())
                .list_shift_receipts(request)
                .await
                .map_err(|status| peer(RECEIPTS, status))?
                .into_inner()
                .map_ok(|chunk| futures::stream::iter(chunk.receipts.into_iter().map(Ok)))
                .try_flatten()
                .try_collect()
                .await
                .map_err(|status| peer(RECEIPTS, status))?;
        if let Some(payments) = &self.payments {
            const PAYMENTS: &str = "PaymentService.ListShiftPayments";
            let request = self
                .call(
                    PAYMENTS,
                    pb::ListShiftPaymentsRequest {
                        terminal: terminal_pb(terminal),
                        shift_id: shift_id.to_owned(),
                    },
                )
                .await?;
            let qr: Vec<pb::ReportTransaction> = PaymentServiceClient::new(payments.clone())
                .list_shift_payments(request)
                .await
                .map_err(|status| peer(PAYMENTS, status))?
                .into_inner()
                .map_ok(|chunk| futures::stream::iter(chunk.payments.into_iter().map(Ok)))
                .try_flatten()
                .try_collect()
                .await
                .map_err(|status| peer(PAYMENTS, status))?;
            lines.extend(qr);
            // Both lists come in time order; a stable sort keeps receipts in number order.
            lines.sort_by_key(|l| l.time.map(|t| (t.seconds, t.nanos)));
        }
        Ok(lines)
    }
}
