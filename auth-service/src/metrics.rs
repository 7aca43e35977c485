//! auth-service's own metrics, beside the per-call gRPC ones: Introspect answers by
//! outcome and, on the in-process token store, the number of live sessions (counted at
//! each scrape). On Redis there is no such gauge: counting every user's sessions would
//! take a key shared by every user and written at every login.

use std::sync::Arc;

use pair_common::metrics::{Metrics, Refresh};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};

use crate::store::TokenStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Counters and gauges of auth-service.
#[derive(Debug, Clone)]
pub struct AuthMetrics {
    introspections: Family<OutcomeLabels, Counter>,
    /// Only where the token store can count its sessions without shared state.
    active_sessions: Option<Gauge>,
}

/// What an Introspect call answered.
#[derive(Debug, Clone, Copy)]
pub enum IntrospectOutcome {
    Active,
    Inactive,
    Error,
}

impl AuthMetrics {
    /// Registers the counters, and the live-session gauge if `counts_sessions`.
    pub fn register(metrics: &Metrics, counts_sessions: bool) -> Self {
        let this = Self {
            introspections: Family::default(),
            active_sessions: counts_sessions.then(Gauge::default),
        };
        metrics.register(
            "auth_introspections",
            "Introspect answers by outcome (active, inactive, error).",
            this.introspections.clone(),
        );
        if let Some(gauge) = &this.active_sessions {
            metrics.register(
                "auth_sessions_active",
                "Live sessions (logged in, not revoked, refresh token not expired).",
                gauge.clone(),
            );
        }
        this
    }

    pub fn introspected(&self, outcome: IntrospectOutcome) {
        let outcome = match outcome {
            IntrospectOutcome::Active => "active",
            IntrospectOutcome::Inactive => "inactive",
            IntrospectOutcome::Error => "error",
        };
        self.introspections
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Reads the live-session count from `tokens` before each scrape; a store outage
    /// leaves the last value.
    pub fn refresh_from(&self, tokens: Arc<dyn TokenStore>) -> Refresh {
        let gauge = self.active_sessions.clone();
        Arc::new(move || {
            let tokens = tokens.clone();
            let gauge = gauge.clone();
            Box::pin(async move {
                if let (Some(gauge), Ok(Some(count))) = (gauge, tokens.active_sessions().await) {
                    gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
                }
            })
        })
    }
}
