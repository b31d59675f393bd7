package evaluation

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// BenchmarkResolveAll is gRPC ResolveAll's answer (v1) for the load harness's
// 1,000-flag document and its 3-key context, metrics on, without the transport:
// "items" evaluates every flag into items and encodes them (the item path),
// "pieces" decides each rule and appends the list's pre-encoded entries (allWire).
func BenchmarkResolveAll(b *testing.B) {
	doc, err := flaggen.Generate(1000)
	if err != nil {
		b.Fatal(err)
	}
	st := storeOf(b, "flags", doc)
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	svc := newService(Options{Store: st, Log: zerolog.Nop(), Metrics: m}, false)
	ctx, err := structpb.NewStruct(map[string]any{"targetingKey": "user-1", "email": "ada" + flaggen.TargetingEmailSuffix, "country": "de"})
	if err != nil {
		b.Fatal(err)
	}
	all, _ := store.ParseSelector("")
	buf := make([]byte, 0, 256<<10)
	b.Run("items", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			items := svc.resolveAllIn(all, nil, ctx, apiV1)
			out, exact := appendResolveAll(buf[:0], apiV1, items, nil)
			if !exact || len(out) == 0 {
				b.Fatal("not encoded by hand")
			}
			svc.items.put(items)
		}
	})
	b.Run("pieces", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := svc.newAllPass(all, nil, ctx, apiV1)
			w := p.wire()
			if w == nil || !w.usable {
				b.Fatal("no usable pieces")
			}
			out, _, ok := p.appendWire(buf[:0], w)
			p.done()
			if !ok || len(out) == 0 {
				b.Fatal("not answered from the pieces")
			}
		}
	})
}
