//! QR payments (MIA POS): which QR type and amount type carry which payment request, which
//! amounts a payer may pay, how a payment request's state may move, and how much of a payment
//! may still be refunded.
//!
//! A QR code is dynamic (one payment; it carries its payment request — its *extension* — from
//! the start), static (printed once; payment requests are attached to it, and a static QR with a
//! fixed or controlled amount may carry a first one) or hybrid (like static, with the amount set
//! per payment request, so it carries none at creation). A free amount carries no amounts at all.

use crate::decimal::{DecimalError, Money};

/// The kind of QR code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QrType {
    Dynamic,
    Static,
    Hybrid,
}

impl QrType {
    /// MIA's spelling (`qrType`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::Static => "static",
            Self::Hybrid => "hybrid",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "dynamic" => Some(Self::Dynamic),
            "static" => Some(Self::Static),
            "hybrid" => Some(Self::Hybrid),
            _ => None,
        }
    }

    /// Static and hybrid QR codes are permanent: a terminal has at most one of them active.
    pub fn is_permanent(self) -> bool {
        !matches!(self, Self::Dynamic)
    }

    /// Only a hybrid QR's payment request may be cancelled on its own (MIA's rule).
    pub fn request_is_cancellable(self) -> bool {
        matches!(self, Self::Hybrid)
    }
}

/// How the amount of a payment is determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmountType {
    Fixed,
    Free,
    Controlled,
}

impl AmountType {
    /// MIA's spelling (`amountType`, `qrAmountType`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Free => "free",
            Self::Controlled => "controlled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "fixed" => Some(Self::Fixed),
            "free" => Some(Self::Free),
            "controlled" => Some(Self::Controlled),
            _ => None,
        }
    }
}

/// What a payment request lets the payer pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amounts {
    /// Exactly this.
    Fixed(Money),
    /// Any positive amount.
    Free,
    /// Between `min` and `max`, both included.
    Controlled { min: Money, max: Money },
}

impl Amounts {
    pub fn amount_type(&self) -> AmountType {
        match self {
            Self::Fixed(_) => AmountType::Fixed,
            Self::Free => AmountType::Free,
            Self::Controlled { .. } => AmountType::Controlled,
        }
    }

    /// `(amount, min, max)` as MIA's extension carries them.
    pub fn parts(&self) -> (Option<Money>, Option<Money>, Option<Money>) {
        match *self {
            Self::Fixed(amount) => (Some(amount), None, None),
            Self::Free => (None, None, None),
            Self::Controlled { min, max } => (None, Some(min), Some(max)),
        }
    }

    /// Whether a payer may pay `paid` against this request.
    pub fn fits(&self, paid: Money) -> Result<(), DoesNotFit> {
        if !paid.is_positive() {
            return Err(DoesNotFit::NotPositive);
        }
        match *self {
            Self::Fixed(amount) if paid != amount => Err(DoesNotFit::NotTheAmount { amount }),
            Self::Controlled { min, max } if paid < min || paid > max => {
                Err(DoesNotFit::OutOfRange { min, max })
            }
            _ => Ok(()),
        }
    }
}

/// Why a payer's amount is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DoesNotFit {
    #[error("must be greater than 0")]
    NotPositive,
    #[error("must be exactly {amount}")]
    NotTheAmount { amount: Money },
    #[error("must be between {min} and {max}")]
    OutOfRange { min: Money, max: Money },
}

/// The amount fields of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmountField {
    Amount,
    MinAmount,
    MaxAmount,
}

impl AmountField {
    /// The field's name in the fiscus contract.
    pub fn name(self) -> &'static str {
        match self {
            Self::Amount => "amount",
            Self::MinAmount => "min_amount",
            Self::MaxAmount => "max_amount",
        }
    }
}

/// What is wrong with one amount field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountProblem {
    #[error("is required for {0}")]
    Required(&'static str),
    #[error("must be empty for {0}")]
    NotAllowed(&'static str),
    #[error("must be a decimal greater than 0 with at most 2 fraction digits, e.g. \"12.50\": {0}")]
    Malformed(String),
    #[error("must be greater than 0")]
    NotPositive,
    #[error("must be at least min_amount ({min})")]
    BelowMin { min: Money },
}

/// The amounts a request gives, each still text (empty = not given).
#[derive(Debug, Clone, Copy, Default)]
pub struct AmountsAsked<'a> {
    pub amount: &'a str,
    pub min_amount: &'a str,
    pub max_amount: &'a str,
}

