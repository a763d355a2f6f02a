//! The v2 case values of fiskaltrust's POS System API, as its interface library defines them
//! (`fiskaltrust.ifPOS.v2.Cases`; the v1 tables in the reference documents differ).
//!
//! Every case is a 64-bit number laid out `0xCCCC_vlll_gggg_xxxx`: the market's ISO 3166-1
//! alpha-2 code in ASCII (`CCCC`, Italy `0x4954`), the interface version (`v`, 2), flags of the
//! market (`lll`) and global ones (`gggg`), and the case itself in the low 16 bits — so a point
//! of sale receipt in Italy is `0x4954_2000_0000_0001`. On the wire they are JSON numbers, and
//! most exceed 2⁵³: read and write them as `u64`, never through a float.

use std::fmt;
use std::ops::BitOr;

const MARKET_MASK: u64 = 0xFFFF_0000_0000_0000;
const VERSION_MASK: u64 = 0x0000_F000_0000_0000;
const VERSION_2: u64 = 0x0000_2000_0000_0000;
const FLAGS_MASK: u64 = 0x0000_0FFF_FFFF_0000;
const CASE_MASK: u64 = 0x0000_0000_0000_FFFF;

/// A market: the country whose fiscal law a queue follows, by its ISO 3166-1 alpha-2 code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Market([u8; 2]);

/// Why a market code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("market {0:?} is not an ISO 3166-1 alpha-2 code (two capital letters, e.g. \"IT\")")]
pub struct MarketError(pub String);

impl Market {
    /// The market of a code such as `"IT"`.
    pub fn parse(code: &str) -> Result<Self, MarketError> {
        match code.as_bytes() {
            &[a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([a, b])),
            _ => Err(MarketError(code.to_owned())),
        }
    }

    /// The high 16 bits of a case value of this market, with the version nibble of v2: the
    /// `ftState` of a queue of this market that has nothing to report.
    pub fn prefix(self) -> u64 {
        (u64::from(self.0[0]) << 56) | (u64::from(self.0[1]) << 48) | VERSION_2
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", char::from(self.0[0]), char::from(self.0[1]))
    }
}

/// Flags of a case value, `BitOr`-able; each type's constants say what they mean there.
macro_rules! flags {
    ($name:ident) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// No flag.
            pub const NONE: Self = Self(0);

            /// Whether every flag of `other` is set.
            pub fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }
        }

        impl BitOr for $name {
            type Output = Self;

            fn bitor(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
        }
    };
}

flags!(ReceiptFlags);

impl ReceiptFlags {
    /// Signed after the fact: made while the middleware was unreachable (failed mode), sent
    /// once it is back; a zero receipt ends the mode.
    pub const LATE_SIGNING: Self = Self(0x0001_0000);
    /// A training receipt, without fiscal effect.
    pub const TRAINING: Self = Self(0x0002_0000);
    /// Voids the receipt named by `cbPreviousReceiptReference`.
    pub const VOID: Self = Self(0x0004_0000);
    /// First written by hand.
    pub const HANDWRITTEN: Self = Self(0x0008_0000);
    /// The issuer is a small business (a reduced regime).
    pub const ISSUER_IS_SMALL_BUSINESS: Self = Self(0x0010_0000);
    /// The buyer is a business (B2B).
    pub const RECEIVER_IS_BUSINESS: Self = Self(0x0020_0000);
    /// The buyer is known (`cbCustomer` is given).
    pub const RECEIVER_IS_KNOWN: Self = Self(0x0040_0000);
    /// A refund of the receipt named by `cbPreviousReceiptReference`.
    pub const REFUND: Self = Self(0x0100_0000);
    /// Not a new receipt: answers the one already signed for this `cbReceiptReference` (or
    /// nothing), so that a request whose answer was lost is resolved without signing twice.
    pub const RECEIPT_REQUESTED: Self = Self(0x8000_0000);
}

/// `ftReceiptCase`: what a receipt is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ReceiptCase {
    Unknown = 0x0000,
    PointOfSaleReceipt = 0x0001,
    PaymentTransfer = 0x0002,
    PointOfSaleReceiptWithoutObligation = 0x0003,
    ECommerce = 0x0004,
    DeliveryNote = 0x0005,
    InvoiceUnknown = 0x1000,
    InvoiceB2C = 0x1001,
    InvoiceB2B = 0x1002,
    InvoiceB2G = 0x1003,
    ZeroReceipt = 0x2000,
    OneReceipt = 0x2001,
    ShiftClosing = 0x2010,
    DailyClosing = 0x2011,
    MonthlyClosing = 0x2012,
    YearlyClosing = 0x2013,
    InitialOperationReceipt = 0x4001,
    OutOfOperationReceipt = 0x4002,
}

