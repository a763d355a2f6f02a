//! Upstream token brokerage across processes: one upstream request per token, however many
//! callers on however many token-service replicas; a refused token is renewed once.

use std::time::Duration;

use fiscus_e2e::{AUTH_CONFIG, Authed, Bearer, Process, fresh_schema, issue_token};
use fiscus_proto::v1 as pb;
use fiscus_proto::v1::token_service_client::TokenServiceClient;
use fiscus_providers::keycloak::{SandboxClient, SandboxRealm};
use fiscus_providers::{KeycloakSandbox, KeycloakSandboxConfig};

const MERCHANT: &str = "37900846788";

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
        Self::start_with(sandbox, redis_url, &[]).await
    }

    /// Like [`Replicas::start`], with more environment for both replicas.
    async fn start_with(sandbox: &KeycloakSandbox, redis_url: &str, env: &[(&str, &str)]) -> Self {
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
        let port = fiscus_e2e::free_port().expect("a free port");
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
        let first_env = [&first_env[..], env].concat();
        let second_env = [&second_env[..], env].concat();
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

/// A token request to the upstream joins the caller's trace: the upstream sees the caller's
/// trace id in its W3C `traceparent`, under a span of the token service's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_request_carries_the_callers_trace() {
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER_SPAN: &str = "00f067aa0ba902b7";
    let sandbox = sandbox(Duration::from_secs(60)).await;
    // A service traces when an OTLP endpoint is set; nothing needs to listen there for this.
    let replicas = Replicas::start_with(
        &sandbox,
        &fiscus_e2e::redis_url(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")],
    )
    .await;
    let [mut client, _] = replicas.clients().await;
    let mut request = tonic::Request::new(pb::GetAccessTokenRequest {
        provider: pb::Provider::Ebarimt.into(),
        merchant_tin: MERCHANT.into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN}-01")
            .parse()
            .expect("ascii"),
    );
    client.get_access_token(request).await.expect("a token");
    assert_eq!(sandbox.token_requests(), 1);
    let seen = sandbox
        .last_traceparent()
        .expect("the token request carries a traceparent");
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "{seen}");
    assert_eq!(parts[1], TRACE_ID, "the caller's trace: {seen}");
    assert_ne!(
        parts[2], CALLER_SPAN,
        "under the token service's span: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fetch_each_token_once_renew_it_once_and_replace_a_refused_one_once() {
    fetch_once_renew_once_replace_once(&fiscus_e2e::redis_url()).await;
}

/// The same with both replicas on a Redis Cluster: the token, the lease and the change
/// announcements live on whichever nodes own their slots.
mod redis_cluster {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_fetch_each_token_once_renew_it_once_and_replace_a_refused_one_once() {
        super::fetch_once_renew_once_replace_once(&fiscus_e2e::redis_cluster_url()).await;
    }
}

/// 200 callers over two replicas sharing the cache at `redis_url`: one upstream request for a
/// cold token, one when it lapses, one when the upstream refuses it.
async fn fetch_once_renew_once_replace_once(redis_url: &str) {
    // Long enough that a burst of 200 callers ends before the renewal, even on a loaded
    // machine (at 3 s, a burst under a parallel build once straddled it).
    let sandbox = sandbox(Duration::from_secs(8)).await;
    let replicas = Replicas::start(&sandbox, redis_url).await;

    let first = one_token(replicas.burst(200).await);
    assert_eq!(
        sandbox.token_requests(),
        1,
        "200 callers on a cold key: one upstream request"
    );
    assert!(sandbox.is_token_live(&first));

    // The token lives 8 s and is renewed a second early: after it lapses, again exactly one.
    tokio::time::sleep(Duration::from_secs(8)).await;
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
    let mut redis = PrivateRedis::start(fiscus_e2e::free_port().expect("a free port"));
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

mod mia {
    use fiscus_e2e::{AUTH_CONFIG, Bearer, Process, issue_token};
    use fiscus_proto::v1 as pb;
    use fiscus_proto::v1::token_service_client::TokenServiceClient;
    use fiscus_providers::mia::{MiaSeller, MiaTerminal};
    use fiscus_providers::{MiaSandbox, MiaSandboxConfig};
    use std::time::Duration;
    use tonic::Code;

    fn init(terminal_id: &str) -> pb::InitActivationRequest {
        pb::InitActivationRequest {
            operation_id: uuid::Uuid::new_v4().to_string(),
            terminal_id: terminal_id.into(),
            merchant_idno: "1003600000000".into(),
            device: Some(pb::DeviceInfo {
                device: "Pixel 8".into(),
                platform_type: pb::PlatformType::Android.into(),
                installation_id: uuid::Uuid::new_v4().to_string(),
                pos_app_version: 42,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The MIA sandbox with terminals T1 and T2 and seller `ana`, and `fiscus dev` pointed at it.
    struct Mia {
        sandbox: MiaSandbox,
        process: Process,
        client: TokenServiceClient<fiscus_e2e::Authed>,
        _dir: tempfile::TempDir,
    }

    impl Mia {
        async fn start() -> Self {
            Self::start_with("").await
        }

        /// With `extra` keys in the `[tokens]` section.
        async fn start_with(extra: &str) -> Self {
            let sandbox = MiaSandbox::start(
                MiaSandboxConfig::default()
                    .with_terminal(MiaTerminal::new("T1", "1003600000000"))
                    .with_terminal(MiaTerminal::new("T2", "1003600000000"))
                    .with_seller(MiaSeller::new("ana", "ana-password", 7, "Ana Popescu")),
            )
            .await
            .expect("the MIA sandbox starts");
            let dir = tempfile::tempdir().expect("tempdir");
            let config = dir.path().join("fiscus.toml");
            std::fs::write(
                &config,
                format!(
                    "{AUTH_CONFIG}\n[tokens]\nmia_url = \"{}\"\n{extra}\n",
                    sandbox.base_url()
                ),
            )
            .expect("config");
            let process = Process::dev_with(
                &dir.path().join("data"),
                &["--config", config.to_str().expect("utf-8")],
            )
            .await
            .expect("starts");
            let token = issue_token(
                process.channel().await,
                "e2e-admin",
                "e2e-admin-secret",
                &[],
            )
            .await
            .expect("token");
            let client =
                TokenServiceClient::with_interceptor(process.channel().await, Bearer::new(&token));
            Self {
                sandbox,
                process,
                client,
                _dir: dir,
            }
        }
    }

    /// A MIA that does not answer is given up after `tokens.upstream_timeout_ms`, and the caller
    /// is told to retry (UNAVAILABLE) long before its own deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_mia_is_given_up_after_the_configured_timeout() {
        let mia = Mia::start_with("upstream_timeout_ms = 300").await;
        mia.sandbox.set_latency(Duration::from_secs(30));
        let mut request = tonic::Request::new(init("T1"));
        request.set_timeout(Duration::from_secs(5));
        let status = mia
            .client
            .clone()
            .init_activation(request)
            .await
            .expect_err("MIA is silent");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }

    /// One InitActivation sent many times at once reaches MIA once: while the first is with MIA
    /// the others are told to retry (ABORTED), and a retry afterwards gets the first answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_duplicates_of_an_activation_reach_mia_once() {
        let mia = Mia::start().await;
        let request = init("T1");
        let before = mia.sandbox.requests();
        mia.sandbox
            .set_latency(std::time::Duration::from_millis(500));
        let calls = (0..8).map(|_| {
            let mut client = mia.client.clone();
            let request = request.clone();
            async move { client.init_activation(request).await }
        });
        let outcomes = futures::future::join_all(calls).await;
        mia.sandbox.set_latency(std::time::Duration::ZERO);
        assert_eq!(mia.sandbox.requests() - before, 1, "one call reached MIA");
        let answered: Vec<_> = outcomes
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|a| a.get_ref().clone()))
            .collect();
        assert!(!answered.is_empty(), "{outcomes:?}");
        assert!(answered.windows(2).all(|w| w[0] == w[1]), "{answered:?}");
        for refused in outcomes.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
        }
        let retried = mia
            .client
            .clone()
            .init_activation(request)
            .await
            .expect("the retry is answered")
            .into_inner();
        assert_eq!(retried, answered[0]);
        assert_eq!(mia.sandbox.requests() - before, 1, "still one call");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn activation_login_refresh_logout_against_the_mia_sandbox() {
        let Mia {
            sandbox,
            process,
            mut client,
            _dir,
        } = Mia::start().await;

        // A wrong OTP until the attempts run out: then even the right one is refused.
        let first = client
            .init_activation(init("T1"))
            .await
            .expect("init")
            .into_inner();
        assert!(!first.masked_phone_number.is_empty());
        let early = client
            .resend_activation_otp(pb::ResendActivationOtpRequest {
                operation_id: uuid::Uuid::new_v4().to_string(),
                activation_id: first.activation_id.clone(),
            })
            .await
            .expect_err("too early to resend");
        assert_eq!(
            early.code(),
            Code::FailedPrecondition,
            "{}",
            early.message()
        );
        let confirm = |activation_id: &str, otp: &str| pb::ConfirmActivationRequest {
            operation_id: uuid::Uuid::new_v4().to_string(),
            activation_id: activation_id.into(),
            otp_code: otp.into(),
        };
        let right = sandbox
            .last_otp(first.activation_id.parse().expect("uuid"))
            .expect("an OTP was sent");
        let wrong = if right == "000000" {
            "111111"
        } else {
            "000000"
        };
        let mut lefts = Vec::new();
        for _ in 0..3 {
            let answer = client
                .confirm_activation(confirm(&first.activation_id, wrong))
                .await
                .expect("answers")
                .into_inner();
            assert!(!answer.confirmed);
            lefts.push(answer.left_attempts);
        }
        assert_eq!(lefts, [2, 1, 0]);
        let blocked = client
            .confirm_activation(confirm(&first.activation_id, &right))
            .await
            .expect_err("blocked");
        assert_eq!(blocked.code(), Code::FailedPrecondition);
        let state = client
            .get_activation(pb::GetActivationRequest {
                activation_id: first.activation_id.clone(),
            })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(state.state(), pb::ActivationState::Failed);

        // The happy path.
        let second = client
            .init_activation(init("T2"))
            .await
            .expect("init")
            .into_inner();
        let otp = sandbox
            .last_otp(second.activation_id.parse().expect("uuid"))
            .expect("an OTP");
        let confirmed = client
            .confirm_activation(confirm(&second.activation_id, &otp))
            .await
            .expect("confirms")
            .into_inner();
        assert!(confirmed.confirmed);
        let active = client
            .get_activation(pb::GetActivationRequest {
                activation_id: second.activation_id.clone(),
            })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(active.state(), pb::ActivationState::Active);
        assert_eq!(active.terminal_id, "T2");

        let refused = client
            .seller_login(pb::SellerLoginRequest {
                operation_id: uuid::Uuid::new_v4().to_string(),
                activation_id: second.activation_id.clone(),
                username: "ana".into(),
                password: "guess".into(),
            })
            .await
            .expect_err("wrong password");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        let login_request = pb::SellerLoginRequest {
            operation_id: uuid::Uuid::new_v4().to_string(),
            activation_id: second.activation_id.clone(),
            username: "ana".into(),
            password: "ana-password".into(),
        };
        let login = client
            .seller_login(login_request.clone())
            .await
            .expect("logs in")
            .into_inner();
        let again = client
            .seller_login(login_request)
            .await
            .expect("replays")
            .into_inner();
        assert_eq!(
            again.session_id, login.session_id,
            "a retried login is the same session"
        );
        let session = client
            .get_seller_session(pb::GetSellerSessionRequest {
                session_id: login.session_id.clone(),
            })
            .await
            .expect("session")
            .into_inner();
        assert_eq!(session.seller.expect("seller").full_name, "Ana Popescu");
        assert_eq!(session.terminal.expect("terminal").terminal_id, "T2");

        let get_token = |session_id: &str| pb::GetAccessTokenRequest {
            provider: pb::Provider::Mia.into(),
            seller_session_id: session_id.into(),
            ..Default::default()
        };
        let before = client
            .get_access_token(get_token(&login.session_id))
            .await
            .expect("token")
            .into_inner();
        assert!(before.from_cache, "the login's token is cached");
        assert!(sandbox.is_access_token_live(&before.access_token));
        client
            .refresh_seller(pb::RefreshSellerRequest {
                operation_id: uuid::Uuid::new_v4().to_string(),
                session_id: login.session_id.clone(),
            })
            .await
            .expect("refreshes");
        let after = client
            .get_access_token(get_token(&login.session_id))
            .await
            .expect("token")
            .into_inner();
        assert_ne!(
            after.access_token, before.access_token,
            "a refresh brings a new access token"
        );
        assert!(sandbox.is_access_token_live(&after.access_token));

        client
            .seller_logout(pb::SellerLogoutRequest {
                operation_id: uuid::Uuid::new_v4().to_string(),
                session_id: login.session_id.clone(),
            })
            .await
            .expect("logs out");
        let ended = client
            .get_seller_session(pb::GetSellerSessionRequest {
                session_id: login.session_id.clone(),
            })
            .await
            .expect_err("ended");
        assert_eq!(ended.code(), Code::FailedPrecondition);
        assert!(
            !sandbox.is_access_token_live(&after.access_token),
            "logout ends the upstream session"
        );

        // Session ids are bearer handles and tokens are secrets: neither reaches a log line.
        let (_, output) = process.terminate().await.expect("stops");
        for secret in [&login.session_id, &before.access_token, &after.access_token] {
            assert!(
                output.iter().all(|line| !line.contains(secret.as_str())),
                "{secret} appears in the log"
            );
        }
    }
}