/// One amount: a plain decimal greater than 0 with at most 2 fraction digits.
pub fn parse_amount(text: &str) -> Result<Money, AmountProblem> {
    let money = Money::parse(text).map_err(|e| {
        AmountProblem::Malformed(match e {
            DecimalError::TooPrecise { .. } => format!("{text:?} has more than 2 fraction digits"),
            other => other.to_string(),
        })
    })?;
    if !money.is_positive() {
        return Err(AmountProblem::NotPositive);
    }
    Ok(money)
}

/// Whether a field must, may or must not be given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
    Forbidden,
}

/// Reads the three fields by what each needs, collecting every problem.
fn read_fields(
    asked: AmountsAsked<'_>,
    needs: [Need; 3],
    what: &'static str,
) -> Result<[Option<Money>; 3], Vec<(AmountField, AmountProblem)>> {
    let fields = [
        (AmountField::Amount, asked.amount),
        (AmountField::MinAmount, asked.min_amount),
        (AmountField::MaxAmount, asked.max_amount),
    ];
    let mut problems = Vec::new();
    let mut values = [None; 3];
    for ((field, text), (need, value)) in fields.into_iter().zip(needs.iter().zip(&mut values)) {
        match (text.is_empty(), need) {
            (true, Need::Required) => problems.push((field, AmountProblem::Required(what))),
            (true, _) => {}
            (false, Need::Forbidden) => problems.push((field, AmountProblem::NotAllowed(what))),
            (false, _) => match parse_amount(text) {
                Ok(money) => *value = Some(money),
                Err(problem) => problems.push((field, problem)),
            },
        }
    }
    if let [_, Some(min), Some(max)] = values
        && min > max
    {
        problems.push((AmountField::MaxAmount, AmountProblem::BelowMin { min }));
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

/// The payment request a new QR code carries, by the rules of its type and amount type:
/// `Some` for a dynamic QR (always) and for a static fixed or controlled QR given its amounts;
/// `None` for a hybrid QR, a static free QR and a static QR given no amounts. Every field at
/// fault is named.
pub fn request_at_creation(
    qr_type: QrType,
    amount_type: AmountType,
    asked: AmountsAsked<'_>,
) -> Result<Option<Amounts>, Vec<(AmountField, AmountProblem)>> {
    use Need::{Forbidden, Optional, Required};
    let (needs, what): ([Need; 3], &'static str) = match (qr_type, amount_type) {
        (QrType::Hybrid, _) => (
            [Forbidden; 3],
            "a hybrid QR (its amounts come with each payment request)",
        ),
        (_, AmountType::Free) => ([Forbidden; 3], "a free amount"),
        (QrType::Dynamic, AmountType::Fixed) => (
            [Required, Forbidden, Forbidden],
            "a dynamic QR with a fixed amount",
        ),
        (QrType::Static, AmountType::Fixed) => (
            [Optional, Forbidden, Forbidden],
            "a static QR with a fixed amount",
        ),
        (QrType::Dynamic, AmountType::Controlled) => (
            [Forbidden, Required, Required],
            "a dynamic QR with a controlled amount",
        ),
        (QrType::Static, AmountType::Controlled) => (
            [Forbidden, Optional, Optional],
            "a static QR with a controlled amount",
        ),
    };
    let [amount, min, max] = read_fields(asked, needs, what)?;
    Ok(match (qr_type, amount_type, amount, min, max) {
        (QrType::Hybrid, ..) => None,
        (QrType::Dynamic, AmountType::Free, ..) => Some(Amounts::Free),
        (QrType::Static, AmountType::Free, ..) => None,
        (_, AmountType::Fixed, Some(amount), ..) => Some(Amounts::Fixed(amount)),
        (_, AmountType::Controlled, _, Some(min), Some(max)) => {
            Some(Amounts::Controlled { min, max })
        }
        (_, AmountType::Controlled, _, None, None) => None,
        (_, AmountType::Controlled, _, Some(_), None) => {
            return Err(vec![(
                AmountField::MaxAmount,
                AmountProblem::Required("a controlled amount given min_amount"),
            )]);
        }
        (_, AmountType::Controlled, _, None, Some(_)) => {
            return Err(vec![(
                AmountField::MinAmount,
                AmountProblem::Required("a controlled amount given max_amount"),
            )]);
        }
        (_, AmountType::Fixed, None, ..) => None,
    })
}

/// A payment request attached to an existing QR code is refused for a dynamic QR, which has
/// its one request from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a dynamic QR carries its one payment request from its creation; create a new QR instead")]
pub struct DynamicHasItsRequest;

/// The amounts of a new payment request on a static or hybrid QR of `amount_type`: fixed needs
/// `amount`, controlled `min_amount` ≤ `max_amount`, free none.
pub fn request_on_permanent_qr(
    qr_type: QrType,
    amount_type: AmountType,
    asked: AmountsAsked<'_>,
) -> Result<Result<Amounts, Vec<(AmountField, AmountProblem)>>, DynamicHasItsRequest> {
    use Need::{Forbidden, Required};
    if qr_type == QrType::Dynamic {
        return Err(DynamicHasItsRequest);
    }
    let (needs, what): ([Need; 3], &'static str) = match amount_type {
        AmountType::Fixed => ([Required, Forbidden, Forbidden], "a QR with a fixed amount"),
        AmountType::Free => ([Forbidden; 3], "a QR with a free amount"),
        AmountType::Controlled => (
            [Forbidden, Required, Required],
            "a QR with a controlled amount",
        ),
    };
    Ok(
        read_fields(asked, needs, what).map(|[amount, min, max]| match (amount, min, max) {
            (Some(amount), ..) => Amounts::Fixed(amount),
            (None, Some(min), Some(max)) => Amounts::Controlled { min, max },
            _ => Amounts::Free,
        }),
    )
}

/// The state of a payment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentState {
    /// The provider no longer knows it.
    NotFound,
    Pending,
    Paid,
    Expired,
    Cancelled,
    Failed,
}

impl PaymentState {
    /// As stored and as MIA's `state` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "not_found" => Some(Self::NotFound),
            "pending" => Some(Self::Pending),
            "paid" => Some(Self::Paid),
            "expired" => Some(Self::Expired),
            "cancelled" => Some(Self::Cancelled),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// Every state but PENDING is final for one payment.
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }

    /// Whether an observation of `next` may replace `self` (with `self_payments` and
    /// `next_payments` payments made): a final state never goes back to PENDING, and only a
    /// static QR's paid request changes after PAID — more payments, or its end.
    pub fn may_become(
        self,
        self_payments: u32,
        next: PaymentState,
        next_payments: u32,
        qr_type: QrType,
    ) -> bool {
        if next_payments < self_payments {
            return false;
        }
        match self {
            Self::Pending => true,
            Self::Paid if qr_type == QrType::Static => {
                next != Self::Pending && (next != self || next_payments > self_payments)
            }
            _ => false,
        }
    }
}

