package controller

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
)

// Metrics are the controllers' Prometheus metrics under controller-runtime's names,
// so existing operator dashboards work: workqueue_* per queue, and
// controller_runtime_reconcile_{total,errors_total,time_seconds} per controller. A
// nil *Metrics records nothing.
type Metrics struct {
	depth, unfinished, longest  *prometheus.GaugeVec
	adds, retries               *prometheus.CounterVec
	queueLatency, workDuration  *prometheus.HistogramVec
	reconciles, reconcileErrors *prometheus.CounterVec
	reconcileTime               *prometheus.HistogramVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	buckets := prometheus.ExponentialBuckets(0.0001, 4, 10)
	q := []string{"name"}
	m := &Metrics{
		depth:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workqueue_depth", Help: "Current depth of the workqueue."}, q),
		unfinished:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workqueue_unfinished_work_seconds", Help: "Seconds of work in progress not yet observed by work_duration."}, q),
		longest:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workqueue_longest_running_processor_seconds", Help: "Seconds the longest running processor has been running."}, q),
		adds:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "workqueue_adds_total", Help: "Keys added to the workqueue."}, q),
		retries:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "workqueue_retries_total", Help: "Retries handled by the workqueue."}, q),
		queueLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "workqueue_queue_duration_seconds", Help: "Seconds a key waits in the workqueue.", Buckets: buckets}, q),
		workDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "workqueue_work_duration_seconds", Help: "Seconds processing a key takes.", Buckets: buckets}, q),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_total",
			Help: "Reconciliations per controller and result (success, error)."}, []string{"controller", "result"}),
		reconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_errors_total",
			Help: "Reconciliation errors per controller."}, []string{"controller"}),
		reconcileTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "controller_runtime_reconcile_time_seconds",
			Help: "Time per reconciliation per controller.", Buckets: buckets}, []string{"controller"}),
	}
	for _, c := range []prometheus.Collector{m.depth, m.unfinished, m.longest, m.adds, m.retries, m.queueLatency, m.workDuration,
		m.reconciles, m.reconcileErrors, m.reconcileTime} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) reconciled(controller string, err error, took time.Duration) {
	if m == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "error"
		m.reconcileErrors.WithLabelValues(controller).Inc()
	}
	m.reconciles.WithLabelValues(controller, result).Inc()
	m.reconcileTime.WithLabelValues(controller).Observe(took.Seconds())
}

// queueProvider feeds client-go's workqueue metrics into the vectors.
func (m *Metrics) queueProvider() workqueue.MetricsProvider { return queueMetrics{m} }

type queueMetrics struct{ m *Metrics }

func (p queueMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return p.m.depth.WithLabelValues(name)
}
func (p queueMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return p.m.adds.WithLabelValues(name)
}
func (p queueMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return p.m.queueLatency.WithLabelValues(name)
}
func (p queueMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return p.m.workDuration.WithLabelValues(name)
}
func (p queueMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return p.m.unfinished.WithLabelValues(name)
}
func (p queueMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return p.m.longest.WithLabelValues(name)
}
func (p queueMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return p.m.retries.WithLabelValues(name)
}
