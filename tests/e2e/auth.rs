//! Internal identity through real gRPC calls: every forged or misused token is refused with
//! UNAUTHENTICATED or PERMISSION_DENIED, and nothing is read or written for it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fiscus_e2e::{AUTH_CONFIG, Bearer, Process, issue_token};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::receipt_service_client::ReceiptServiceClient;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;

const NARROW: &str = r#"
[[auth.clients]]
client_id = "e2e-reader"
client_secret = "e2e-reader-secret"
scopes = ["receipts:read"]
merchants = ["12345678901"]
"#;

fn sale(tin: &str) -> pb::SignReceiptRequest {
    fiscus_e2e::bread_sale(&fiscus_e2e::terminal(tin, "001"))
}

/// A key the token service trusts, planted in its key table (the test plays a trusted issuer,
/// so that it can sign tokens whose claims are wrong in exactly one way).
struct PlantedKey {
    kid: String,
    encoding: EncodingKey,
    public: [u8; 32],
}

async fn plant_key(data: &std::path::Path) -> PlantedKey {
    plant_key_made(data, "e2e-planted", [42; 32], chrono::Utc::now()).await
}

/// Plants a key as if the token service had made it at `made`.
async fn plant_key_made(
    data: &std::path::Path,
    kid: &str,
    seed: [u8; 32],
    made: chrono::DateTime<chrono::Utc>,
) -> PlantedKey {
    let master_hex = std::fs::read_to_string(data.join("master.key")).expect("dev master key");
    let master: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&master_hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let master: [u8; 32] = master.try_into().expect("32 bytes");
    let signer = fiscus_domain::keys::ReceiptSigner::from_seed(seed);
    let kid = kid.to_owned();
    let sealed = fiscus_domain::keys::seal(&master, [7; 12], &seed, kid.as_bytes());
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("tokens.db").display()))
        .await
        .expect("tokens.db");
    sqlx::query("INSERT INTO jwt_keys (kid, public_key, sealed_secret, created_at_us) VALUES ($1, $2, $3, $4)")
        .bind(&kid)
        .bind(&signer.public_key()[..])
        .bind(&sealed)
        .bind(made.timestamp_micros())
        .execute(&pool)
        .await
        .expect("planted");
    PlantedKey {
        kid,
        encoding: EncodingKey::from_ed_der(signer.to_pkcs8_der().expect("PKCS#8").as_bytes()),
        public: signer.public_key(),
    }
}

fn claims(edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({
        "iss": "fiscus", "sub": "e2e-forger", "aud": "fiscus",
        "exp": now + 600, "nbf": now - 10, "iat": now - 10, "jti": "j",
        "scope": "admin", "merchants": ["*"],
    });
    edit(&mut claims);
    claims
}

