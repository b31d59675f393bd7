package sync

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    SourceConfig
		wantErr string
	}{
		{in: "file:/etc/flags.json", want: SourceConfig{URI: "/etc/flags.json", Provider: ProviderFile}},
		{in: "file:relative.yaml", want: SourceConfig{URI: "relative.yaml", Provider: ProviderFile}},
		{in: "core.openfeature.dev/ns/name", want: SourceConfig{URI: "ns/name", Provider: ProviderKubernetes}},
		{in: "http://localhost:8080/flags.json", want: SourceConfig{URI: "http://localhost:8080/flags.json", Provider: ProviderHTTP}},
		{in: "https://flags.example.com/f.json?x=1", want: SourceConfig{URI: "https://flags.example.com/f.json?x=1", Provider: ProviderHTTP}},
		{in: "grpc://flagd:8015", want: SourceConfig{URI: "flagd:8015", Provider: ProviderGRPC}},
		{in: "grpcs://flagd:8015", want: SourceConfig{URI: "flagd:8015", Provider: ProviderGRPC, TLS: true}},
		{in: "dns:///flagd:8015", want: SourceConfig{URI: "dns:///flagd:8015", Provider: ProviderGRPC}},
		{in: "uds:///var/run/flagd.sock", want: SourceConfig{URI: "uds:///var/run/flagd.sock", Provider: ProviderGRPC}},
		{in: "envoy://localhost:9211/flagd-sync.svc", want: SourceConfig{URI: "envoy://localhost:9211/flagd-sync.svc", Provider: ProviderGRPC}},
		{in: "xds:///flagd", want: SourceConfig{URI: "xds:///flagd", Provider: ProviderGRPC}},
		{in: "gs://bucket/flags.json", want: SourceConfig{URI: "gs://bucket/flags.json", Provider: ProviderGCS}},
		{in: "azblob://container/flags.json", want: SourceConfig{URI: "azblob://container/flags.json", Provider: ProviderAzblob}},
		{in: "s3://bucket/flags.json?region=x-1", want: SourceConfig{URI: "s3://bucket/flags.json?region=x-1", Provider: ProviderS3}},
		{in: "ftp://x", wantErr: "invalid sync uri argument: ftp://x, must start with 'file:', 'http(s)://', 'grpc(s)://', 'gs://', 'azblob://', 's3://' or 'core.openfeature.dev'"},
		{in: "/etc/flags.json", wantErr: "invalid sync uri argument: /etc/flags.json"},
		{in: "gs://bucket", wantErr: "invalid sync uri argument: gs://bucket"},
		{in: "", wantErr: "invalid sync uri argument: ,"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseURI(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSources(t *testing.T) {
	for name, tc := range map[string]struct {
		in      string
		want    []SourceConfig
		wantErr string
	}{
		"empty": {in: "  "},
		"file":  {in: `[{"uri":"a.json","provider":"file"}]`, want: []SourceConfig{{URI: "a.json", Provider: ProviderFile}}},
		"fields": {
			in: `[{"uri":"https://h/f.json","provider":"http","interval":30,"intervalSeed":"pod-1","timeoutS":3,"maxMsgSize":100,
				"headers":{"X-Team":"core","Host":"flags.internal"},"certPath":"/ca.pem","authHeaderFile":"/secret/auth","allowInsecure":true},
				{"uri":"flagd:8015","provider":"grpc","tls":true,"providerID":"p","selector":"flagSetId=a","authHeaderEnv":"SYNC_AUTH"},
				{"uri":"https://h/o.json","provider":"http","oauth":{"tokenUrl":"https://idp/token","folder":"/oauth","reloadDelayS":60}}]`,
			want: []SourceConfig{
				{URI: "https://h/f.json", Provider: ProviderHTTP, Interval: 30, IntervalSeed: "pod-1", TimeoutS: 3, MaxMsgSize: 100,
					Headers: map[string]string{"X-Team": "core", "Host": "flags.internal"}, CertPath: "/ca.pem", AuthHeaderFile: "/secret/auth", AllowInsecure: true},
				{URI: "flagd:8015", Provider: ProviderGRPC, TLS: true, ProviderID: "p", Selector: "flagSetId=a", AuthHeaderEnv: "SYNC_AUTH"},
				{URI: "https://h/o.json", Provider: ProviderHTTP, OAuth: &OAuth{TokenURL: "https://idp/token", Folder: "/oauth", ReloadDelayS: 60}},
			},
		},
		"not an array":  {in: `{"uri":"a"}`, wantErr: "--sources: must be a JSON array"},
		"unknown field": {in: `[{"uri":"a","provider":"file","bearerToken":"x"}]`, wantErr: `unknown field "bearerToken"`},
		"invalid entry": {in: `[{"uri":"a","provider":"file"},{"uri":"b"}]`, wantErr: "sources[1].provider: is required"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseSources(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	httpSrc := func(mod func(*SourceConfig)) SourceConfig {
		c := SourceConfig{URI: "https://h/f.json", Provider: ProviderHTTP}
		mod(&c)
		return c
	}
	for name, tc := range map[string]struct {
		in      SourceConfig
		wantErr string // "" = valid
	}{
		"minimal http":           {in: httpSrc(func(*SourceConfig) {})},
		"missing uri":            {in: SourceConfig{Provider: ProviderFile}, wantErr: "sources[0].uri: is required"},
		"missing provider":       {in: SourceConfig{URI: "x"}, wantErr: "sources[0].provider: is required"},
		"unknown provider":       {in: SourceConfig{URI: "x", Provider: "ftp"}, wantErr: `sources[0].provider: unknown provider "ftp"`},
		"interval over a day":    {in: httpSrc(func(c *SourceConfig) { c.Interval = 86401 }), wantErr: "sources[0].interval: 86401 seconds is more than a day"},
		"interval of a day":      {in: httpSrc(func(c *SourceConfig) { c.Interval = 86400 })},
		"kubernetes without ns":  {in: SourceConfig{URI: "name", Provider: ProviderKubernetes}, wantErr: "sources[0].uri: a kubernetes source is <namespace>/<name>"},
		"kubernetes":             {in: SourceConfig{URI: "ns/name", Provider: ProviderKubernetes}},
		"negative timeout":       {in: httpSrc(func(c *SourceConfig) { c.TimeoutS = -1 }), wantErr: "sources[0].timeoutS: must not be negative"},
		"negative maxMsgSize":    {in: httpSrc(func(c *SourceConfig) { c.MaxMsgSize = -1 }), wantErr: "sources[0].maxMsgSize: must not be negative"},
		"authHeaderEnv":          {in: httpSrc(func(c *SourceConfig) { c.AuthHeaderEnv = "FLAG_AUTH" })},
		"authHeaderEnv bad name": {in: httpSrc(func(c *SourceConfig) { c.AuthHeaderEnv = "FLAG-AUTH" }), wantErr: `sources[0].authHeaderEnv: "FLAG-AUTH" is not an environment variable name`},
		"authHeaderEnv on file": {in: SourceConfig{URI: "a.json", Provider: ProviderFile, AuthHeaderEnv: "X"},
			wantErr: "sources[0].authHeaderEnv: only http and grpc sources use it, not file"},
		"authHeaderFile on kubernetes": {in: SourceConfig{URI: "ns/n", Provider: ProviderKubernetes, AuthHeaderFile: "/x"},
			wantErr: "sources[0].authHeaderFile: only http and grpc sources use it, not kubernetes"},
		"allowInsecure on file": {in: SourceConfig{URI: "a.json", Provider: ProviderFile, AllowInsecure: true},
			wantErr: "sources[0].allowInsecure: only http and grpc sources use it, not file"},
		"allowInsecure on grpc": {in: SourceConfig{URI: "h:1", Provider: ProviderGRPC, AllowInsecure: true}},
		"two auth fields": {in: httpSrc(func(c *SourceConfig) { c.AuthHeader, c.AuthHeaderFile = "Bearer x", "/f" }),
			wantErr: "sources[0].authHeader: give one of authHeader, authHeaderEnv, authHeaderFile, bearerTokenFile or oauth, not authHeader and authHeaderFile"},
		"bearerTokenFile on grpc": {in: SourceConfig{URI: "h:1", Provider: ProviderGRPC, BearerTokenFile: "/var/run/secrets/token"}},
		"bearerTokenFile on kubernetes": {in: SourceConfig{URI: "ns/n", Provider: ProviderKubernetes, BearerTokenFile: "/x"},
			wantErr: "sources[0].bearerTokenFile: only http and grpc sources use it, not kubernetes"},
		"bearerTokenFile and authHeaderEnv": {in: SourceConfig{URI: "h:1", Provider: ProviderGRPC, BearerTokenFile: "/x", AuthHeaderEnv: "X"},
			wantErr: "not authHeaderEnv and bearerTokenFile"},
		"auth and oauth": {in: httpSrc(func(c *SourceConfig) {
			c.AuthHeaderEnv, c.OAuth = "X", &OAuth{TokenURL: "https://t", ClientID: "i", ClientSecret: "s"}
		}), wantErr: "not authHeaderEnv and oauth"},
		"header name":              {in: httpSrc(func(c *SourceConfig) { c.Headers = map[string]string{"X Team": "a"} }), wantErr: `sources[0].headers: "X Team" is not a valid header name`},
		"header value line break":  {in: httpSrc(func(c *SourceConfig) { c.Headers = map[string]string{"X-Team": "a\r\nEvil: 1"} }), wantErr: "sources[0].headers.X-Team: the value contains a line break"},
		"authorization in headers": {in: httpSrc(func(c *SourceConfig) { c.Headers = map[string]string{"X-Team": "a", "Authorization": "Bearer y"} })},
		"authorization twice": {in: httpSrc(func(c *SourceConfig) {
			c.Headers, c.AuthHeaderFile = map[string]string{"authorization": "Bearer y"}, "/f"
		}), wantErr: "sources[0].headers.authorization: conflicts with authHeaderFile"},
		"oauth with secret": {in: httpSrc(func(c *SourceConfig) { c.OAuth = &OAuth{TokenURL: "https://t", ClientID: "i", ClientSecret: "s"} })},
		"oauth with folder": {in: httpSrc(func(c *SourceConfig) { c.OAuth = &OAuth{TokenURL: "https://t", Folder: "/o"} })},
		"oauth on grpc": {in: SourceConfig{URI: "h:1", Provider: ProviderGRPC, OAuth: &OAuth{TokenURL: "https://t", Folder: "/o"}},
			wantErr: "sources[0].oauth: only http sources use it, not grpc"},
		"oauth without token url": {in: httpSrc(func(c *SourceConfig) { c.OAuth = &OAuth{Folder: "/o"} }), wantErr: "sources[0].oauth.tokenUrl: is required"},
		"oauth folder and id": {in: httpSrc(func(c *SourceConfig) { c.OAuth = &OAuth{TokenURL: "https://t", Folder: "/o", ClientID: "i"} }),
			wantErr: "sources[0].oauth.folder: give either folder"},
		"oauth without secret": {in: httpSrc(func(c *SourceConfig) { c.OAuth = &OAuth{TokenURL: "https://t", ClientID: "i"} }),
			wantErr: "sources[0].oauth.clientID: clientID and clientSecret are required unless folder is given"},
		"oauth negative reload": {in: httpSrc(func(c *SourceConfig) { c.OAuth = &OAuth{TokenURL: "https://t", Folder: "/o", ReloadDelayS: -1} }),
			wantErr: "sources[0].oauth.reloadDelayS: must not be negative"},
	} {
		t.Run(name, func(t *testing.T) {
			err := Validate([]SourceConfig{tc.in})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestCombine(t *testing.T) {
	got, err := Combine([]string{"file:a.json", "grpc://h:1"}, []SourceConfig{{URI: "https://h/f.json", Provider: ProviderHTTP}})
	if err != nil {
		t.Fatal(err)
	}
	want := []SourceConfig{{URI: "a.json", Provider: ProviderFile}, {URI: "h:1", Provider: ProviderGRPC}, {URI: "https://h/f.json", Provider: ProviderHTTP}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := Combine([]string{"grpc://h:1"}, []SourceConfig{{URI: "h:1", Provider: ProviderGRPC}}); err == nil || !strings.Contains(err.Error(), `source "h:1" is configured twice`) {
		t.Errorf("duplicate: error = %v", err)
	}
	// one sync server, two selections (two flagd-proxy sources): two sources
	proxied, err := Combine(nil, []SourceConfig{{URI: "proxy:8015", Provider: ProviderGRPC, Selector: "core.openfeature.dev/a/x"},
		{URI: "proxy:8015", Provider: ProviderGRPC, Selector: "core.openfeature.dev/a/y"}})
	if err != nil {
		t.Fatalf("two selections of one server: %v", err)
	}
	if a, b := proxied[0].Name(), proxied[1].Name(); a != "proxy:8015 core.openfeature.dev/a/x" || b != "proxy:8015 core.openfeature.dev/a/y" {
		t.Errorf("names %q and %q", a, b)
	}
	if _, err := Combine(nil, []SourceConfig{{URI: "proxy:8015", Provider: ProviderGRPC, Selector: "s"}, {URI: "proxy:8015", Provider: ProviderGRPC, Selector: "s"}}); err == nil {
		t.Error("the same selection twice: no error")
	}
	if _, err := Combine([]string{"ftp://x"}, nil); err == nil || !strings.Contains(err.Error(), "invalid sync uri argument") {
		t.Errorf("bad uri: error = %v", err)
	}
}

func TestAuthHeaderValue(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("FLAGPOLE_TEST_AUTH", "  Bearer from-env\n")
	t.Setenv("FLAGPOLE_TEST_EMPTY", "")
	const secret = "Bearer s3cr3t-value"
	for name, tc := range map[string]struct {
		in      SourceConfig
		want    string
		wantErr string
	}{
		"none":              {in: SourceConfig{}, want: ""},
		"literal":           {in: SourceConfig{AuthHeader: "Basic abc"}, want: "Basic abc"},
		"env":               {in: SourceConfig{AuthHeaderEnv: "FLAGPOLE_TEST_AUTH"}, want: "Bearer from-env"},
		"env unset":         {in: SourceConfig{AuthHeaderEnv: "FLAGPOLE_TEST_UNSET_VARIABLE"}, wantErr: "authHeaderEnv: environment variable FLAGPOLE_TEST_UNSET_VARIABLE is not set"},
		"env empty":         {in: SourceConfig{AuthHeaderEnv: "FLAGPOLE_TEST_EMPTY"}, wantErr: "authHeaderEnv FLAGPOLE_TEST_EMPTY: the value is empty"},
		"file":              {in: SourceConfig{AuthHeaderFile: write("auth", secret+"\n")}, want: secret},
		"file missing":      {in: SourceConfig{AuthHeaderFile: filepath.Join(dir, "missing")}, wantErr: "authHeaderFile: open"},
		"file two lines":    {in: SourceConfig{AuthHeaderFile: write("two", secret+"\nX: y\n")}, wantErr: "the value contains a line break"},
		"file too large":    {in: SourceConfig{AuthHeaderFile: write("large", strings.Repeat("a", maxAuthHeaderFile+1))}, wantErr: "is larger than 65536 bytes"},
		"bearer token file": {in: SourceConfig{BearerTokenFile: write("token", "eyJs3cr3t.payload.sig\n")}, want: "Bearer eyJs3cr3t.payload.sig"},
		"bearer token file empty": {in: SourceConfig{BearerTokenFile: write("empty-token", "\n")},
			wantErr: "bearerTokenFile " + filepath.Join(dir, "empty-token") + ": the value is empty"},
		"bearer token file with a header value": {in: SourceConfig{BearerTokenFile: write("header-token", secret)},
			wantErr: "the token contains white space; the file must hold the bare token"},
		"bearer token file missing": {in: SourceConfig{BearerTokenFile: filepath.Join(dir, "missing")}, wantErr: "bearerTokenFile: open"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := tc.in.AuthHeaderValue()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Fatalf("the error reveals the value: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRootCAs(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flagpole test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}

	pool, err := SourceConfig{}.RootCAs()
	if pool != nil || err != nil {
		t.Errorf("no certPath: got %v, %v; want nil, nil (system roots)", pool, err)
	}
	pool, err = SourceConfig{CertPath: caFile}.RootCAs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("the CA of certPath is not trusted: %v", err)
	}
	if _, err := (SourceConfig{CertPath: notPEM}).RootCAs(); err == nil || !strings.Contains(err.Error(), "certPath: "+notPEM+" holds no PEM certificate") {
		t.Errorf("not PEM: error = %v", err)
	}
	if _, err := (SourceConfig{CertPath: filepath.Join(dir, "missing.pem")}).RootCAs(); err == nil || !strings.Contains(err.Error(), "certPath: open") {
		t.Errorf("missing: error = %v", err)
	}
}

func TestIsLoopbackHost(t *testing.T) {
	got := map[string]bool{}
	for _, h := range []string{"localhost", "LOCALHOST.", "api.localhost", "127.0.0.1", "127.3.4.5", "::1", "[::1]", "::ffff:127.0.0.1",
		"example.com", "10.0.0.1", "0.0.0.0", "localhost.example.com", "", "flagd.default.svc"} {
		got[h] = IsLoopbackHost(h)
	}
	want := map[string]bool{"localhost": true, "LOCALHOST.": true, "api.localhost": true, "127.0.0.1": true, "127.3.4.5": true, "::1": true, "[::1]": true, "::ffff:127.0.0.1": true,
		"example.com": false, "10.0.0.1": false, "0.0.0.0": false, "localhost.example.com": false, "": false, "flagd.default.svc": false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
