//! The edge between the protobuf contract and the domain model: enums both ways, and the API
//! view of a journaled receipt.

use chrono::{DateTime, Utc};
use fiscus_domain::chain::hex;
use fiscus_domain::receipt as d;
use fiscus_kit::ApiError;
use fiscus_proto::v1 as pb;

use crate::config::ProviderKind;

/// A domain enum's protobuf value.
pub trait ToPb {
    type Pb;
    fn to_pb(self) -> Self::Pb;
}

/// The domain value of a protobuf enum; `None` for UNSPECIFIED.
pub trait FromPb<P>: Sized {
    fn from_pb(value: P) -> Option<Self>;
}

/// Domain and protobuf enums name their values alike; the compiler checks every pair.
macro_rules! pairs {
    ($($domain:ident => $proto:ident { $($variant:ident),+ $(,)? })+) => {
        $(
            impl ToPb for d::$domain {
                type Pb = pb::$proto;
                fn to_pb(self) -> pb::$proto {
                    match self {
                        $(d::$domain::$variant => pb::$proto::$variant),+
                    }
                }
            }

            impl FromPb<pb::$proto> for d::$domain {
                fn from_pb(value: pb::$proto) -> Option<Self> {
                    match value {
                        $(pb::$proto::$variant => Some(d::$domain::$variant),)+
                        pb::$proto::Unspecified => None,
                    }
                }
            }
        )+
    };
}

pairs! {
    ReceiptKind => ReceiptKind { Sale, Refund, Zero, Cancellation }
    ReceiptType => ReceiptType { B2cReceipt, B2bReceipt, B2cInvoice, B2bInvoice }
    TaxType => TaxType { VatAble, VatFree, VatZero, NoVat }
    PaymentMethod => PaymentMethod { Cash, PaymentCard, BankTransfer, Qr, Voucher, Change, Other }
    BarCodeType => BarCodeType { Gs1, Isbn, Undefined }
    FiscalState => FiscalState { LocalSigned, Pending, Accepted, Rejected, Cancelled }
}

/// The enum value of a protobuf `i32` field, in the domain; `None` for UNSPECIFIED and for a
/// number the contract does not define.
pub fn enum_field<D: FromPb<P>, P: TryFrom<i32>>(value: i32) -> Option<D> {
    P::try_from(value).ok().and_then(D::from_pb)
}

/// The mutable part of a journaled receipt, kept beside its signed document.
#[derive(Debug, Clone)]
pub struct Standing {
    pub shift_id: String,
    pub fiscal_state: d::FiscalState,
    pub state_message: String,
    pub cancelled_by: Option<String>,
    pub cancelled_at_us: Option<i64>,
    pub cancellation_reason: Option<String>,
    pub previous_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub signature: Vec<u8>,
    pub created_at_us: i64,
    /// Where it stands with its provider.
    pub upstream: Upstream,
}

/// What a receipt's provider answered about it, as kept.
#[derive(Debug, Clone, Default)]
pub struct Upstream {
    pub provider: ProviderKind,
    /// The provider's id of the document (e-barimt: the 33-digit ДДТД). Kept for good.
    pub id: Option<String>,
    /// e-barimt: registered to the consumer through their bank card.
    pub easy: bool,
    pub accepted_at_us: Option<i64>,
    /// e-barimt's lottery number and QR data, for the printed receipt only: present while the
    /// retention setting allows, then erased.
    pub lottery: Option<String>,
    pub qr: Option<String>,
    /// fiskaltrust's answer, once it signed the receipt.
    pub fiskaltrust: Option<FtAnswer>,
}

/// fiskaltrust's `ftSignatureFormat` of a QR code (its low byte): the one the printed receipt's
/// QR code shows.
pub const SIGNATURE_FORMAT_QR: u64 = 0x03;

