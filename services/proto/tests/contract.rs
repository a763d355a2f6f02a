//! Guards the parts of the fiscus.v1 contract other crates and clients depend on.

use fiscus_proto::FILE_DESCRIPTOR_SET;
use fiscus_proto::v1::{
    payment_service_server::{PaymentService, PaymentServiceServer},
    receipt_service_server::{ReceiptService, ReceiptServiceServer},
    shift_service_server::{ShiftService, ShiftServiceServer},
    token_service_server::{TokenService, TokenServiceServer},
};
use prost::Message as _;
use prost_types::FileDescriptorSet;

/// The services and RPC names other crates call by name.
const CONTRACT: [(&str, &[&str]); 4] = [
    (
        "fiscus.v1.ReceiptService",
        &[
            "SignReceipt",
            "CancelReceipt",
            "GetReceipt",
            "ListReceipts",
            "WatchReceipt",
            "SignTransaction",
            "ListPending",
            "ResendPending",
            "VerifyJournal",
            "ExportJournal",
            "RenderReceipt",
            "GetServiceInfo",
            "ExportProviderJournal",
            "ListBankAccounts",
            "GetTaxpayerInfo",
            "GetBranchInfo",
            "ListTaxTypes",
            "GetSigningKeys",
            "SetTerminalShift",
            "GetShiftTotals",
            "ListShiftReceipts",
        ],
    ),
    (
        "fiscus.v1.PaymentService",
        &[
            "CreateQr",
            "GetQr",
            "ListActiveQrs",
            "CancelQr",
            "CreatePaymentRequest",
            "CancelPaymentRequest",
            "GetPaymentStatus",
            "WatchPayment",
            "ListTransactions",
            "GetTransaction",
            "RefundTransaction",
            "GetTerminalSettings",
            "UpdateTerminalSettings",
            "SetTerminalShift",
            "GetShiftPaymentTotals",
            "ListShiftPayments",
        ],
    ),
    (
        "fiscus.v1.ShiftService",
        &[
            "OpenShift",
            "GetCurrentShift",
            "CloseShift",
            "GetXReport",
            "GetZReport",
            "ListShifts",
        ],
    ),
    (
        "fiscus.v1.TokenService",
        &[
            "GetAccessToken",
            "InvalidateToken",
            "InitActivation",
            "ResendActivationOtp",
            "ConfirmActivation",
            "GetActivation",
            "SellerLogin",
            "RefreshSeller",
            "SellerLogout",
            "GetSellerSession",
            "IssueServiceToken",
            "GetJwks",
        ],
    ),
];

const STREAMING: [&str; 6] = [
    "WatchReceipt",
    "ExportJournal",
    "ExportProviderJournal",
    "ListShiftReceipts",
    "WatchPayment",
    "ListShiftPayments",
];

/// The mutating RPCs: their requests carry `string operation_id = 1`.
const MUTATING: [&str; 20] = [
    "SignReceipt",
    "CancelReceipt",
    "SignTransaction",
    "ResendPending",
    "CreateQr",
    "CancelQr",
    "CreatePaymentRequest",
    "CancelPaymentRequest",
    "RefundTransaction",
    "UpdateTerminalSettings",
    "OpenShift",
    "CloseShift",
    "InvalidateToken",
    "InitActivation",
    "ResendActivationOtp",
    "ConfirmActivation",
    "SellerLogin",
    "RefreshSeller",
    "SellerLogout",
    "IssueServiceToken",
];

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("the embedded descriptor set decodes")
}

#[test]
fn descriptor_set_has_every_service_and_rpc_with_its_own_messages() {
    let set = descriptor_set();
    for (service_name, rpcs) in CONTRACT {
        let (package, short) = service_name.rsplit_once('.').expect("qualified name");
        let service = set
            .file
            .iter()
            .filter(|file| file.package() == package)
            .flat_map(|file| &file.service)
            .find(|service| service.name() == short)
            .unwrap_or_else(|| panic!("{service_name} is missing"));
        let names: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(names, rpcs, "{service_name}: RPC names or order changed");
        for method in &service.method {
            let name = method.name();
            assert_eq!(method.input_type(), format!(".fiscus.v1.{name}Request"));
            assert_eq!(method.output_type(), format!(".fiscus.v1.{name}Response"));
            assert!(
                !method.client_streaming(),
                "{name} must not stream requests"
            );
            assert_eq!(
                method.server_streaming(),
                STREAMING.contains(&name),
                "{name} streaming"
            );
        }
    }
}

#[test]
fn mutating_requests_and_only_they_start_with_operation_id() {
    let set = descriptor_set();
    let requests = set
        .file
        .iter()
        .filter(|file| file.package() == "fiscus.v1")
        .flat_map(|file| &file.message_type)
        .filter_map(|message| Some((message.name().strip_suffix("Request")?, message)));
    let mut mutating_seen = 0;
    for (rpc, request) in requests {
        let has_operation_id = request
            .field
            .first()
            .is_some_and(|field| field.name() == "operation_id" && field.number() == 1);
        let mutating = MUTATING.contains(&rpc);
        assert_eq!(has_operation_id, mutating, "{rpc}Request: operation_id = 1");
        let elsewhere = request
            .field
            .iter()
            .skip(1)
            .any(|field| field.name() == "operation_id");
        assert!(!elsewhere, "{rpc}Request: operation_id must be field 1");
        mutating_seen += usize::from(mutating);
    }
    assert_eq!(
        mutating_seen,
        MUTATING.len(),
        "every mutating RPC has a request"
    );
}

#[test]
fn every_enum_starts_with_its_unspecified_value() {
    let set = descriptor_set();
    for file in set.file.iter().filter(|file| file.package() == "fiscus.v1") {
        for enumeration in &file.enum_type {
            let first = &enumeration.value[0];
            assert_eq!(first.number(), 0, "{}", enumeration.name());
            assert!(
                first.name().ends_with("_UNSPECIFIED"),
                "{}: first value {}",
                enumeration.name(),
                first.name()
            );
        }
    }
}

struct Unimplemented;

impl ReceiptService for Unimplemented {}
impl PaymentService for Unimplemented {}
impl ShiftService for Unimplemented {}
impl TokenService for Unimplemented {}

#[test]
fn services_without_handlers_still_build_servers() {
    // Default stubs answer UNIMPLEMENTED, so a partial implementation compiles.
    let _receipts = ReceiptServiceServer::new(Unimplemented);
    let _payments = PaymentServiceServer::new(Unimplemented);
    let _shifts = ShiftServiceServer::new(Unimplemented);
    let _tokens = TokenServiceServer::new(Unimplemented);
}
