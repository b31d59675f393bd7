package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
)

// The keys of the Secret. tls.crt and tls.key are those of a kubernetes.io/tls
// Secret, so the same Secret can be mounted where a serving certificate is wanted.
const (
	keyCACert = "ca.crt" // the CA bundle: the signing CA first, then older CAs until they expire
	keyCAKey  = "ca.key" // the signing CA's key
	keyCert   = "tls.crt"
	keyKey    = "tls.key"
)

// material is what a Secret holds, checked.
type material struct {
	// cas is ca.crt in order; cas[0] signs new serving certificates.
	cas   []*x509.Certificate
	caKey crypto.Signer
	// caErr says why the CA cannot be used (nil when it can); the whole Secret is
	// then replaced.
	caErr error
	// empty: none of the four keys is set (a placeholder, not a corruption);
	// noServing: tls.crt and tls.key are not set (a Secret with only a CA of
	// one's own).
	empty, noServing bool
	// serving is the serving certificate (Leaf set) when it is usable: a matching
	// key pair, chaining to cas at the time of the check, with every wanted host.
	serving *tls.Certificate
	issuer  *x509.Certificate // the certificate of cas that signed serving
	// servingErr says why the serving certificate cannot be used; it is then
	// re-issued by cas[0].
	servingErr error
}

// leaf is the serving certificate, or nil.
func (m *material) leaf() *x509.Certificate {
	if m.serving == nil {
		return nil
	}
	return m.serving.Leaf
}

// bundle is the caBundle for webhook configurations: ca.crt re-encoded. Every
// replica computes the same bytes from the same Secret, so they never disagree
// about a webhook configuration.
func (m *material) bundle() []byte { return encodeBundle(m.cas) }

// check parses and checks the Secret's data at now.
func check(data map[string][]byte, now time.Time, want hosts) *material {
	m := &material{empty: true}
	for _, k := range []string{keyCACert, keyCAKey, keyCert, keyKey} {
		if len(data[k]) > 0 {
			m.empty = false
		}
	}
	m.noServing = len(data[keyCert]) == 0 && len(data[keyKey]) == 0
	if m.caErr = m.checkCA(data, now); m.caErr != nil {
		m.cas, m.caKey = nil, nil
		return m
	}
	m.servingErr = m.checkServing(data, now, want)
	if m.servingErr != nil {
		m.serving, m.issuer = nil, nil
	}
	return m
}

