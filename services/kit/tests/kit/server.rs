//! The server bootstrap: health, graceful shutdown with in-flight calls.

use std::time::Duration;

use fiscus_kit::config::ServerConfig;
use fiscus_kit::health::Health;
use fiscus_kit::server;
use fiscus_proto::v1::shift_service_client::ShiftServiceClient;
use fiscus_proto::v1::shift_service_server::{ShiftService, ShiftServiceServer};
use fiscus_proto::v1::{GetCurrentShiftRequest, GetCurrentShiftResponse};
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A service whose one RPC takes a while, to have calls in flight at shutdown.
struct Slow;

#[tonic::async_trait]
impl ShiftService for Slow {
    async fn get_current_shift(
        &self,
        _request: tonic::Request<GetCurrentShiftRequest>,
    ) -> Result<tonic::Response<GetCurrentShiftResponse>, tonic::Status> {
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        Ok(tonic::Response::new(GetCurrentShiftResponse {
            open: true,
            ..Default::default()
        }))
    }
}

async fn connect(addr: std::net::SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
}

#[tokio::test]
async fn shutdown_reports_not_serving_finishes_in_flight_calls_and_refuses_new_ones() {
    let config = ServerConfig {
        // Generous, so that a loaded machine still checks health inside the drain.
        drain_delay_ms: 1_000,
        shutdown_grace_ms: 5_000,
        ..ServerConfig::default()
    };
    let listener = server::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    let mut routes = RoutesBuilder::default();
    routes.add_service(ShiftServiceServer::new(Slow));
    let name = ShiftServiceServer::<Slow>::NAME;
    let (health, health_server) = Health::new();
    routes.add_service(health_server);
    health.register(name).await;
    let (trigger, _shutdown) = server::Shutdown::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server::serve(
            &config,
            listener,
            routes,
            None,
            true,
            &health,
            trigger,
            async {
                let _ = stopped.await;
            },
        )
        .await
    });

    let channel = connect(addr).await.expect("connects");
    let mut health = HealthClient::new(channel.clone());
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let status = health
        .check(check(name))
        .await
        .expect("health")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    let in_flight = {
        let mut client = ShiftServiceClient::new(channel.clone());
        tokio::spawn(async move {
            client
                .get_current_shift(GetCurrentShiftRequest::default())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).expect("server is running");

    // During the drain delay the server still answers, and says it is going away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = health
        .check(check(name))
        .await
        .expect("health")
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::NotServing);

    let answer = in_flight
        .await
        .expect("joins")
        .expect("the in-flight call completes");
    assert!(answer.into_inner().open);

    let result = tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("the server stops within its grace")
        .expect("joins");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        connect(addr).await.is_err(),
        "new connections are refused after shutdown"
    );
}
