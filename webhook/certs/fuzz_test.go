package certs

import (
	"crypto/x509"
	"testing"
	"time"
)

// FuzzCheckSecret feeds arbitrary Secret contents to the checks and the plan: they
// never panic, and whatever they decide to write is itself accepted by the checks
// (so a corrupt Secret is repaired in one write).
func FuzzCheckSecret(f *testing.F) {
	now := time.Now()
	valid := testSecretDataF(f, now)
	f.Add(valid[keyCACert], valid[keyCAKey], valid[keyCert], valid[keyKey])
	f.Add([]byte{}, []byte{}, []byte{}, []byte{})
	f.Add(valid[keyCert], valid[keyKey], valid[keyCACert], valid[keyCAKey])
	f.Add(append(valid[keyCACert], valid[keyCAKey]...), valid[keyCAKey], []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), valid[keyKey])
	f.Add(valid[keyCACert], []byte("-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n"), valid[keyCert], []byte("x"))
	p := policy{caLifetime: DefaultCALifetime, servingLifetime: DefaultServingLifetime, hosts: testHosts(), propagation: 30 * time.Second}
	never := func(*x509.Certificate) (time.Time, bool) { return time.Time{}, false }
	f.Fuzz(func(t *testing.T, caCrt, caKey, tlsCrt, tlsKey []byte) {
		data := map[string][]byte{keyCACert: caCrt, keyCAKey: caKey, keyCert: tlsCrt, keyKey: tlsKey}
		m := check(data, now, p.hosts)
		planned, err := p.plan(m, now, never)
		if err != nil {
			t.Fatalf("plan: %v", err)
		}
		if planned.changes == nil {
			return
		}
		after := check(apply(data, planned.changes), now, p.hosts)
		if after.caErr != nil || after.servingErr != nil {
			t.Fatalf("the repaired Secret is not usable: %v, %v", after.caErr, after.servingErr)
		}
		if again, _ := p.plan(after, now, never); again.changes != nil {
			t.Fatalf("the repaired Secret needs another write: %v", again.why)
		}
	})
}

// testSecretDataF is testSecretData for a fuzz target.
func testSecretDataF(f *testing.F, now time.Time) map[string][]byte {
	f.Helper()
	ca, err := newCA(now, DefaultCALifetime)
	if err != nil {
		f.Fatal(err)
	}
	s, err := newServing(now, DefaultServingLifetime, ca.cert, ca.key, testHosts())
	if err != nil {
		f.Fatal(err)
	}
	return map[string][]byte{keyCACert: ca.certPEM, keyCAKey: ca.keyPEM, keyCert: s.certPEM, keyKey: s.keyPEM}
}