impl ReceiptCase {
    const ALL: [Self; 18] = [
        Self::Unknown,
        Self::PointOfSaleReceipt,
        Self::PaymentTransfer,
        Self::PointOfSaleReceiptWithoutObligation,
        Self::ECommerce,
        Self::DeliveryNote,
        Self::InvoiceUnknown,
        Self::InvoiceB2C,
        Self::InvoiceB2B,
        Self::InvoiceB2G,
        Self::ZeroReceipt,
        Self::OneReceipt,
        Self::ShiftClosing,
        Self::DailyClosing,
        Self::MonthlyClosing,
        Self::YearlyClosing,
        Self::InitialOperationReceipt,
        Self::OutOfOperationReceipt,
    ];

    /// The `ftReceiptCase` of this case in `market` with `flags`.
    pub fn value(self, market: Market, flags: ReceiptFlags) -> u64 {
        market.prefix() | (flags.0 & FLAGS_MASK) | self as u64
    }

    /// The case of a value's low 16 bits, if it is one of these.
    pub fn of(value: u64) -> Option<Self> {
        let case = value & CASE_MASK;
        Self::ALL.into_iter().find(|c| *c as u64 == case)
    }
}

/// A case value taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The market, when the high 16 bits are two capital letters.
    pub market: Option<Market>,
    /// The interface version nibble (2 for v2).
    pub version: u8,
    /// The flags, market and global (`0x0000_0FFF_FFFF_0000`).
    pub flags: u64,
    /// The low 16 bits.
    pub case: u16,
}

impl Decoded {
    /// Whether `value` is a v2 case value of `market`.
    pub fn is_v2_of(value: u64, market: Market) -> bool {
        let decoded = Self::of(value);
        decoded.market == Some(market) && decoded.version == 2
    }

    /// Takes `value` apart.
    pub fn of(value: u64) -> Self {
        let market = (value & MARKET_MASK) >> 48;
        let bytes = [(market >> 8) as u8, (market & 0xFF) as u8];
        Self {
            market: std::str::from_utf8(&bytes)
                .ok()
                .and_then(|code| Market::parse(code).ok()),
            version: ((value & VERSION_MASK) >> 44) as u8,
            flags: value & FLAGS_MASK,
            case: (value & CASE_MASK) as u16,
        }
    }
}

/// A charge item's VAT rate, as the market's law names its rates (the `V` nibble of
/// `ftChargeItemCase`); the percentage of each is the market's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VatRate {
    Unknown = 0x0,
    Discounted1 = 0x1,
    Discounted2 = 0x2,
    Normal = 0x3,
    SuperReduced1 = 0x4,
    SuperReduced2 = 0x5,
    Parking = 0x6,
    Zero = 0x7,
    NotTaxable = 0x8,
}

impl VatRate {
    /// The rate of this category in `market`, in hundredths of a percent (`2200` = 22 %), for
    /// the markets whose rates fiscus knows (Italy, Germany, Austria); `None` elsewhere, or for a
    /// category the market does not have.
    pub fn percent_in(self, market: Market) -> Option<i64> {
        Self::rates(market)?
            .iter()
            .find(|(category, _)| *category == self)
            .map(|(_, rate)| *rate)
    }

    /// The category of a positive rate in `market` (`None`: the market has no such rate, or
    /// fiscus does not know its rates). A rate of zero is [`VatRate::Zero`] or
    /// [`VatRate::NotTaxable`], which only the item's tax treatment tells apart.
    pub fn of_percent(market: Market, hundredths: i64) -> Option<Self> {
        Self::rates(market)?
            .iter()
            .find(|(category, rate)| *rate == hundredths && *category != Self::Zero)
            .map(|(category, _)| *category)
    }

    /// The VAT rates of a market by category, as its law and fiskaltrust's market guide name them.
    fn rates(market: Market) -> Option<&'static [(Self, i64)]> {
        const IT: &[(VatRate, i64)] = &[
            (VatRate::Discounted1, 1000),
            (VatRate::Discounted2, 500),
            (VatRate::Normal, 2200),
            (VatRate::SuperReduced1, 400),
            (VatRate::Zero, 0),
            (VatRate::NotTaxable, 0),
        ];
        const DE: &[(VatRate, i64)] = &[
            (VatRate::Discounted1, 700),
            (VatRate::Normal, 1900),
            (VatRate::Zero, 0),
            (VatRate::NotTaxable, 0),
        ];
        const AT: &[(VatRate, i64)] = &[
            (VatRate::Discounted1, 1000),
            (VatRate::Discounted2, 1300),
            (VatRate::Normal, 2000),
            (VatRate::Zero, 0),
            (VatRate::NotTaxable, 0),
        ];
        match &market.0 {
            b"IT" => Some(IT),
            b"DE" => Some(DE),
            b"AT" => Some(AT),
            _ => None,
        }
    }

    /// The category of a case value's `V` nibble.
    pub fn of_case(value: u64) -> Option<Self> {
        [
            Self::Unknown,
            Self::Discounted1,
            Self::Discounted2,
            Self::Normal,
            Self::SuperReduced1,
            Self::SuperReduced2,
            Self::Parking,
            Self::Zero,
            Self::NotTaxable,
        ]
        .into_iter()
        .find(|v| *v as u64 == value & 0xF)
    }
}

