//! The official POSAPI 3.0 OpenAPI document, vendored in `spec/posapi-3.0.openapi.yaml`, and
//! the request schemas the sandbox validates every body against.
//!
//! The request schema of `POST /rest/receipt` refuses the document's own examples. It is used as
//! published except for [`RELAXATIONS`], the one place that says where and why it is relaxed,
//! each change justified by the document's own text or examples. [`Spec::official`] is the
//! schema as published, [`Spec::relaxed`] the one the sandbox enforces; [`examples`] extracts the
//! document's own request examples, so tests can show which of them each one accepts.

use std::sync::LazyLock;

use jsonschema::{Draft, Validator};
use serde_json::{Value, json};

/// The vendored document, byte for byte as published.
pub const OPENAPI_YAML: &str = include_str!("../../spec/posapi-3.0.openapi.yaml");

/// The document could not be read or its schemas compiled (a broken vendored copy).
#[derive(Debug, Clone, thiserror::Error)]
#[error("POSAPI OpenAPI document: {0}")]
pub struct SpecError(String);

/// A request whose body the document describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `POST /rest/receipt`: a receipt (batch) to register.
    PostReceipt,
    /// `DELETE /rest/receipt`: `{id, date}` of a receipt to make inactive.
    DeleteReceipt,
}

impl Operation {
    /// The JSON pointer of the operation's request schema in the document.
    pub const fn schema_pointer(self) -> &'static str {
        match self {
            Operation::PostReceipt => {
                "/paths/~1rest~1receipt/post/requestBody/content/application~1json/schema"
            }
            Operation::DeleteReceipt => {
                "/paths/~1rest~1receipt/delete/requestBody/content/application~1json/schema"
            }
        }
    }
}

/// One place where the published schema disagrees with the document's own examples or text.
#[derive(Debug)]
pub struct Relaxation {
    pub operation: Operation,
    /// Where, in the request body.
    pub at: &'static str,
    /// What the published schema says.
    pub schema_says: &'static str,
    /// What the document's own examples or text show.
    pub because: &'static str,
    /// What the sandbox accepts instead; `None`: nothing, the schema is kept as published.
    pub relaxed_to: Option<&'static str>,
    /// The change to the operation's request schema. `Err` when the schema does not have the
    /// shape the relaxation was written for (a different document): better to fail than to
    /// validate against something nobody checked.
    apply: Option<Relax>,
}

/// A change to a request schema.
type Relax = fn(&mut Value) -> Result<(), String>;

/// Every departure from the published request schemas, and the disagreements left as published.
pub const RELAXATIONS: &[Relaxation] = &[
    Relaxation {
        operation: Operation::PostReceipt,
        at: "payments[].data",
        schema_says: "required, with terminalID, rrn, maskedCardNumber and easy inside",
        because: "every CASH example has no data; its description: data may be added when code is PAYMENT_CARD",
        relaxed_to: Some("data, with those four inside, required only when code is PAYMENT_CARD"),
        apply: Some(payment_data_only_for_cards),
    },
    Relaxation {
        operation: Operation::PostReceipt,
        at: "every optional string (receipts[].iBan, bankAccountNo, items[].taxProductCode, barCodeType, classificationCode, districtCode, customerTin, invoiceId, ...)",
        schema_says: "type: string",
        because: "the examples send null for them",
        relaxed_to: Some("an optional string may be null"),
        apply: Some(optional_strings_may_be_null),
    },
    Relaxation {
        operation: Operation::PostReceipt,
        at: "receipts[].items[].barCode",
        schema_says: "a required string",
        because: "the B2C_INVOICE example sends null with barCodeType UNDEFINED",
        relaxed_to: Some("null allowed when barCodeType is UNDEFINED"),
        apply: Some(bar_code_null_when_undefined),
    },
    Relaxation {
        operation: Operation::PostReceipt,
        at: "billIdSuffix",
        schema_says: "required",
        because: "the B2B_INVOICE and STOCK_QR examples omit it",
        relaxed_to: None,
        apply: None,
    },
    Relaxation {
        operation: Operation::PostReceipt,
        at: "amounts and qty",
        schema_says: "number",
        because: "the STOCK_QR example sends strings (\"1100\")",
        relaxed_to: None,
        apply: None,
    },
    Relaxation {
        operation: Operation::DeleteReceipt,
        at: "date",
        schema_says: "format: date",
        because: "its description says \"yyyy-MM-dd HH:mm:ss\"",
        relaxed_to: Some("yyyy-MM-dd HH:mm:ss, or yyyy-MM-dd as the format says"),
        apply: Some(delete_date_time),
    },
];