func (m *material) checkCA(data map[string][]byte, now time.Time) error {
	if len(data[keyCACert]) == 0 {
		return fmt.Errorf("no %s", keyCACert)
	}
	cas, err := parseCertificates(data[keyCACert])
	if err != nil {
		return fmt.Errorf("%s: %w", keyCACert, err)
	}
	for i, c := range cas {
		if !c.IsCA || !c.BasicConstraintsValid || (c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0) {
			return fmt.Errorf("%s: certificate %d (%q) is not a CA", keyCACert, i+1, c.Subject.String())
		}
	}
	ca := cas[0]
	switch {
	case now.Before(ca.NotBefore):
		return fmt.Errorf("%s: the CA is not valid before %s", keyCACert, ca.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(ca.NotAfter):
		return fmt.Errorf("%s: the CA expired at %s", keyCACert, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(data[keyCAKey]) == 0 {
		return fmt.Errorf("no %s", keyCAKey)
	}
	key, err := parsePrivateKey(data[keyCAKey])
	if err != nil {
		return fmt.Errorf("%s: %w", keyCAKey, err)
	}
	if !samePublicKey(ca, key) {
		return fmt.Errorf("%s does not match the first certificate of %s", keyCAKey, keyCACert)
	}
	m.cas, m.caKey = cas, key
	return nil
}

func (m *material) checkServing(data map[string][]byte, now time.Time, want hosts) error {
	for _, k := range []string{keyCert, keyKey} {
		if len(data[k]) == 0 {
			return fmt.Errorf("no %s", k)
		}
	}
	cert, err := tls.X509KeyPair(data[keyCert], data[keyKey])
	if err == nil && cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err != nil {
		return fmt.Errorf("%s / %s: %w", keyCert, keyKey, err)
	}
	roots := x509.NewCertPool()
	for _, c := range m.cas {
		roots.AddCert(c)
	}
	chains, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return fmt.Errorf("%s is not valid for %s: %w", keyCert, keyCACert, err)
	}
	if missing := want.missing(cert.Leaf); len(missing) > 0 {
		return fmt.Errorf("%s lacks the host(s) %s", keyCert, strings.Join(missing, ", "))
	}
	m.serving, m.issuer = &cert, chains[0][len(chains[0])-1]
	return nil
}

// policy decides when certificates are made.
type policy struct {
	caLifetime, servingLifetime time.Duration
	hosts                       hosts
	// propagation is how long a new CA must have been seen in every webhook
	// configuration's caBundle before serving certificates it signed are served.
	propagation time.Duration
}

// published says since when the CA has been seen in every webhook configuration's
// caBundle (false: not yet, or not known).
type published func(ca *x509.Certificate) (since time.Time, ok bool)

// planned is what plan decided.
type planned struct {
	// changes are the new values of the Secret's keys; nil: nothing to do.
	changes map[string][]byte
	// why says what is made and why, for the log.
	why []string
	// repair: something unusable is replaced (logged as a warning).
	repair bool
}

// plan returns the changes the Secret needs at now. It never touches other keys.
func (p policy) plan(m *material, now time.Time, pub published) (planned, error) {
	changes := map[string][]byte{}
	var why []string
	repair := false
	cas, caKey := m.cas, m.caKey
	renewServing := ""
	switch {
	case m.caErr != nil:
		ca, err := newCA(now, p.caLifetime)
		if err != nil {
			return planned{}, err
		}
		cas, caKey = []*x509.Certificate{ca.cert}, ca.key
		changes[keyCACert], changes[keyCAKey] = ca.certPEM, ca.keyPEM
		if m.empty {
			why = append(why, "new CA (the Secret was empty)")
		} else {
			why = append(why, fmt.Sprintf("new CA, replacing an unusable one (%v)", m.caErr))
			repair = true
		}
		renewServing = "the CA was replaced"
	case !now.Before(renewAt(cas[0])):
		ca, err := newCA(now, p.caLifetime)
		if err != nil {
			return planned{}, err
		}
		old := cas[0]
		cas, caKey = append([]*x509.Certificate{ca.cert}, unexpired(cas, now)...), ca.key
		changes[keyCACert], changes[keyCAKey] = encodeBundle(cas), ca.keyPEM
		why = append(why, fmt.Sprintf("new CA at 2/3 of the old one's lifetime (the old CA %s stays in the bundle until it expires at %s)",
			fingerprint(old), old.NotAfter.UTC().Format(time.RFC3339)))
	default:
		if kept := unexpired(cas[1:], now); len(kept) < len(cas)-1 {
			cas = append([]*x509.Certificate{cas[0]}, kept...)
			changes[keyCACert] = encodeBundle(cas)
			why = append(why, "dropped expired CA(s) from the bundle")
		}
	}
	if renewServing == "" {
		renewServing = p.servingDue(m, cas[0], now, pub)
		repair = repair || (m.servingErr != nil && !m.noServing)
	}
	if renewServing != "" {
		s, err := newServing(now, p.servingLifetime, cas[0], caKey, p.hosts)
		if err != nil {
			return planned{}, err
		}
		changes[keyCert], changes[keyKey] = s.certPEM, s.keyPEM
		why = append(why, "new serving certificate ("+renewServing+")")
	}
	if len(changes) == 0 {
		return planned{}, nil
	}
	return planned{changes: changes, why: why, repair: repair}, nil
}

// servingDue says why the serving certificate must be issued now by ca, or "".
func (p policy) servingDue(m *material, ca *x509.Certificate, now time.Time, pub published) string {
	if m.servingErr != nil {
		if m.empty {
			return "none yet"
		}
		return m.servingErr.Error()
	}
	leaf := m.leaf()
	if now.Before(renewAt(leaf)) {
		return ""
	}
	if m.issuer.Equal(ca) {
		return "2/3 of its lifetime"
	}
	// Signed by an older CA: the new CA signs it only once the API servers trust
	// the new CA, or when it cannot wait any longer.
	if since, ok := pub(ca); ok && !now.Before(since.Add(p.propagation)) {
		return "2/3 of its lifetime; the new CA is in every caBundle"
	}
	if !now.Before(lastCall(leaf)) {
		return "5/6 of its lifetime; the new CA is not confirmed in every caBundle yet, check the caBundle errors"
	}
	return ""
}

// next returns when the Secret must be looked at again (the zero time: no timed
// event), given the state after plan and writes.
func (p policy) next(m *material, now time.Time, pub published) time.Time {
	if m.caErr != nil || m.servingErr != nil {
		return time.Time{}
	}
	var at []time.Time
	at = append(at, renewAt(m.cas[0]))
	for _, c := range m.cas[1:] {
		at = append(at, c.NotAfter)
	}
	leaf := m.leaf()
	switch r := renewAt(leaf); {
	case now.Before(r):
		at = append(at, r)
	default: // due, waiting for the new CA to be published
		at = append(at, lastCall(leaf))
		if since, ok := pub(m.cas[0]); ok {
			at = append(at, since.Add(p.propagation))
		}
	}
	at = append(at, leaf.NotAfter)
	first := at[0]
	for _, t := range at[1:] {
		if t.Before(first) {
			first = t
		}
	}
	return first
}

// unexpired returns the certificates still valid at now, in order.
func unexpired(certs []*x509.Certificate, now time.Time) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if now.Before(c.NotAfter) {
			out = append(out, c)
		}
	}
	return out
}

// apply returns a copy of data with changes applied.
func apply(data, changes map[string][]byte) map[string][]byte {
	out := maps.Clone(data)
	if out == nil {
		out = map[string][]byte{}
	}
	maps.Copy(out, changes)
	return out
}

// errNoCertificate is what GetCertificate answers before a certificate is loaded.
var errNoCertificate = errors.New("no serving certificate yet")