/// What a charge item is (the `S` nibble of `ftChargeItemCase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Service {
    Unknown = 0x00,
    /// A supply of goods.
    Delivery = 0x10,
    /// A supply of services.
    OtherService = 0x20,
    Tip = 0x30,
    Voucher = 0x40,
    CatalogService = 0x50,
    /// Sold on behalf of a third party (agency business).
    NotOwnSales = 0x60,
    OwnConsumption = 0x70,
    Grant = 0x80,
    Receivable = 0x90,
    CashTransfer = 0xA0,
}

flags!(ChargeItemFlags);

impl ChargeItemFlags {
    pub const VOID: Self = Self(0x0001_0000);
    pub const REFUND: Self = Self(0x0002_0000);
    /// A discount or surcharge on the receipt.
    pub const EXTRA_OR_DISCOUNT: Self = Self(0x0004_0000);
}

/// The `ftChargeItemCase` of an item: what it is, at which of the market's VAT rates.
pub fn charge_item_case(
    market: Market,
    service: Service,
    vat: VatRate,
    flags: ChargeItemFlags,
) -> u64 {
    market.prefix() | (flags.0 & FLAGS_MASK) | service as u64 | vat as u64
}

/// `ftPayItemCase`: how a payment was made (the low byte). Change given back is
/// [`PayItemFlags::CHANGE`] on a cash item, not a case of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PayItemCase {
    Unknown = 0x00,
    Cash = 0x01,
    NonCash = 0x02,
    CrossedCheque = 0x03,
    DebitCard = 0x04,
    CreditCard = 0x05,
    Voucher = 0x06,
    OnlinePayment = 0x07,
    LoyaltyProgram = 0x08,
    AccountsReceivable = 0x09,
    SepaTransfer = 0x0A,
    OtherBankTransfer = 0x0B,
    TransferToCashbook = 0x0C,
    InternalMaterialConsumption = 0x0D,
    Grant = 0x0E,
    TicketRestaurant = 0x0F,
}

flags!(PayItemFlags);

impl PayItemFlags {
    pub const VOID: Self = Self(0x0001_0000);
    pub const REFUND: Self = Self(0x0002_0000);
    pub const DOWNPAYMENT: Self = Self(0x0008_0000);
    pub const FOREIGN_CURRENCY: Self = Self(0x0010_0000);
    /// Change handed back (on a cash item, with a negative amount).
    pub const CHANGE: Self = Self(0x0020_0000);
    pub const TIP: Self = Self(0x0040_0000);
}

impl PayItemCase {
    /// The `ftPayItemCase` of this case in `market` with `flags`.
    pub fn value(self, market: Market, flags: PayItemFlags) -> u64 {
        market.prefix() | (flags.0 & FLAGS_MASK) | self as u64
    }
}

flags!(StateFlags);

impl StateFlags {
    /// The security mechanism is not (or no longer) in operation.
    pub const OUT_OF_OPERATION: Self = Self(0x0001);
    /// The signature creation unit failed: the queue is in failed mode until a zero receipt
    /// finds it back.
    pub const SCU_OUT_OF_SERVICE: Self = Self(0x0002);
    /// Late-signing mode: receipts made during a failure are being signed; a zero receipt ends it.
    pub const LATE_SIGNING: Self = Self(0x0008);
    /// The middleware has a message for the operator.
    pub const MESSAGE_PENDING: Self = Self(0x0040);
    /// A daily closing is due.
    pub const DAILY_CLOSING_DUE: Self = Self(0x0100);
}

/// What an answer's `ftState` says of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateOutcome {
    /// Processed; the flags tell the queue's condition.
    Success(StateFlags),
    /// Recorded as a queue item, but no receipt number was taken (`…EEEE_EEEE`); the reason is
    /// in the signatures.
    Error,
    /// Nothing was recorded (`…FFFF_FFFF`), e.g. a receipt request that found no receipt.
    Fail,
}

/// An answer's `ftState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State(pub u64);

impl State {
    /// Success (with the queue's flags), error or fail.
    pub fn outcome(self) -> StateOutcome {
        match self.0 & 0xFFFF_FFFF {
            0xEEEE_EEEE => StateOutcome::Error,
            0xFFFF_FFFF => StateOutcome::Fail,
            low => StateOutcome::Success(StateFlags(low)),
        }
    }