/// What fiskaltrust answered for a signed receipt, as kept (its `ftReceiptIdentification` is
/// [`Upstream::id`]).
#[derive(Debug, Clone, Default)]
pub struct FtAnswer {
    pub queue_id: String,
    pub queue_item_id: String,
    pub cashbox_identification: String,
    /// `ftState` as answered.
    pub state: u64,
    /// `ftSignatures`, in print order.
    pub signatures: Vec<fiscus_providers::fiskaltrust::wire::SignatureItem>,
}

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn micros_timestamp(us: i64) -> Option<prost_types::Timestamp> {
    DateTime::<Utc>::from_timestamp_micros(us).map(timestamp)
}

/// What the QR code of a built-in-signer receipt encodes: enough for an auditor to find the
/// receipt and check its hash against the journal and the merchant's public key.
pub fn qr_payload(receipt: &d::Receipt, hash: &[u8]) -> String {
    format!(
        "fiscus:1:{}:{}:{}:{}:{}:{}",
        receipt.merchant_tin,
        receipt.branch_no,
        receipt.pos_no,
        receipt.number,
        receipt.total_amount,
        hex(hash)
    )
}

/// Whether the API view carries the signed document byte for byte (GetReceipt, ExportJournal)
/// or leaves it out to keep answers small (SignReceipt, ListReceipts, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document<'a> {
    Omitted,
    Included(&'a str),
}

