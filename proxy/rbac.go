package proxy

import _ "embed"

// ClusterRoleName is the proxy's ClusterRole (rbac.yaml), which the install
// manifests create and the operator binds to the proxy's ServiceAccount.
const ClusterRoleName = "flagpole-flagd-proxy"

// ClusterRoleYAML is the proxy's ClusterRole: list and watch on FeatureFlags,
// create on TokenReviews and SubjectAccessReviews.
//
//go:embed rbac.yaml
var ClusterRoleYAML []byte
