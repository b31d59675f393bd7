// Package otlptest is for tests: an in-process OTLP/gRPC receiver (the collector's
// TraceService and MetricsService) that records everything it is sent, and a
// throwaway PKI to run it over TLS and mutual TLS. No production code imports it.
package otlptest

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened: attribute values as strings.
type Span struct {
	Resource     map[string]string
	Scope        string
	Name         string
	Kind         string // "server", "client", "internal", ...
	TraceID      string // hex
	SpanID       string
	ParentSpanID string // "" for a root span
	Attributes   map[string]string
	Events       []Event
	StatusCode   string // "unset", "ok", "error"
}

// Event is a span event.
type Event struct {
	Name       string
	Attributes map[string]string
}

// Point is one received metric data point (for a histogram: its count in Value).
type Point struct {
	Resource   map[string]string
	Scope      string
	Name       string
	Unit       string
	Attributes map[string]string
	Value      float64
}

// Receiver is an OTLP/gRPC receiver on a loopback port.
type Receiver struct {
	// Addr is the host:port the receiver listens on.
	Addr string

	mu      sync.Mutex
	spans   []Span
	points  []Point
	raw     [][]byte
	clients []string
	fail    error

	colltrace.UnimplementedTraceServiceServer
}

// metricsService is the MetricsService side (its Export has the same name).
type metricsService struct {
	collmetrics.UnimplementedMetricsServiceServer
	r *Receiver
}

// Start runs a receiver until the test ends; tlsConfig nil serves plaintext.
func Start(t testing.TB, tlsConfig *tls.Config) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	srv := grpc.NewServer(opts...)
	r := &Receiver{Addr: ln.Addr().String()}
	colltrace.RegisterTraceServiceServer(srv, r)
	collmetrics.RegisterMetricsServiceServer(srv, &metricsService{r: r})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return r
}

// SetFailure makes every export fail with err (nil: succeed again).
func (r *Receiver) SetFailure(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

// Export implements the TraceService.
func (r *Receiver) Export(ctx context.Context, req *colltrace.ExportTraceServiceRequest) (*colltrace.ExportTraceServiceResponse, error) {
	if err := r.record(ctx, req); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					Resource: res, Scope: ss.GetScope().GetName(), Name: s.GetName(),
					Kind:    strings.ToLower(strings.TrimPrefix(s.GetKind().String(), "SPAN_KIND_")),
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					Attributes: attrs(s.GetAttributes()),
					StatusCode: strings.ToLower(strings.TrimPrefix(s.GetStatus().GetCode().String(), "STATUS_CODE_")),
				}
				if len(s.GetParentSpanId()) > 0 {
					sp.ParentSpanID = hex.EncodeToString(s.GetParentSpanId())
				}
				for _, e := range s.GetEvents() {
					sp.Events = append(sp.Events, Event{Name: e.GetName(), Attributes: attrs(e.GetAttributes())})
				}
				r.spans = append(r.spans, sp)
			}
		}
	}
	return &colltrace.ExportTraceServiceResponse{}, nil
}

// Export implements the MetricsService.
func (m *metricsService) Export(ctx context.Context, req *collmetrics.ExportMetricsServiceRequest) (*collmetrics.ExportMetricsServiceResponse, error) {
	r := m.r
	if err := r.record(ctx, req); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		res := attrs(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			for _, mt := range sm.GetMetrics() {
				add := func(kvs []*commonpb.KeyValue, v float64) {
					r.points = append(r.points, Point{Resource: res, Scope: sm.GetScope().GetName(), Name: mt.GetName(),
						Unit: mt.GetUnit(), Attributes: attrs(kvs), Value: v})
				}
				switch d := mt.GetData().(type) {
				case *metricspb.Metric_Sum:
					for _, p := range d.Sum.GetDataPoints() {
						add(p.GetAttributes(), numberValue(p))
					}
				case *metricspb.Metric_Gauge:
					for _, p := range d.Gauge.GetDataPoints() {
						add(p.GetAttributes(), numberValue(p))
					}
				case *metricspb.Metric_Histogram:
					for _, p := range d.Histogram.GetDataPoints() {
						add(p.GetAttributes(), float64(p.GetCount()))
					}
				}
			}
		}
	}
	return &collmetrics.ExportMetricsServiceResponse{}, nil
}

// record keeps the request's bytes and the client certificate's common name.
func (r *Receiver) record(ctx context.Context, req proto.Message) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	client := ""
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			client = info.State.PeerCertificates[0].Subject.CommonName
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.raw = append(r.raw, b)
	r.clients = append(r.clients, client)
	return nil
}

func numberValue(p *metricspb.NumberDataPoint) float64 {
	if v, ok := p.GetValue().(*metricspb.NumberDataPoint_AsInt); ok {
		return float64(v.AsInt)
	}
	return p.GetAsDouble()
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Points returns the metric data points received so far.
func (r *Receiver) Points() []Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Point(nil), r.points...)
}

// Raw returns every export request received so far, protobuf-encoded: all the
// receiver was sent, for scanning.
func (r *Receiver) Raw() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.raw...)
}

// Clients returns, per export request, the common name of the client certificate
// ("" when none was presented).
func (r *Receiver) Clients() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.clients...)
}

// attrs flattens attributes to strings (arrays and maps in a stable text form).
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.GetKey()] = value(kv.GetValue())
	}
	return out
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, value(e))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *commonpb.AnyValue_KvlistValue:
		parts := make([]string, 0, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			parts = append(parts, kv.GetKey()+"="+value(kv.GetValue()))
		}
		sort.Strings(parts)
		return "{" + strings.Join(parts, ",") + "}"
	}
	return ""
}

// Eventually polls cond until it holds, failing the test with what was awaited
// if it does not within 30 s (a bound against hangs, not a timing assertion).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// String is a short form of a span for failure messages.
func (s Span) String() string {
	return fmt.Sprintf("%s/%s(%s) trace=%s parent=%s %v", s.Scope, s.Name, s.Kind, s.TraceID, s.ParentSpanID, s.Attributes)
}