/// The API view of a journaled receipt.
pub fn receipt(receipt: &d::Receipt, standing: &Standing, document: Document<'_>) -> pb::Receipt {
    let ft = standing.upstream.fiskaltrust.as_ref();
    pb::Receipt {
        id: receipt.id.clone(),
        terminal: Some(pb::Terminal {
            merchant_tin: receipt.merchant_tin.clone(),
            branch_no: receipt.branch_no.clone(),
            pos_no: receipt.pos_no.clone(),
        }),
        shift_id: standing.shift_id.clone(),
        receipt_number: receipt.number,
        r#type: receipt.receipt_type.to_pb().into(),
        kind: receipt.kind.to_pb().into(),
        receipt_reference: receipt.reference.clone(),
        receipt_moment: Some(timestamp(receipt.moment)),
        items: receipt.items.iter().map(item).collect(),
        payments: receipt.payments.iter().map(payment).collect(),
        total_amount: receipt.total_amount.to_string(),
        total_vat: receipt.total_vat.to_string(),
        total_city_tax: receipt.total_city_tax.to_string(),
        currency: receipt.currency.clone(),
        customer_tin: receipt.customer_tin.clone(),
        consumer_no: receipt.consumer_no.clone(),
        customer_name: receipt.customer_name.clone(),
        customer_address: receipt.customer_address.clone(),
        district_code: receipt.district_code.clone(),
        bank_account: receipt.bank_account.clone(),
        iban: receipt.iban.clone(),
        invoice_id: receipt.invoice_id.clone(),
        report_month: receipt.report_month.clone(),
        original_receipt_id: receipt.original_receipt_id.clone(),
        cashier: receipt.cashier.clone(),
        receipt_case: receipt.receipt_case,
        late_signed: receipt.late_signed,
        handwritten: receipt.handwritten,
        fiscal_state: standing.fiscal_state.to_pb().into(),
        state_message: standing.state_message.clone(),
        provider: provider(standing.upstream.provider).into(),
        ebarimt_id: match standing.upstream.provider {
            ProviderKind::Ebarimt => standing.upstream.id.clone().unwrap_or_default(),
            ProviderKind::Builtin | ProviderKind::Fiskaltrust => String::new(),
        },
        ft_receipt_identification: match standing.upstream.provider {
            ProviderKind::Fiskaltrust => standing.upstream.id.clone().unwrap_or_default(),
            ProviderKind::Builtin | ProviderKind::Ebarimt => String::new(),
        },
        ft_state: ft.map(|f| f.state).unwrap_or_default(),
        ft_queue_item_id: ft.map(|f| f.queue_item_id.clone()).unwrap_or_default(),
        ft_queue_id: ft.map(|f| f.queue_id.clone()).unwrap_or_default(),
        ft_cashbox_identification: ft
            .map(|f| f.cashbox_identification.clone())
            .unwrap_or_default(),
        signatures: ft
            .map(|f| {
                f.signatures
                    .iter()
                    .map(|s| pb::Signature {
                        format: s.format.0,
                        r#type: s.signature_type.0,
                        caption: s.caption.clone(),
                        data: s.data.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        lottery: standing.upstream.lottery.clone().unwrap_or_default(),
        easy_registered: standing.upstream.easy,
        accepted_at: standing.upstream.accepted_at_us.and_then(micros_timestamp),
        qr_data: standing
            .upstream
            .qr
            .clone()
            .or_else(|| {
                let signatures = &ft?.signatures;
                signatures
                    .iter()
                    .find(|s| s.format.0 & 0xFF == SIGNATURE_FORMAT_QR)
                    .map(|s| s.data.clone())
            })
            .unwrap_or_else(|| qr_payload(receipt, &standing.hash)),
        previous_hash: standing.previous_hash.clone(),
        hash: standing.hash.clone(),
        signature: standing.signature.clone(),
        key_id: receipt.key_id.clone(),
        signature_algorithm: pb::SignatureAlgorithm::Ed25519.into(),
        created_at: micros_timestamp(standing.created_at_us),
        signed_at: Some(timestamp(receipt.signed_at)),
        cancelled_at: standing.cancelled_at_us.and_then(micros_timestamp),
        cancellation_reason: standing.cancellation_reason.clone().unwrap_or_default(),
        cancelled_by_receipt_id: standing.cancelled_by.clone().unwrap_or_default(),
        signed_document: match document {
            Document::Omitted => String::new(),
            Document::Included(text) => text.to_owned(),
        },
    }
}

pub fn provider(kind: ProviderKind) -> pb::Provider {
    match kind {
        ProviderKind::Builtin => pb::Provider::Builtin,
        ProviderKind::Ebarimt => pb::Provider::Ebarimt,
        ProviderKind::Fiskaltrust => pb::Provider::Fiskaltrust,
    }
}

fn item(item: &d::Item) -> pb::ChargeItem {
    pb::ChargeItem {
        position: item.position,
        name: item.name.clone(),
        bar_code: item.bar_code.clone(),
        bar_code_type: item.bar_code_type.to_pb().into(),
        classification_code: item.classification_code.clone(),
        tax_type: item.tax_type.to_pb().into(),
        tax_product_code: item.tax_product_code.clone(),
        measure_unit: item.measure_unit.clone(),
        quantity: item.quantity.to_string(),
        unit_price: item.unit_price.to_string(),
        vat_rate: item.vat_rate.to_string(),
        city_tax_applies: item.city_tax_rate.hundredths() != 0,
        city_tax_rate: item.city_tax_rate.to_string(),
        lot_no: item.lot_no.clone(),
        stock_qr: item.stock_qr.clone(),
        product_number: item.product_number.clone(),
        charge_item_case: item.charge_item_case,
        total_amount: item.total_amount.to_string(),
        total_vat: item.total_vat.to_string(),
        total_city_tax: item.total_city_tax.to_string(),
        net_amount: item.net_amount.to_string(),
    }
}

fn payment(payment: &d::Payment) -> pb::PayItem {
    pb::PayItem {
        method: payment.method.to_pb().into(),
        amount: payment.amount.to_string(),
        description: payment.description.clone(),
        pay_item_case: payment.pay_item_case,
        reference: payment.reference.clone(),
        rrn: payment.rrn.clone(),
        card_terminal_id: payment.card_terminal_id.clone(),
        masked_card_number: payment.masked_card_number.clone(),
        bank_code: payment.bank_code.clone(),
        easy_register: payment.easy_register,
        data: payment.data.clone(),
    }
}

/// Appends the canonical protobuf JSON mapping of `receipt` to `out`: what any protobuf JSON
/// parser reads back into `fiscus.v1.Receipt`.
pub fn write_json(receipt: &pb::Receipt, out: &mut Vec<u8>) -> Result<(), ApiError> {
    fiscus_proto::write_json("fiscus.v1.Receipt", receipt, out)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("receipt {} as JSON: {e}", receipt.id)))
}
