package evaluation

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"testing"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// BenchmarkResolveBooleanGRPC measures the server side of a gRPC ResolveBoolean
// (binary protobuf through connect-go's gRPC protocol: decode, evaluate, encode,
// trailers) in process, with the benchmark's own request and recorder.
func BenchmarkResolveBooleanGRPC(b *testing.B) {
	svc := newService(Options{Store: newTestStore(b), Enricher: testEnricher()}, true)
	h := svc.Handler()
	for _, bc := range []struct {
		name string
		req  *evalv1.ResolveBooleanRequest
	}{
		{"static", &evalv1.ResolveBooleanRequest{FlagKey: "plain"}},
		{"targeting", &evalv1.ResolveBooleanRequest{FlagKey: "targeted", Context: &structpb.Struct{Fields: map[string]*structpb.Value{
			"email": structpb.NewStringValue("a@b.c"), "targetingKey": structpb.NewStringValue("user-1"),
			"address": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"country": structpb.NewStringValue("ch")}})}}}},
	} {
		msg, err := proto.Marshal(bc.req)
		if err != nil {
			b.Fatal(err)
		}
		body := make([]byte, 5, 5+len(msg))
		binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
		body = append(body, msg...)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/flagd.evaluation.v1.Service/ResolveBoolean", bytes.NewReader(body))
				req.ProtoMajor, req.ProtoMinor, req.Proto = 2, 0, "HTTP/2.0"
				req.Header.Set("Content-Type", "application/grpc")
				req.Header.Set("TE", "trailers")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || rec.Result().Trailer.Get("Grpc-Status") != "0" {
					b.Fatalf("status %d, grpc-status %q: %s", rec.Code, rec.Result().Trailer.Get("Grpc-Status"), rec.Body)
				}
			}
		})
	}
}