/// `payments[].data`, with the card fields the schema requires inside it, required only for
/// `PAYMENT_CARD`: the document describes `data` for card payments alone.
fn payment_data_only_for_cards(schema: &mut Value) -> Result<(), String> {
    let payment = at(schema, "/properties/payments/items")?;
    remove_required(payment, "data")?;
    let data = at(payment, "/properties/data")?;
    let card_fields = data
        .as_object_mut()
        .and_then(|d| d.remove("required"))
        .ok_or_else(|| "data requires no fields".to_owned())?;
    push_all_of(
        payment,
        json!({
            "if": {"properties": {"code": {"const": "PAYMENT_CARD"}}, "required": ["code"]},
            "then": {
                "required": ["data"],
                "properties": {"data": {"type": "object", "required": card_fields}}
            }
        }),
    )
}

/// Every property typed `string` that its object does not require may also be `null`.
fn optional_strings_may_be_null(schema: &mut Value) -> Result<(), String> {
    fn walk(schema: &mut Value, changed: &mut usize) {
        let Some(object) = schema.as_object_mut() else {
            return;
        };
        let required: Vec<String> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
            for (name, property) in properties.iter_mut() {
                if !required.contains(name) && property.get("type") == Some(&json!("string")) {
                    property["type"] = json!(["string", "null"]);
                    *changed = changed.saturating_add(1);
                }
                walk(property, changed);
            }
        }
        if let Some(items) = object.get_mut("items") {
            walk(items, changed);
        }
    }
    let mut changed = 0;
    walk(schema, &mut changed);
    if changed == 0 {
        return Err("no optional string property found".to_owned());
    }
    Ok(())
}

/// `barCode` may be `null` when `barCodeType` is `UNDEFINED`.
fn bar_code_null_when_undefined(schema: &mut Value) -> Result<(), String> {
    let item = at(schema, "/properties/receipts/items/properties/items/items")?;
    let bar_code = at(item, "/properties/barCode")?;
    if bar_code.get("type") != Some(&json!("string")) {
        return Err("barCode is not typed string".to_owned());
    }
    bar_code["type"] = json!(["string", "null"]);
    push_all_of(
        item,
        json!({
            "if": {"properties": {"barCode": {"type": "null"}}, "required": ["barCode"]},
            "then": {"properties": {"barCodeType": {"const": "UNDEFINED"}}, "required": ["barCodeType"]}
        }),
    )
}

/// The DELETE `date` in the form its description gives, `yyyy-MM-dd HH:mm:ss`, or date-only.
fn delete_date_time(schema: &mut Value) -> Result<(), String> {
    let date = at(schema, "/properties/date")?;
    let Some(object) = date.as_object_mut() else {
        return Err("date is not a schema object".to_owned());
    };
    if object.remove("format") != Some(json!("date")) {
        return Err("date has no format: date".to_owned());
    }
    object.insert(
        "pattern".to_owned(),
        json!("^[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9]{2})?$"),
    );
    Ok(())
}

fn at<'a>(schema: &'a mut Value, pointer: &str) -> Result<&'a mut Value, String> {
    schema
        .pointer_mut(pointer)
        .ok_or_else(|| format!("the schema has nothing at {pointer}"))
}