fn signed(key: &PlantedKey, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("signs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_or_misused_tokens_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fiscus.toml");
    std::fs::write(&config, format!("{AUTH_CONFIG}{NARROW}")).expect("config");
    let data = dir.path().join("data");
    let process = Process::dev_with(&data, &["--config", config.to_str().expect("utf-8")])
        .await
        .expect("starts");
    let key = plant_key(&data).await;

    let stranger = {
        let der = fiscus_domain::keys::ReceiptSigner::from_seed([9; 32])
            .to_pkcs8_der()
            .expect("PKCS#8");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("e2e-unknown".into());
        jsonwebtoken::encode(
            &header,
            &claims(|_| {}),
            &EncodingKey::from_ed_der(der.as_bytes()),
        )
        .expect("signs")
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            key.kid
        )),
        URL_SAFE_NO_PAD.encode(claims(|_| {}).to_string())
    );
    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims(|_| {}),
            &EncodingKey::from_secret(&key.public),
        )
        .expect("signs")
    };
    let reader = issue_token(
        process.channel().await,
        "e2e-reader",
        "e2e-reader-secret",
        &[],
    )
    .await
    .expect("the reader gets a token");
    let now = chrono::Utc::now().timestamp();

    let cases: Vec<(&str, Option<String>, Code, &str)> = vec![
        ("no token", None, Code::Unauthenticated, "12345678901"),
        (
            "alg none",
            Some(alg_none),
            Code::Unauthenticated,
            "12345678901",
        ),
        (
            "HS256 signed with the public key",
            Some(hs256_with_public_key),
            Code::Unauthenticated,
            "12345678901",
        ),
        (
            "wrong aud",
            Some(signed(&key, &claims(|c| c["aud"] = "elsewhere".into()))),
            Code::Unauthenticated,
            "12345678901",
        ),
        (
            "wrong iss",
            Some(signed(&key, &claims(|c| c["iss"] = "mallory".into()))),
            Code::Unauthenticated,
            "12345678901",
        ),
        (
            "expired",
            Some(signed(&key, &claims(|c| c["exp"] = (now - 120).into()))),
            Code::Unauthenticated,
            "12345678901",
        ),
        (
            "not yet valid",
            Some(signed(&key, &claims(|c| c["nbf"] = (now + 600).into()))),
            Code::Unauthenticated,
            "12345678901",
        ),
        (
            "unknown kid",
            Some(stranger),
            Code::Unauthenticated,
            "12345678901",
        ),
        (
            "garbage",
            Some("not.a.jwt".into()),
            Code::Unauthenticated,
            "12345678901",
        ),
        (
            "missing scope",
            Some(reader.clone()),
            Code::PermissionDenied,
            "12345678901",
        ),
        (
            "another merchant",
            Some(signed(
                &key,
                &claims(|c| c["merchants"] = serde_json::json!(["37900846788"])),
            )),
            Code::PermissionDenied,
            "12345678901",
        ),
    ];
    for (case, token, expected, tin) in cases {
        let channel = process.channel().await;
        let status = match token {
            Some(token) => ReceiptServiceClient::with_interceptor(channel, Bearer::new(&token))
                .sign_receipt(sale(tin))
                .await
                .expect_err(case),
            None => ReceiptServiceClient::new(channel)
                .sign_receipt(sale(tin))
                .await
                .expect_err(case),
        };
        assert_eq!(status.code(), expected, "{case}: {}", status.message());
    }
    // The reader may read its own merchant but not another's.
    let mut reader_client =
        ReceiptServiceClient::with_interceptor(process.channel().await, Bearer::new(&reader));
    let verify = |tin: &str| pb::VerifyJournalRequest {
        terminal: Some(pb::Terminal {
            merchant_tin: tin.into(),
            branch_no: "001".into(),
            pos_no: "001".into(),
        }),
        ..Default::default()
    };
    reader_client
        .verify_journal(verify("12345678901"))
        .await
        .expect("its own merchant");
    let denied = reader_client
        .verify_journal(verify("37900846788"))
        .await
        .expect_err("another merchant");
    assert_eq!(denied.code(), Code::PermissionDenied);

    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("receipts.db").display()))
            .await
            .expect("receipts.db");
    let written: (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM receipts), (SELECT COUNT(*) FROM operations)")
            .fetch_one(&pool)
            .await
            .expect("counts");
    assert_eq!(written, (0, 0), "nothing was written for a refused call");

    // The same planted key with correct claims works: the refusals above were about the claims.
    let good = signed(&key, &claims(|_| {}));
    ReceiptServiceClient::with_interceptor(process.channel().await, Bearer::new(&good))
        .sign_receipt(sale("12345678901"))
        .await
        .expect("a correct token is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tokens_are_issued_only_to_known_clients_with_their_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fiscus.toml");
    std::fs::write(&config, format!("{AUTH_CONFIG}{NARROW}")).expect("config");
    let process = Process::dev_with(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8")],
    )
    .await
    .expect("starts");
    let wrong = issue_token(process.channel().await, "e2e-reader", "guess", &[])
        .await
        .expect_err("wrong secret");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let more = issue_token(
        process.channel().await,
        "e2e-reader",
        "e2e-reader-secret",
        &["receipts:write"],
    )
    .await
    .expect_err("a scope the client does not have");
    assert_eq!(more.code(), Code::PermissionDenied);
    let token = issue_token(
        process.channel().await,
        "e2e-reader",
        "e2e-reader-secret",
        &["receipts:read"],
    )
    .await
    .expect("issued");
    let header = jsonwebtoken::decode_header(&token).expect("a JWT");
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwks =
        fiscus_proto::v1::token_service_client::TokenServiceClient::new(process.channel().await)
            .get_jwks(pb::GetJwksRequest::default())
            .await
            .expect("jwks is open")
            .into_inner();
    assert!(
        jwks.keys
            .iter()
            .any(|k| Some(&k.kid) == header.kid.as_ref()),
        "the signing key is published"
    );
    let document: serde_json::Value = serde_json::from_str(&jwks.jwks_json).expect("JWKS JSON");
    assert_eq!(document["keys"][0]["kty"], "OKP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_stays_valid_for_one_more_period_and_then_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fiscus.toml");
    std::fs::write(
        &config,
        format!("[auth]\nkey_rotation_hours = 1\n{AUTH_CONFIG}"),
    )
    .expect("config");
    let data = dir.path().join("data");
    let process = Process::dev_with(&data, &["--config", config.to_str().expect("utf-8")])
        .await
        .expect("starts");
    let now = chrono::Utc::now();
    // Keys made 70 minutes ago (rotated out, still in its overlap) and 3 hours ago (expired).
    let previous = plant_key_made(
        &data,
        "e2e-previous",
        [1; 32],
        now - chrono::Duration::minutes(70),
    )
    .await;
    let ancient = plant_key_made(
        &data,
        "e2e-ancient",
        [2; 32],
        now - chrono::Duration::hours(3),
    )
    .await;
    // The service signs with its newest key (made at start), not with the planted older ones.
    let fresh = issue_token(
        process.channel().await,
        "e2e-admin",
        "e2e-admin-secret",
        &[],
    )
    .await
    .expect("issued");
    let fresh_kid = jsonwebtoken::decode_header(&fresh)
        .expect("jwt")
        .kid
        .expect("kid");
    assert!(
        fresh_kid != previous.kid && fresh_kid != ancient.kid,
        "signs with a current key"
    );

    let jwks =
        fiscus_proto::v1::token_service_client::TokenServiceClient::new(process.channel().await)
            .get_jwks(pb::GetJwksRequest::default())
            .await
            .expect("jwks")
            .into_inner();
    let kids: Vec<_> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    assert!(
        kids.contains(&fresh_kid.as_str()) && kids.contains(&"e2e-previous"),
        "{kids:?}"
    );
    assert!(!kids.contains(&"e2e-ancient"), "{kids:?}");

    let verify = |token: String| {
        let channel = process.channel();
        async move {
            ReceiptServiceClient::with_interceptor(channel.await, Bearer::new(&token))
                .verify_journal(pb::VerifyJournalRequest {
                    terminal: Some(pb::Terminal {
                        merchant_tin: "12345678901".into(),
                        branch_no: "001".into(),
                        pos_no: "001".into(),
                    }),
                    ..Default::default()
                })
                .await
        }
    };
    verify(fresh).await.expect("a token of the current key");
    verify(signed(&previous, &claims(|_| {})))
        .await
        .expect("a token of the previous key, in its overlap");
    let refused = verify(signed(&ancient, &claims(|_| {})))
        .await
        .expect_err("a key past its overlap");
    assert_eq!(refused.code(), Code::Unauthenticated);
}
