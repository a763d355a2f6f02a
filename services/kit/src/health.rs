//! What `grpc.health.v1` says of each hosted service: SERVING unless the process is shutting
//! down or something the service needs (its database, its journal writer) is down.
//!
//! The empty service name `""` is the process itself: it stays SERVING until shutdown, so a
//! liveness probe does not restart a process whose database is away; readiness probes ask for
//! the service's own name.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The health of every service of one process.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    shutting_down: bool,
    /// The faults of each service, by name; a service with none is SERVING.
    faults: HashMap<&'static str, BTreeSet<&'static str>>,
}

impl Health {
    /// The health of a process, and the `grpc.health.v1` server that reports it.
    pub fn new() -> (
        Self,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ) {
        let (reporter, server) = tonic_health::server::health_reporter();
        let health = Self {
            reporter,
            state: Arc::default(),
        };
        (health, server)
    }

    /// The handle of one service; the service is SERVING from now on until a fault is raised.
    pub async fn register(&self, service: &'static str) -> ServiceHealth {
        self.lock().faults.entry(service).or_default();
        self.publish(service).await;
        ServiceHealth {
            health: self.clone(),
            service,
        }
    }

    /// Every service and the process itself answer NOT_SERVING from now on.
    pub async fn shutting_down(&self) {
        let services: Vec<&'static str> = {
            let mut state = self.lock();
            state.shutting_down = true;
            state.faults.keys().copied().collect()
        };
        for service in services.into_iter().chain([""]) {
            self.reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
    }

    /// Whether `service` is SERVING now.
    pub fn is_serving(&self, service: &str) -> bool {
        let state = self.lock();
        !state.shutting_down && state.faults.get(service).is_some_and(BTreeSet::is_empty)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn publish(&self, service: &'static str) {
        let serving = {
            let state = self.lock();
            !state.shutting_down && state.faults.get(service).is_none_or(BTreeSet::is_empty)
        };
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(service, status).await;
    }
}

/// One service's part of [`Health`].
#[derive(Clone)]
pub struct ServiceHealth {
    health: Health,
    service: &'static str,
}

impl ServiceHealth {
    /// Raises (`down`) or clears a named fault; the service is NOT_SERVING while it has any.
    pub async fn set_fault(&self, fault: &'static str, down: bool) {
        let changed = {
            let mut state = self.health.lock();
            let faults = state.faults.entry(self.service).or_default();
            if down {
                faults.insert(fault)
            } else {
                faults.remove(fault)
            }
        };
        if changed {
            if down {
                tracing::warn!(service = self.service, fault, "NOT_SERVING");
            } else {
                tracing::info!(service = self.service, fault, "SERVING again");
            }
            self.health.publish(self.service).await;
        }
    }

    pub fn service(&self) -> &'static str {
        self.service
    }
}
