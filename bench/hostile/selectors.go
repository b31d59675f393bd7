package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/evaluation/v1/evaluationv1grpc"
	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// resolveAllSelectors sends gRPC ResolveAll calls, each with a selector of its own
// (1 KiB, selecting nothing): every distinct selector string used to stay in the
// evaluation service's cache of rule groups until the next snapshot. The report's
// heap columns include the calls' garbage (the daemon collects when it allocates):
// the live heap after a collection was measured with profserve, and the bound is
// evaluation.TestRuleGroupsBounded.
func resolveAllSelectors(ctx context.Context, e *env) (outcome, error) {
	calls := e.cfg.scaled(20000, 50)
	conn, err := grpc.NewClient(e.d.eval, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return outcome{}, err
	}
	defer conn.Close()
	client := evaluationv1grpc.NewServiceClient(conn)
	pad := strings.Repeat("s", 1000)
	start := time.Now()
	failed := inParallel(calls, func(j int) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cctx = metadata.AppendToOutgoingContext(cctx, "flagd-selector", fmt.Sprintf("flagSetId=%s-%d", pad, j))
		_, err := client.ResolveAll(cctx, &evalv1.ResolveAllRequest{})
		return err
	})
	took := time.Since(start)
	e.peak()
	return outcome{note: fmt.Sprintf("%d ResolveAll calls with distinct 1 KiB selectors, %d failed, in %v",
		calls, failed, took.Round(time.Millisecond))}, nil
}

// inParallel runs do(0) to do(n-1) on 32 goroutines and returns how many failed.
func inParallel(n int, do func(int) error) int64 {
	jobs := make(chan int)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for j := range jobs {
				if do(j) != nil {
					failed.Add(1)
				}
			}
		})
	}
	for j := range n {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	return failed.Load()
}
