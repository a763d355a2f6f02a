//! Upstream token brokerage across processes: one upstream request per token, however many
//! callers on however many token-service replicas; a refused token is renewed once.

use std::time::Duration;

use fiscus_e2e::{AUTH_CONFIG, Authed, Bearer, Process, fresh_schema, issue_token};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::token_service_client::TokenServiceClient;
use fiscus_providers::keycloak::{SandboxClient, SandboxRealm};
use fiscus_providers::{KeycloakSandbox, KeycloakSandboxConfig};

const MERCHANT: &str = "37900846788";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Two token-service processes sharing one database schema and one cache, the first serving
/// the JWKS for both.
struct Replicas {
    first: Process,
    second: Process,
    token: String,
    _dir: tempfile::TempDir,
}

impl Replicas {
    async fn start(sandbox: &KeycloakSandbox, redis_url: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("fiscus.toml");
        std::fs::write(
            &config,
            format!(
                r#"{AUTH_CONFIG}
[tokens]
refresh_margin_seconds = 1

[[tokens.ebarimt]]
merchant_tin = "{MERCHANT}"
authUrl = "{}"
authRealm = "ITC"
authClientId = "posapi"
authClientSecret = "posapi-secret"
"#,
                sandbox.base_url()
            ),
        )
        .expect("config");
        let config = config.to_str().expect("utf-8").to_owned();
        let schema = fresh_schema("e2e_tokens");
        let prefix = format!("e2e-{}", uuid::Uuid::new_v4().simple());
        let port = free_port();
        let jwks = format!("http://127.0.0.1:{port}");
        let listen = format!("127.0.0.1:{port}");
        let first_env = [
            ("FISCUS_PEERS__TOKENS", jwks.as_str()),
            ("FISCUS_CACHE__KEY_PREFIX", prefix.as_str()),
            ("FISCUS_CACHE__URL", redis_url),
            ("FISCUS_SERVER__LISTEN", listen.as_str()),
        ];
        let mut second_env = first_env;
        second_env[3].1 = "127.0.0.1:0";
        let first = Process::service_in("tokens", &schema, &["--config", &config], &first_env)
            .await
            .expect("first replica starts");
        let second = Process::service_in("tokens", &schema, &["--config", &config], &second_env)
            .await
            .expect("second replica starts");
        let token = issue_token(first.channel().await, "e2e-admin", "e2e-admin-secret", &[])
            .await
            .expect("a service token");
        Self {
            first,
            second,
            token,
            _dir: dir,
        }
    }

    async fn clients(&self) -> [TokenServiceClient<Authed>; 2] {
        [
            TokenServiceClient::with_interceptor(
                self.first.channel().await,
                Bearer::new(&self.token),
            ),
            TokenServiceClient::with_interceptor(
                self.second.channel().await,
                Bearer::new(&self.token),
            ),
        ]
    }

    /// `callers` concurrent GetAccessToken, spread over both replicas; answers every result.
    async fn burst(
        &self,
        callers: usize,
    ) -> Vec<Result<pb::GetAccessTokenResponse, tonic::Status>> {
        let clients = self.clients().await;
        let calls = (0..callers).map(|i| {
            let mut client = clients[i % 2].clone();
            async move {
                client
                    .get_access_token(pb::GetAccessTokenRequest {
                        provider: pb::Provider::Ebarimt.into(),
                        merchant_tin: MERCHANT.into(),
                        ..Default::default()
                    })
                    .await
                    .map(tonic::Response::into_inner)
            }
        });
        futures::future::join_all(calls).await
    }
}

async fn sandbox(lifetime: Duration) -> KeycloakSandbox {
    KeycloakSandbox::start(
        KeycloakSandboxConfig {
            token_lifetime: lifetime,
            ..KeycloakSandboxConfig::default()
        }
        .with_realm(
            SandboxRealm::new("ITC").with_client(SandboxClient::new("posapi", "posapi-secret")),
        ),
    )
    .await
    .expect("the Keycloak sandbox starts")
}