/// The time to live of QR codes and payment requests, in seconds (MIA `qrTtl`).
pub mod ttl {
    /// The shortest MIA accepts.
    pub const MIN_SECONDS: u32 = 30;
    /// MIA's default, what 0 asks for.
    pub const DEFAULT_SECONDS: u32 = 300;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    #[error(
        "must be at least {MIN_SECONDS} seconds (or 0 for the default, {DEFAULT_SECONDS}), not {0}"
    )]
    pub struct TooShort(pub u32);

    /// `seconds` as MIA takes it: 0 is the default, below the minimum is refused.
    pub fn parse(seconds: u32) -> Result<u32, TooShort> {
        match seconds {
            0 => Ok(DEFAULT_SECONDS),
            s if s < MIN_SECONDS => Err(TooShort(s)),
            s => Ok(s),
        }
    }
}

/// What a refund asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundAsk {
    /// The whole payment.
    Full,
    /// This much of it.
    Partial(Money),
}

/// Why a refund is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefundRefused {
    #[error("the whole {paid} was refunded already")]
    NothingLeft { paid: Money },
    #[error(
        "{refunded} of {paid} was refunded already: a full refund is no longer possible; refund the {left} left with amount"
    )]
    PartlyRefunded {
        paid: Money,
        refunded: Money,
        left: Money,
    },
    #[error("{asked} is more than the {left} of {paid} not refunded yet")]
    Exceeds {
        asked: Money,
        left: Money,
        paid: Money,
    },
    #[error("must be greater than 0")]
    NotPositive,
}

