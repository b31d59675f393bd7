package sidecar

import rbacv1 "k8s.io/api/rbac/v1"

// GrantedFlags reads the FeatureFlag names a grant Role (GrantRole) allows, sorted
// and without duplicates.
func GrantedFlags(role *rbacv1.Role) []string { return grantedFlags(role) }