#[track_caller]
fn one_token(results: Vec<Result<pb::GetAccessTokenResponse, tonic::Status>>) -> String {
    let tokens: Vec<String> = results
        .into_iter()
        .map(|r| r.expect("every caller gets a token").access_token)
        .collect();
    let distinct: std::collections::HashSet<_> = tokens.iter().collect();
    assert_eq!(
        distinct.len(),
        1,
        "every caller gets the same token: {:?}",
        tokens.iter().fold(
            std::collections::BTreeMap::<&str, usize>::new(),
            |mut m, t| {
                *m.entry(&t[..8]).or_default() += 1;
                m
            }
        )
    );
    tokens[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fetch_each_token_once_renew_it_once_and_replace_a_refused_one_once() {
    let sandbox = sandbox(Duration::from_secs(4)).await;
    let replicas = Replicas::start(&sandbox, &fiscus_e2e::redis_url()).await;

    let first = one_token(replicas.burst(200).await);
    assert_eq!(
        sandbox.token_requests(),
        1,
        "200 callers on a cold key: one upstream request"
    );
    assert!(sandbox.is_token_live(&first));

    // The token lives 4 s and is renewed a second early: after it lapses, again exactly one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let second = one_token(replicas.burst(200).await);
    assert_ne!(second, first);
    assert_eq!(
        sandbox.token_requests(),
        2,
        "after expiry: one more upstream request"
    );

    // The upstream refuses the token: every caller reports it, one report drops it, one fetch.
    sandbox.expire_all_tokens();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let probe = reqwest::Client::new()
        .get(sandbox.protected_url())
        .bearer_auth(&second)
        .send()
        .await
        .expect("probe");
    assert_eq!(probe.status(), 401);
    let clients = replicas.clients().await;
    let reports = (0..50).map(|i| {
        let mut client = clients[i % 2].clone();
        let refused = second.clone();
        async move {
            client
                .invalidate_token(pb::InvalidateTokenRequest {
                    provider: pb::Provider::Ebarimt.into(),
                    merchant_tin: MERCHANT.into(),
                    access_token: refused,
                    ..Default::default()
                })
                .await
                .expect("invalidates")
                .into_inner()
                .invalidated
        }
    });
    let dropped = futures::future::join_all(reports)
        .await
        .into_iter()
        .filter(|d| *d)
        .count();
    assert_eq!(dropped, 1, "only the first report drops the token");
    let third = one_token(replicas.burst(200).await);
    assert!(sandbox.is_token_live(&third));
    assert_eq!(
        sandbox.token_requests(),
        3,
        "a refused token is renewed once"
    );

    // A report of an old token does not drop the fresh one.
    let mut client = clients[0].clone();
    let stale = client
        .invalidate_token(pb::InvalidateTokenRequest {
            provider: pb::Provider::Ebarimt.into(),
            merchant_tin: MERCHANT.into(),
            access_token: second,
            ..Default::default()
        })
        .await
        .expect("invalidates")
        .into_inner();
    assert!(!stale.invalidated);
}

/// A Redis of this test's own, so that restarting it disturbs no other test.
struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (make test installs it)");
        let redis = Self {
            port,
            child: Some(child),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_costs_a_refetch_and_at_most_one_retriable_error() {
    let sandbox = sandbox(Duration::from_secs(300)).await;
    let mut redis = PrivateRedis::start(free_port());
    let replicas = Replicas::start(&sandbox, &redis.url()).await;
    one_token(replicas.burst(50).await);
    assert_eq!(sandbox.token_requests(), 1);

    // Redis goes away and comes back empty.
    let port = redis.port;
    redis.stop();
    let during = replicas.burst(20).await;
    redis = PrivateRedis::start(port);
    let after = replicas.burst(50).await;

    let errors: Vec<_> = during
        .iter()
        .chain(&after)
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert!(errors.len() <= 1, "at most one error: {errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Aborted)),
        "errors are retriable: {errors:?}"
    );
    assert!(
        after.iter().all(Result::is_ok),
        "after the restart every caller is served"
    );
    // Without Redis each replica fetched for itself; after the restart the cache is shared again.
    assert!(
        sandbox.token_requests() <= 4,
        "{} upstream requests",
        sandbox.token_requests()
    );
    drop(redis);
}