fn remove_required(schema: &mut Value, name: &str) -> Result<(), String> {
    let required = schema
        .get_mut("required")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| "no required list".to_owned())?;
    let before = required.len();
    required.retain(|n| n != name);
    if required.len() == before {
        return Err(format!("{name} is not required"));
    }
    Ok(())
}

fn push_all_of(schema: &mut Value, condition: Value) -> Result<(), String> {
    let object = schema
        .as_object_mut()
        .ok_or_else(|| "not a schema object".to_owned())?;
    match object
        .entry("allOf")
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(all_of) => {
            all_of.push(condition);
            Ok(())
        }
        _ => Err("allOf is not an array".to_owned()),
    }
}

/// The document, parsed once.
static DOCUMENT: LazyLock<Result<Value, SpecError>> = LazyLock::new(|| {
    serde_saphyr::from_str::<Value>(OPENAPI_YAML)
        .map_err(|e| SpecError(format!("not readable YAML: {e}")))
});

/// The parsed OpenAPI document.
pub fn document() -> Result<&'static Value, SpecError> {
    DOCUMENT.as_ref().map_err(Clone::clone)
}

/// An operation's request schema as published.
pub fn request_schema(operation: Operation) -> Result<&'static Value, SpecError> {
    document()?
        .pointer(operation.schema_pointer())
        .ok_or_else(|| {
            SpecError(format!(
                "no request schema at {}",
                operation.schema_pointer()
            ))
        })
}

/// Where a body breaks the schema: the JSON pointer of the offending value (`""` for the
/// body itself), the schema keyword and the validator's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaViolation {
    pub pointer: String,
    pub keyword: String,
    pub message: String,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{pointer}: {}", self.message)
    }
}

/// The compiled request schemas of the receipt endpoints (JSON Schema 2020-12, formats asserted).
pub struct Spec {
    post_receipt: Validator,
    delete_receipt: Validator,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec").finish_non_exhaustive()
    }
}

static OFFICIAL: LazyLock<Result<Spec, SpecError>> = LazyLock::new(|| Spec::build(false));
static RELAXED: LazyLock<Result<Spec, SpecError>> = LazyLock::new(|| Spec::build(true));

