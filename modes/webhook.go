package modes

import (
	"context"

	"github.com/rs/zerolog"
)

// WebhookCmd is `flagpole webhook`: the admission webhooks (pod injection and
// validation of the core.openfeature.dev kinds) with their TLS, readiness and
// metrics, on every replica.
type WebhookCmd struct {
	KubeFlags
	SidecarFlags
	WebhookFlags
}

// Run serves the webhooks until ctx ends.
func (c *WebhookCmd) Run(ctx context.Context, log zerolog.Logger, build BuildInfo) error {
	return c.Serve(ctx, log, build, nil)
}

// Serve runs the webhook server, reports the bound addresses on started (if not
// nil), and shuts down gracefully when ctx ends.
func (c *WebhookCmd) Serve(ctx context.Context, log zerolog.Logger, build BuildInfo, started func(OperatorAddresses)) error {
	return runOperator(ctx, log, build, operatorParts{kube: c.KubeFlags, sidecar: c.SidecarFlags, webhook: &c.WebhookFlags}, started)
}

// ControllerCmd is `flagpole controller`: the reconcilers, on the elected leader.
type ControllerCmd struct {
	KubeFlags
	SidecarFlags
	ControllerFlags
}

// Run reconciles until ctx ends.
func (c *ControllerCmd) Run(ctx context.Context, log zerolog.Logger, build BuildInfo) error {
	return runOperator(ctx, log, build, operatorParts{kube: c.KubeFlags, sidecar: c.SidecarFlags, controller: &c.ControllerFlags}, nil)
}

// OperatorCmd is `flagpole operator`: the webhooks (every replica) and the
// reconcilers (the elected leader) in one process, the default deployment.
type OperatorCmd struct {
	KubeFlags
	SidecarFlags
	WebhookFlags
	ControllerFlags
}

// Run serves and reconciles until ctx ends.
func (c *OperatorCmd) Run(ctx context.Context, log zerolog.Logger, build BuildInfo) error {
	return runOperator(ctx, log, build, operatorParts{kube: c.KubeFlags, sidecar: c.SidecarFlags, webhook: &c.WebhookFlags, controller: &c.ControllerFlags}, nil)
}
