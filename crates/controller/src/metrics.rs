//! Prometheus metrics, named after controller-runtime's where they mean the same.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// The operator's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    pub reconcile_total: Family<ReconcileLabels, Counter>,
    pub reconcile_errors_total: Family<ControllerLabels, Counter>,
    pub reconcile_time_seconds: Family<ControllerLabels, Histogram>,
    pub drift_repairs_total: Family<CloudLabels, Counter>,
    pub cloud_api_calls_total: Family<CloudCallLabels, Counter>,
    pub cloud_api_call_duration_seconds: Family<CloudOperationLabels, Histogram>,
    pub webhook_admissions_total: Family<ResultLabels, Counter>,
    pub webhook_admission_duration_seconds: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// What the pod webhook answered: `injected` (patched), `admitted` (as
/// it was), `denied` (the ServiceAccount could not be read), `invalid` (no
/// request in the review).
pub const WEBHOOK_RESULTS: [&str; 4] = ["injected", "admitted", "denied", "invalid"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudCallLabels {
    pub cloud: String,
    pub operation: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudOperationLabels {
    pub cloud: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudLabels {
    pub cloud: String,
}

impl Metrics {
    /// One admission review answered, and how long it took.
    pub fn admitted(&self, result: &str, took: Duration) {
        self.webhook_admissions_total
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        self.webhook_admission_duration_seconds
            .observe(took.as_secs_f64());
    }

    pub fn new(registry: &mut Registry) -> Self {
        let this = Self {
            reconcile_total: Family::default(),
            reconcile_errors_total: Family::default(),
            reconcile_time_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            drift_repairs_total: Family::default(),
            cloud_api_calls_total: Family::default(),
            cloud_api_call_duration_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            webhook_admissions_total: Family::default(),
            webhook_admission_duration_seconds: Histogram::new(exponential_buckets(
                0.0005, 2.0, 14,
            )),
        };
        registry.register(
            "wib_webhook_admissions",
            "Pod admissions by the webhook, by result (injected, admitted, denied, invalid)",
            this.webhook_admissions_total.clone(),
        );
        registry.register(
            "wib_webhook_admission_duration_seconds",
            "Time the pod webhook took to answer an admission review",
            this.webhook_admission_duration_seconds.clone(),
        );
        for result in WEBHOOK_RESULTS {
            this.webhook_admissions_total
                .get_or_create(&ResultLabels {
                    result: result.into(),
                })
                .inc_by(0);
        }
        registry.register(
            "wib_cloud_api_calls",
            "Cloud API calls by cloud, operation and result (success, not_found, throttled, error)",
            this.cloud_api_calls_total.clone(),
        );
        registry.register(
            "wib_cloud_api_call_duration_seconds",
            "Latency of cloud API calls by cloud and operation",
            this.cloud_api_call_duration_seconds.clone(),
        );
        registry.register(
            "wib_drift_repairs",
            "Cloud resources put back after they drifted from the spec",
            this.drift_repairs_total.clone(),
        );
        // Zero from the start, as controller-runtime does, so alerts on the
        // error rate see a series before the first error.
        for controller in ["workloadidentitybinding", "clusteridentityprovider"] {
            this.reconcile_errors_total
                .get_or_create(&ControllerLabels {
                    controller: controller.into(),
                })
                .inc_by(0);
        }
        let cr = registry.sub_registry_with_prefix("controller_runtime");
        cr.register(
            "reconcile",
            "Total number of reconciliations per controller and result",
            this.reconcile_total.clone(),
        );
        cr.register(
            "reconcile_errors",
            "Total number of reconciliation errors per controller",
            this.reconcile_errors_total.clone(),
        );
        cr.register(
            "reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            this.reconcile_time_seconds.clone(),
        );
        this
    }

    pub fn drift_repaired(&self, cloud: &str, writes: usize) {
        self.drift_repairs_total
            .get_or_create(&CloudLabels {
                cloud: cloud.into(),
            })
            .inc_by(writes as u64);
    }

    /// Records one finished reconcile.
    pub fn reconciled(&self, controller: &str, result: &str, elapsed: Duration) {
        self.reconcile_total
            .get_or_create(&ReconcileLabels {
                controller: controller.into(),
                result: result.into(),
            })
            .inc();
        let labels = ControllerLabels {
            controller: controller.into(),
        };
        if result == "error" {
            self.reconcile_errors_total.get_or_create(&labels).inc();
        }
        self.reconcile_time_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

impl wib_cloud::calls::CallObserver for Metrics {
    fn observe(&self, call: wib_cloud::calls::Call<'_>) {
        self.cloud_api_calls_total
            .get_or_create(&CloudCallLabels {
                cloud: call.cloud.into(),
                operation: call.operation.into(),
                result: call.result.into(),
            })
            .inc();
        self.cloud_api_call_duration_seconds
            .get_or_create(&CloudOperationLabels {
                cloud: call.cloud.into(),
                operation: call.operation.into(),
            })
            .observe(call.elapsed.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    cloud: String,
    ready: String,
    reason: String,
}

/// `wib_bindings{cloud,ready,reason}`: bindings by their Ready status and
/// its reason (a fixed vocabulary, so few series), counted from the
/// controller's cache at scrape time (never stale, no bookkeeping). Alerts
/// key on the reason (DeletionBlocked, Throttled ...).
#[derive(Debug)]
pub struct BindingsByReady(pub kube::runtime::reflector::Store<wib_api::WorkloadIdentityBinding>);

impl prometheus_client::collector::Collector for BindingsByReady {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let mut counts: std::collections::BTreeMap<(String, String, String), i64> =
            Default::default();
        for binding in self.0.state() {
            let condition = binding.status.as_ref().and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == wib_api::conditions::READY)
            });
            let (ready, reason) = condition.map_or_else(
                || ("Unknown".to_string(), String::new()),
                |c| (c.status.clone(), c.reason.clone()),
            );
            let cloud = binding
                .spec
                .cloud()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default();
            *counts.entry((cloud, ready, reason)).or_default() += 1;
        }
        let gauge = prometheus_client::metrics::gauge::ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "wib_bindings",
            "WorkloadIdentityBindings by cloud, Ready status and its reason",
            None,
            gauge.metric_type(),
        )?;
        for ((cloud, ready, reason), n) in counts {
            let labels = ReadyLabels {
                cloud,
                ready,
                reason,
            };
            prometheus_client::metrics::gauge::ConstGauge::new(n)
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
