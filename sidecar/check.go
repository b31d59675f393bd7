package sidecar

import (
	"context"
	"net/http"
	"strings"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	flagsync "github.com/flagpole-dev/flagpole/sync"
	grpcsource "github.com/flagpole-dev/flagpole/sync/grpc"
	httpsource "github.com/flagpole-dev/flagpole/sync/http"
)

// CheckSources says which sources of ffs a pod of namespace could not get, each
// with the webhook's denial — a provider flagpole does not run, a missing
// FeatureFlag, a refused cross-namespace reference, an http or grpc source its
// sidecar would refuse (sync/http.Check, sync/grpc.Check) — for every source rather
// than the first. Nothing is written: the sources' effects are dropped. Whether the
// pod may name ffs itself (CrossNamespaceCheck) is the caller's. A denial with a
// 5xx code is a failed read, not a verdict.
func (r *Renderer) CheckSources(ctx context.Context, namespace string, ffs *v1beta1.FeatureFlagSource) []*Denial {
	spec := mergeSources(r.Config.Defaults, []*v1beta1.FeatureFlagSourceSpec{&ffs.Spec})
	w := Workload{Namespace: namespace}
	var out []*Denial
	for i, s := range ffs.Spec.Sources {
		src := plannedSource{Source: s, from: ffs, index: i}
		plan, d := r.planSources(ctx, w, []plannedSource{src}, spec.DefaultSyncProvider)
		if d == nil {
			d = checkRemote(src, plan.sources)
		}
		if d != nil && !strings.HasPrefix(d.Message, src.where()) { // a cross-namespace refusal names no source
			d = deny(d.Code, "%s: %s", src.where(), d.Message)
		}
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

// checkRemote runs the sidecar's own checks of http and grpc sources.
func checkRemote(src plannedSource, sources []flagsync.SourceConfig) *Denial {
	for _, cfg := range sources {
		var err error
		switch cfg.Provider {
		case flagsync.ProviderHTTP:
			err = httpsource.Check(cfg)
		case flagsync.ProviderGRPC:
			err = grpcsource.Check(cfg)
		}
		if err != nil {
			return deny(http.StatusBadRequest, "%s: %v", src.where(), err)
		}
	}
	return nil
}