    /// The market the state comes from.
    pub fn market(self) -> Option<Market> {
        Decoded::of(self.0).market
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it() -> Market {
        Market::parse("IT").expect("a market")
    }

    #[test]
    fn receipt_cases_are_those_of_fiskaltrusts_multi_market_guide() {
        let none = ReceiptFlags::NONE;
        assert_eq!(
            ReceiptCase::PointOfSaleReceipt.value(it(), none),
            0x4954_2000_0000_0001
        );
        assert_eq!(
            ReceiptCase::ZeroReceipt.value(it(), none),
            0x4954_2000_0000_2000
        );
        assert_eq!(
            ReceiptCase::DailyClosing.value(it(), none),
            0x4954_2000_0000_2011
        );
        assert_eq!(
            ReceiptCase::InitialOperationReceipt.value(it(), none),
            0x4954_2000_0000_4001
        );
        assert_eq!(
            ReceiptCase::PointOfSaleReceipt.value(it(), ReceiptFlags::REFUND),
            0x4954_2000_0100_0001
        );
        assert_eq!(
            ReceiptCase::PointOfSaleReceipt.value(
                it(),
                ReceiptFlags::LATE_SIGNING | ReceiptFlags::RECEIPT_REQUESTED
            ),
            0x4954_2000_8001_0001
        );
    }

    #[test]
    fn the_seeds_b2b_invoice_decodes_as_such_and_its_refund_as_a_small_business_sale() {
        let invoice = Decoded::of(0x4954_2000_0020_1002);
        assert_eq!((invoice.market, invoice.version), (Some(it()), 2));
        assert_eq!(
            ReceiptCase::of(0x4954_2000_0020_1002),
            Some(ReceiptCase::InvoiceB2B)
        );
        assert!(ReceiptFlags(invoice.flags).contains(ReceiptFlags::RECEIVER_IS_BUSINESS));
        // The seed's "refund" example carries no refund flag in v2.
        let refund = ReceiptFlags(Decoded::of(0x4954_2000_0010_0001).flags);
        assert!(!refund.contains(ReceiptFlags::REFUND));
        assert!(refund.contains(ReceiptFlags::ISSUER_IS_SMALL_BUSINESS));
    }

    #[test]
    fn charge_and_pay_items_carry_their_market_rate_service_and_flags() {
        assert_eq!(
            charge_item_case(
                it(),
                Service::Delivery,
                VatRate::Normal,
                ChargeItemFlags::NONE
            ),
            0x4954_2000_0000_0013
        );
        assert_eq!(
            charge_item_case(
                it(),
                Service::OtherService,
                VatRate::Discounted1,
                ChargeItemFlags::REFUND
            ),
            0x4954_2000_0002_0021
        );
        assert_eq!(
            PayItemCase::Cash.value(it(), PayItemFlags::CHANGE),
            0x4954_2000_0020_0001
        );
        assert_eq!(
            PayItemCase::CreditCard.value(it(), PayItemFlags::NONE),
            0x4954_2000_0000_0005
        );
    }

    #[test]
    fn a_state_tells_success_with_its_flags_from_error_and_fail() {
        assert_eq!(
            State(0x4954_2000_0000_0000).outcome(),
            StateOutcome::Success(StateFlags::NONE)
        );
        let StateOutcome::Success(flags) = State(0x4954_2000_0000_000A).outcome() else {
            panic!("a success");
        };
        assert!(flags.contains(StateFlags::SCU_OUT_OF_SERVICE | StateFlags::LATE_SIGNING));
        assert!(!flags.contains(StateFlags::OUT_OF_OPERATION));
        assert_eq!(State(0x4954_2000_EEEE_EEEE).outcome(), StateOutcome::Error);
        assert_eq!(State(0x4954_2000_FFFF_FFFF).outcome(), StateOutcome::Fail);
        assert_eq!(State(0x4954_2000_0000_0000).market(), Some(it()));
    }

    #[test]
    fn markets_are_two_capital_letters_and_case_values_survive_json_exactly() {
        assert_eq!(it().to_string(), "IT");
        for bad in ["", "I", "it", "ITA", "1T"] {
            assert!(Market::parse(bad).is_err(), "{bad:?}");
        }
        // Above 2^53: a float would round it.
        let value = ReceiptCase::PointOfSaleReceipt.value(it(), ReceiptFlags::NONE);
        let text = serde_json::to_string(&value).expect("JSON");
        assert_eq!(text, "5283883447184523265");
        assert_eq!(
            serde_json::from_str::<u64>(&text).expect("read back"),
            value
        );
        assert_ne!(value as f64 as u64, value, "a float cannot hold it");
    }
}
