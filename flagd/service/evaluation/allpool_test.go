package evaluation

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// TestGRPCResolveAllPooledReplies: concurrent ResolveAll calls over grpc-go, whose
// item slices and encoded responses are recycled through pools, each get exactly
// the answer connect-go gives the same request alone (selectors, contexts, both
// services, gzip or not): no call's response is another's, or written over while
// grpc-go still sends it.
func TestGRPCResolveAllPooledReplies(t *testing.T) {
	p := newGRPCPair(t, Options{Store: newDiffStore(t)})
	calls := resolveAllCalls(t, p)
	ok := 0
	for _, c := range calls {
		if c.code == codes.OK {
			ok++
		}
	}
	if ok < 8 {
		t.Fatalf("only %d of %d calls succeed: the test does not exercise the pools", ok, len(calls))
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 60 {
				c := calls[(w*7+i)%len(calls)]
				var opts []grpc.CallOption
				if i%3 == 0 {
					opts = append(opts, grpc.UseCompressor("gzip"))
				}
				got := invokeRaw(t, p.fast, c.method, c.req, c.md, opts...)
				if got.Code != c.code || got.Message != c.msg || !bytes.Equal(got.Body, c.want) {
					t.Errorf("%s %v (call %d of worker %d): %v %q, %d bytes, want %v %q, %d bytes", c.method, c.md, i, w, got.Code, got.Message, len(got.Body), c.code, c.msg, len(c.want))
					return
				}
			}
		})
	}
	wg.Wait()
}

// resolveAllCall is a ResolveAll request and connect-go's answer to it alone.
type resolveAllCall struct {
	method string
	req    []byte
	md     metadata.MD
	code   codes.Code
	msg    string
	want   []byte // the deterministic encoding of the response
}

// resolveAllCalls are ResolveAll requests over selectors, contexts and both
// services, with connect-go's answers.
func resolveAllCalls(t *testing.T, p *grpcPair) []resolveAllCall {
	t.Helper()
	var calls []resolveAllCall
	for _, sel := range []string{"", "flagSetId=set-a", "source=src-b", "source=src-a"} {
		for i := range 4 {
			req, err := proto.Marshal(&evalv1.ResolveAllRequest{Context: mustStruct(t, map[string]any{"email": fmt.Sprintf("u%d@%s", i, []string{"b.c", "x.y"}[i%2]), "vip": i%2 == 0})})
			if err != nil {
				t.Fatal(err)
			}
			md := metadata.MD{}
			if sel != "" {
				md.Set("flagd-selector", sel)
			}
			for _, method := range []string{"/flagd.evaluation.v1.Service/ResolveAll", "/schema.v1.Service/ResolveAll"} {
				slow := invokeRaw(t, p.slow, method, req, md)
				if slow.Code != codes.OK { // the selection's invalid UTF-8: an error, also from grpc-go
					calls = append(calls, resolveAllCall{method, req, md, slow.Code, slow.Message, nil})
					continue
				}
				m := responseFor(t, method)
				if err := proto.Unmarshal(slow.Body, m); err != nil {
					t.Fatal(err)
				}
				want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				calls = append(calls, resolveAllCall{method, req, md, codes.OK, "", want})
			}
		}
	}
	return calls
}
