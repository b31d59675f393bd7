package sidecar

import (
	"testing"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// TestPortsOutOfRange: a FeatureFlagSource that bypassed the schema (an OFO CRD)
// with a port a TCP port cannot be is refused naming the field, never wrapped
// around into another port.
func TestPortsOutOfRange(t *testing.T) {
	spec := &v1beta1.FeatureFlagSourceSpec{Port: 70000, ManagementPort: 8014, OfrepPort: -1}
	_, err := sidecarContract(spec, nil, false)
	want := "port 70000: want a TCP port, 1-65535\nofrepPort -1: want a TCP port, 1-65535"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
	spec.Port, spec.OfrepPort = 8013, 8016
	c, err := sidecarContract(spec, nil, false)
	if err != nil || c.Port != 8013 || c.ManagementPort != 8014 || c.OfrepPort != 8016 {
		t.Errorf("valid ports: %+v, %v", c, err)
	}
}
