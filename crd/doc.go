// Package crd is the home of the core.openfeature.dev API: the types in
// apis/core/v1beta1, the clients generated from them in generated/ and the CRD
// manifests in manifests/ (hack/update-codegen.sh regenerates both). Its tests
// validate the samples in deploy/examples/crds and testdata/ against the generated
// schemas and CEL rules, as an API server would.
package crd
