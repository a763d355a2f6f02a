//! The reference endpoints: `/rest/info`, `/rest/sendData`, `/rest/bankAccounts` of the daemon,
//! and the central lookups with their `{"msg","status","data"}` envelope.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::EbarimtState;
use crate::ebarimt::types::{AppInfo, InfoMerchant, PosInfo, TaxpayerInfo};
use crate::sandbox::{self, lock};

type Params = Query<HashMap<String, String>>;

/// A central lookup's answer.
fn envelope(status: u16, msg: &str, data: Value) -> Response {
    axum::Json(json!({"msg": msg, "status": status, "data": data})).into_response()
}

fn found(data: Value) -> Response {
    envelope(200, "Амжилттай", data)
}

/// Not found, as the live service says it: HTTP 200, `status` 500, `data` null.
fn not_found_data(what: &str) -> Response {
    envelope(500, &format!("{what} олдсонгүй"), Value::Null)
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// What a request told to fail answers (`fail_next`).
pub(super) fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "ERROR", "message": "service temporarily unavailable"})),
    )
        .into_response()
}

pub(super) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"status": "ERROR", "message": "no such resource"})),
    )
        .into_response()
}

/// The central API's bearer token: remembered for tests, required when configured.
pub(super) async fn authorize(
    State(state): State<Arc<EbarimtState>>,
    request: Request,
    next: Next,
) -> Response {
    let bearer = sandbox::bearer(request.headers()).map(str::to_owned);
    *lock(&state.last_bearer) = bearer.clone();
    if let Some(required) = &state.api_token
        && bearer.as_deref() != Some(required.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"msg": "Unauthorized", "status": 401, "data": null})),
        )
            .into_response();
    }
    next.run(request).await
}

pub(super) async fn info(State(state): State<Arc<EbarimtState>>) -> Response {
    let store = lock(&state.store);
    let info = PosInfo {
        operator_name: state.operator_name.clone(),
        operator_tin: state.operator_tin.clone(),
        pos_id: Some(state.pos_id),
        pos_no: state.pos_no.clone(),
        last_sent_date: store
            .documents
            .last()
            .map(|d| d.date.clone())
            .unwrap_or_default(),
        left_lotteries: Some(store.lotteries_left),
        app_info: AppInfo {
            application_dir: "/opt/posapi".to_owned(),
            current_dir: "/opt/posapi".to_owned(),
            database: "QSQLITE".to_owned(),
            database_host: "/var/lib/posapi/posapi.db".to_owned(),
            work_dir: "/var/lib/posapi".to_owned(),
        },
        merchants: state
            .merchants
            .iter()
            .map(|m| InfoMerchant {
                name: m.name.clone(),
                tin: m.tin.clone(),
                customers: Vec::new(),
            })
            .collect(),
    };
    axum::Json(info).into_response()
}

pub(super) async fn send_data() -> Response {
    axum::Json(json!({})).into_response()
}

pub(super) async fn bank_accounts(
    State(state): State<Arc<EbarimtState>>,
    params: Params,
) -> Response {
    let tin = param(&params, "tin");
    let accounts: Vec<_> = state
        .bank_accounts
        .iter()
        .filter(|a| tin.is_none_or(|tin| a.tin == tin))
        .collect();
    axum::Json(accounts).into_response()
}

pub(super) async fn taxpayer(State(state): State<Arc<EbarimtState>>, params: Params) -> Response {
    let Some(tin) = param(&params, "tin") else {
        return envelope(400, "tin is required", Value::Null);
    };
    let info = if let Some(m) = state.merchant(tin) {
        TaxpayerInfo {
            name: m.name.clone(),
            free_project: false,
            city_payer: m.city_payer,
            vat_payer: m.vat_payer,
            found: true,
            vatpayer_registered_date: "2019-02-16".to_owned(),
            is_government: false,
        }
    } else if let Some(t) = state.taxpayers.iter().find(|t| t.tin == tin) {
        TaxpayerInfo {
            name: t.name.clone(),
            free_project: t.free_project,
            city_payer: t.city_payer,
            vat_payer: t.vat_payer,
            found: true,
            vatpayer_registered_date: t.vatpayer_registered_date.clone(),
            is_government: t.is_government,
        }
    } else {
        return not_found_data("Татвар төлөгч");
    };
    match serde_json::to_value(info) {
        Ok(data) => found(data),
        Err(error) => sandbox::internal_error(error),
    }
}

pub(super) async fn tin_info(State(state): State<Arc<EbarimtState>>, params: Params) -> Response {
    let Some(reg_no) = param(&params, "regNo") else {
        return envelope(400, "regNo is required", Value::Null);
    };
    match state.reg_numbers.iter().find(|(reg, _)| reg == reg_no) {
        // A number, as the schema declares it (its example shows a string; clients read both).
        Some((_, tin)) => found(tin.parse::<u64>().map_or_else(|_| json!(tin), |n| json!(n))),
        None => not_found_data("Регистрийн дугаар"),
    }
}

pub(super) async fn branch_info(State(state): State<Arc<EbarimtState>>) -> Response {
    match serde_json::to_value(&state.districts) {
        Ok(data) => found(data),
        Err(error) => sandbox::internal_error(error),
    }
}

pub(super) async fn product_tax_codes(State(state): State<Arc<EbarimtState>>) -> Response {
    match serde_json::to_value(&state.product_tax_codes) {
        Ok(data) => found(data),
        Err(error) => sandbox::internal_error(error),
    }
}