/// The amount a refund gives back of a payment of `paid` of which `refunded` was refunded
/// before: several partial refunds add up and never exceed the payment; a full refund is the
/// whole payment, so it is refused once any part was refunded.
pub fn refund_amount(paid: Money, refunded: Money, ask: RefundAsk) -> Result<Money, RefundRefused> {
    let left = paid
        .checked_sub(refunded)
        .unwrap_or(Money::ZERO)
        .max(Money::ZERO);
    if !left.is_positive() {
        return Err(RefundRefused::NothingLeft { paid });
    }
    match ask {
        RefundAsk::Full if refunded.is_positive() => Err(RefundRefused::PartlyRefunded {
            paid,
            refunded,
            left,
        }),
        RefundAsk::Full => Ok(paid),
        RefundAsk::Partial(asked) if !asked.is_positive() => Err(RefundRefused::NotPositive),
        RefundAsk::Partial(asked) if asked > left => {
            Err(RefundRefused::Exceeds { asked, left, paid })
        }
        RefundAsk::Partial(asked) => Ok(asked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn asked<'a>(amount: &'a str, min: &'a str, max: &'a str) -> AmountsAsked<'a> {
        AmountsAsked {
            amount,
            min_amount: min,
            max_amount: max,
        }
    }

    fn fields(problems: Vec<(AmountField, AmountProblem)>) -> Vec<&'static str> {
        problems.into_iter().map(|(f, _)| f.name()).collect()
    }

    #[test]
    fn each_qr_type_and_amount_type_carries_the_request_the_seed_says() {
        use AmountType::*;
        use QrType::*;
        let create = |t, a, x| request_at_creation(t, a, x);
        assert_eq!(
            create(Dynamic, Fixed, asked("12.50", "", "")),
            Ok(Some(Amounts::Fixed(m("12.5"))))
        );
        assert_eq!(
            create(Dynamic, Free, asked("", "", "")),
            Ok(Some(Amounts::Free))
        );
        assert_eq!(
            create(Dynamic, Controlled, asked("", "1", "2")),
            Ok(Some(Amounts::Controlled {
                min: m("1"),
                max: m("2")
            }))
        );
        assert_eq!(create(Static, Fixed, asked("", "", "")), Ok(None));
        assert_eq!(
            create(Static, Fixed, asked("3", "", "")),
            Ok(Some(Amounts::Fixed(m("3"))))
        );
        assert_eq!(create(Static, Free, asked("", "", "")), Ok(None));
        assert_eq!(create(Static, Controlled, asked("", "", "")), Ok(None));
        assert_eq!(
            create(Static, Controlled, asked("", "1", "1")),
            Ok(Some(Amounts::Controlled {
                min: m("1"),
                max: m("1")
            }))
        );
        for amount_type in [Fixed, Free, Controlled] {
            assert_eq!(create(Hybrid, amount_type, asked("", "", "")), Ok(None));
        }
    }

    #[test]
    fn a_request_at_creation_names_every_field_at_fault() {
        use AmountType::*;
        use QrType::*;
        let refused = |t, a, x| fields(request_at_creation(t, a, x).unwrap_err());
        assert_eq!(refused(Dynamic, Fixed, asked("", "", "")), ["amount"]);
        assert_eq!(
            refused(Dynamic, Fixed, asked("1", "1", "2")),
            ["min_amount", "max_amount"]
        );
        assert_eq!(
            refused(Dynamic, Controlled, asked("", "", "")),
            ["min_amount", "max_amount"]
        );
        assert_eq!(
            refused(Dynamic, Controlled, asked("", "5", "4")),
            ["max_amount"]
        );
        assert_eq!(
            refused(Static, Controlled, asked("", "5", "")),
            ["max_amount"]
        );
        assert_eq!(
            refused(Static, Controlled, asked("", "", "5")),
            ["min_amount"]
        );
        assert_eq!(refused(Dynamic, Free, asked("1", "", "")), ["amount"]);
        assert_eq!(
            refused(Static, Free, asked("", "1", "2")),
            ["min_amount", "max_amount"]
        );
        assert_eq!(refused(Hybrid, Fixed, asked("1", "", "")), ["amount"]);
        assert_eq!(refused(Dynamic, Fixed, asked("1.005", "", "")), ["amount"]);
        assert_eq!(refused(Dynamic, Fixed, asked("1e2", "", "")), ["amount"]);
        assert_eq!(refused(Dynamic, Fixed, asked("-1", "", "")), ["amount"]);
        assert_eq!(refused(Dynamic, Fixed, asked("0", "", "")), ["amount"]);
        assert_eq!(
            refused(Dynamic, Controlled, asked("", "0.00", "-1")),
            ["min_amount", "max_amount"]
        );
    }

    #[test]
    fn payment_requests_go_on_static_and_hybrid_qrs_only() {
        use AmountType::*;
        use QrType::*;
        assert_eq!(
            request_on_permanent_qr(Dynamic, Fixed, asked("1", "", "")),
            Err(DynamicHasItsRequest)
        );
        assert_eq!(
            request_on_permanent_qr(Hybrid, Fixed, asked("1", "", "")),
            Ok(Ok(Amounts::Fixed(m("1"))))
        );
        assert_eq!(
            request_on_permanent_qr(Static, Free, asked("", "", "")),
            Ok(Ok(Amounts::Free))
        );
        assert_eq!(
            request_on_permanent_qr(Static, Controlled, asked("", "2", "3")),
            Ok(Ok(Amounts::Controlled {
                min: m("2"),
                max: m("3")
            }))
        );
        let refused = |t, a, x| fields(request_on_permanent_qr(t, a, x).unwrap().unwrap_err());
        assert_eq!(refused(Hybrid, Fixed, asked("", "", "")), ["amount"]);
        assert_eq!(
            refused(Hybrid, Controlled, asked("1", "", "")),
            ["amount", "min_amount", "max_amount"]
        );
        assert_eq!(refused(Static, Free, asked("1", "", "")), ["amount"]);
        assert!(Hybrid.request_is_cancellable());
        assert!(!Static.request_is_cancellable() && !Dynamic.request_is_cancellable());
    }

    #[test]
    fn a_payer_pays_what_the_amount_type_allows() {
        assert_eq!(Amounts::Fixed(m("5")).fits(m("5")), Ok(()));
        assert!(Amounts::Fixed(m("5")).fits(m("5.01")).is_err());
        assert_eq!(Amounts::Free.fits(m("0.01")), Ok(()));
        assert_eq!(
            Amounts::Free.fits(Money::ZERO),
            Err(DoesNotFit::NotPositive)
        );
        let range = Amounts::Controlled {
            min: m("2"),
            max: m("3"),
        };
        assert_eq!(range.fits(m("2")), Ok(()));
        assert_eq!(range.fits(m("3")), Ok(()));
        assert!(range.fits(m("1.99")).is_err() && range.fits(m("3.01")).is_err());
    }

    #[test]
    fn partial_refunds_add_up_and_a_full_refund_needs_an_untouched_payment() {
        let paid = m("100");
        assert_eq!(refund_amount(paid, Money::ZERO, RefundAsk::Full), Ok(paid));
        assert_eq!(
            refund_amount(paid, m("30"), RefundAsk::Partial(m("70"))),
            Ok(m("70"))
        );
        assert_eq!(
            refund_amount(paid, m("30"), RefundAsk::Partial(m("70.01"))),
            Err(RefundRefused::Exceeds {
                asked: m("70.01"),
                left: m("70"),
                paid
            })
        );
        assert!(matches!(
            refund_amount(paid, m("30"), RefundAsk::Full),
            Err(RefundRefused::PartlyRefunded { .. })
        ));
        assert_eq!(
            refund_amount(paid, paid, RefundAsk::Partial(m("1"))),
            Err(RefundRefused::NothingLeft { paid })
        );
        assert_eq!(
            refund_amount(paid, Money::ZERO, RefundAsk::Partial(Money::ZERO)),
            Err(RefundRefused::NotPositive)
        );
    }

    #[test]
    fn a_final_state_stays_final_except_a_static_requests_further_payments() {
        use PaymentState::*;
        assert!(Pending.may_become(0, Paid, 1, QrType::Dynamic));
        assert!(Pending.may_become(0, Expired, 0, QrType::Hybrid));
        assert!(!Paid.may_become(1, Pending, 1, QrType::Dynamic));
        assert!(!Paid.may_become(1, Expired, 1, QrType::Dynamic));
        assert!(!Expired.may_become(0, Paid, 1, QrType::Static));
        assert!(Paid.may_become(1, Paid, 2, QrType::Static));
        assert!(Paid.may_become(2, Expired, 2, QrType::Static));
        assert!(!Paid.may_become(2, Paid, 2, QrType::Static));
        assert!(!Paid.may_become(2, Paid, 1, QrType::Static));
        assert!(!Paid.may_become(1, Pending, 1, QrType::Static));
    }

    #[test]
    fn the_ttl_is_at_least_30_seconds_and_0_is_the_default() {
        assert_eq!(ttl::parse(0), Ok(300));
        assert_eq!(ttl::parse(30), Ok(30));
        assert_eq!(ttl::parse(29), Err(ttl::TooShort(29)));
    }
}