impl Spec {
    /// The request schemas exactly as published.
    pub fn official() -> Result<&'static Spec, SpecError> {
        OFFICIAL.as_ref().map_err(Clone::clone)
    }

    /// The request schemas with [`RELAXATIONS`] applied: what the sandbox enforces.
    pub fn relaxed() -> Result<&'static Spec, SpecError> {
        RELAXED.as_ref().map_err(Clone::clone)
    }

    fn build(relaxed: bool) -> Result<Spec, SpecError> {
        let compile = |operation: Operation| -> Result<Validator, SpecError> {
            let mut schema = request_schema(operation)?.clone();
            if relaxed {
                for relaxation in RELAXATIONS.iter().filter(|r| r.operation == operation) {
                    if let Some(apply) = relaxation.apply {
                        apply(&mut schema).map_err(|e| {
                            SpecError(format!("relaxation of {}: {e}", relaxation.at))
                        })?;
                    }
                }
            }
            jsonschema::options()
                .with_draft(Draft::Draft202012)
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| SpecError(format!("{operation:?} schema does not compile: {e}")))
        };
        Ok(Spec {
            post_receipt: compile(Operation::PostReceipt)?,
            delete_receipt: compile(Operation::DeleteReceipt)?,
        })
    }

    /// Every place where `body` breaks `operation`'s request schema, in document order.
    pub fn check(&self, operation: Operation, body: &Value) -> Result<(), Vec<SchemaViolation>> {
        let validator = match operation {
            Operation::PostReceipt => &self.post_receipt,
            Operation::DeleteReceipt => &self.delete_receipt,
        };
        let violations: Vec<SchemaViolation> = validator
            .iter_errors(body)
            .map(|error| SchemaViolation {
                pointer: error.instance_path().to_string(),
                keyword: error.kind().keyword().to_owned(),
                message: error.to_string(),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// A request example of the document.
#[derive(Clone, Debug)]
pub struct Example {
    /// The tab title (`B2C_RECEIPT`, `EASY_BANK_CARD`, …) or the example's key.
    pub title: String,
    /// Where in the document: the JSON pointer of the description or example holding it.
    pub location: String,
    pub body: Value,
}

/// Every request example of `POST /rest/receipt` in the document: the JSON blocks of the
/// request schema's descriptions (under the tab titles they follow), the request body's
/// `examples` and the schema's `x-examples`.
pub fn examples() -> Result<Vec<Example>, SpecError> {
    const FENCE: &str = "```";
    let pointer = Operation::PostReceipt.schema_pointer();
    let schema = request_schema(Operation::PostReceipt)?;
    let mut found = Vec::new();
    let mut descriptions = Vec::new();
    collect_descriptions(schema, pointer.to_owned(), &mut descriptions);
    for (location, text) in descriptions {
        let mut rest = text;
        let mut title = String::new();
        while let Some(start) = rest.find("```json") {
            if let Some(last) = rest[..start].rfind("title:") {
                title = rest[last.saturating_add(6)..start]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
            let code = &rest[start.saturating_add(7)..];
            let end = code
                .find(FENCE)
                .ok_or_else(|| SpecError(format!("unclosed JSON block in {location}")))?;
            let body = serde_json::from_str(&code[..end]).map_err(|e| {
                SpecError(format!(
                    "the {title} example in {location} is not JSON: {e}"
                ))
            })?;
            found.push(Example {
                title: title.clone(),
                location: location.clone(),
                body,
            });
            rest = &code[end.saturating_add(FENCE.len())..];
        }
    }
    let media = pointer.trim_end_matches("/schema");
    let named = [
        (format!("{media}/examples"), true),
        (format!("{pointer}/x-examples"), false),
    ];
    for (location, wrapped) in named {
        let Some(map) = document()?.pointer(&location).and_then(Value::as_object) else {
            continue;
        };
        for (title, example) in map {
            // OpenAPI's examples wrap the body in `value`; x-examples are the bodies.
            let body = if wrapped {
                example.get("value")
            } else {
                Some(example)
            };
            if let Some(body) = body {
                found.push(Example {
                    title: title.clone(),
                    location: format!("{location}/{title}"),
                    body: body.clone(),
                });
            }
        }
    }
    Ok(found)
}

fn collect_descriptions<'a>(schema: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match schema {
        Value::Object(object) => {
            for (key, value) in object {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (key.as_str(), value) {
                    ("description", Value::String(text)) => out.push((here, text)),
                    // The examples are not schemas: their strings are data.
                    ("x-examples" | "examples", _) => {}
                    _ => collect_descriptions(value, here, out),
                }
            }
        }
        Value::Array(values) => {
            for (i, value) in values.iter().enumerate() {
                collect_descriptions(value, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_parses_and_both_schemas_compile() {
        assert_eq!(
            document().unwrap().get("openapi"),
            Some(&json!("3.1.0")),
            "the vendored document is OpenAPI 3.1"
        );
        Spec::official().unwrap();
        Spec::relaxed().unwrap();
    }

    #[test]
    fn the_delete_date_takes_the_described_form_after_relaxation() {
        let body = json!({"id": "1".repeat(33), "date": "2026-11-23 10:15:00"});
        let official = Spec::official().unwrap();
        let relaxed = Spec::relaxed().unwrap();
        let refused = official.check(Operation::DeleteReceipt, &body).unwrap_err();
        assert_eq!(refused[0].pointer, "/date", "{refused:?}");
        relaxed.check(Operation::DeleteReceipt, &body).unwrap();
        relaxed
            .check(
                Operation::DeleteReceipt,
                &json!({"id": "1", "date": "2026-11-23"}),
            )
            .unwrap();
        let bad = relaxed
            .check(
                Operation::DeleteReceipt,
                &json!({"id": "1", "date": "23.11.2026"}),
            )
            .unwrap_err();
        assert_eq!(bad[0].pointer, "/date");
    }
}
