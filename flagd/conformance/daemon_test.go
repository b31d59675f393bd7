package conformance

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flagpole-dev/flagpole/flagd/conformance/steps"
)

// moduleRoot is the flagpole module, relative to this package directory.
const moduleRoot = "../.."

// Generous waits for things that normally take milliseconds (never timing assertions).
const (
	startTimeout = 20 * time.Second // listeners bound and /readyz 200
	stopTimeout  = 10 * time.Second // graceful shutdown after SIGINT, then SIGKILL
	eventTimeout = 10 * time.Second // an expected provider event
)

// daemonConfig is a launchpad configuration a scenario's provider connects to.
type daemonConfig string

// The launchpad configurations (launchpad/configs/<name>.json), plus "socket", which
// the testbed's providers name but the testbed does not ship (flagd-compat §8.1): it
// is "default" served on unix sockets (--socket-path, --sync-socket-path). The
// provider names map to them with steps.LaunchpadConfig.
const (
	configDefault     daemonConfig = "default"
	configMetadata    daemonConfig = "metadata"
	configSyncPayload daemonConfig = "sync-payload"
	configSSL         daemonConfig = "ssl"
	configSocket      daemonConfig = "socket"
)

// allConfigs lists every configuration a mode starts a daemon for.
func allConfigs() []daemonConfig {
	return []daemonConfig{configDefault, configMetadata, configSyncPayload, configSSL, configSocket}
}

// daemon is one running `flagpole start --config <dir>/config.json` subprocess, with
// its working directory laid out as the testbed's container: flags/allFlags.json (the
// launchpad's merged file) and rawflags/ (the testbed's flag files), so that the file
// sources are named "flags/allFlags.json" and "rawflags/<file>" as the scenarios'
// selectors expect.
type daemon struct {
	config  daemonConfig
	dir     string
	testbed string // the flagd-testbed checkout

	// Where the listeners are: host:port, or a unix socket path for the socket config.
	evalAddr, syncAddr, mgmtAddr string
	evalURL                      string       // base URL for connect clients
	httpClient                   *http.Client // evaluation listener: h2c, TLS or unix socket
	grpcConn                     *grpc.ClientConn

	mu     sync.Mutex
	merged map[string]any // the allFlags.json document, for "the flag was modified"
}

// buildFlagpole compiles the flagpole binary into a temporary directory (the build
// cache makes this fast after `go test` has compiled the packages).
func buildFlagpole(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "flagpole")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = moduleRoot
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building flagpole: %v\n%s", err, out)
	}
	return bin
}

// cleanEnv is the environment without FLAGD_* and FLAGPOLE_* variables, which would
// override the launchpad configuration.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLAGD_") && !strings.HasPrefix(kv, "FLAGPOLE_") {
			env = append(env, kv)
		}
	}
	return env
}

// startDaemon lays out a working directory for config, starts flagpole in it on free
// ports (reported by its "serving" log lines), waits for /readyz and connects the
// clients. Everything is stopped in t.Cleanup, also when the test fails. It may run
// in its own goroutine: it reports failures as errors.
func startDaemon(t *testing.T, bin, testbed string, config daemonConfig) (*daemon, error) {
	t.Helper()
	d := &daemon{config: config, dir: t.TempDir(), testbed: testbed}
	settings, err := d.layout(config)
	if err != nil {
		return nil, fmt.Errorf("daemon %s: %w", config, err)
	}
	raw, err := json.MarshalIndent(settings, "", "  ")
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(d.dir, "config.json")
	if err := os.WriteFile(configPath, raw, 0o600); err != nil {
		return nil, err
	}

	cmd := exec.Command(bin, "--log-format", "json", "--log-level", "info",
		"start", "--config", configPath, "--bind-address", "127.0.0.1",
		"--port", "0", "--management-port", "0", "--sync-port", "0", "--ofrep-port", "0")
	cmd.Dir = d.dir
	cmd.Env = cleanEnv()
	killWithParent(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logs := &logTail{}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("daemon %s: starting flagpole: %w", config, err)
	}
	addrs := make(chan map[string]string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		logs.scan(stderr, addrs)
	}()
	exited := make(chan error, 1)
	go func() {
		<-scanned // Wait closes the pipe: read it to the end first
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if d.grpcConn != nil {
			_ = d.grpcConn.Close()
		}
		if d.httpClient != nil {
			d.httpClient.CloseIdleConnections()
		}
		stop(t, cmd, exited, config)
		if t.Failed() {
			t.Logf("daemon %s log (last lines):\n%s", config, logs.String())
		}
	})

	timeout := time.NewTimer(startTimeout)
	defer timeout.Stop()
	select {
	case a := <-addrs:
		d.evalAddr, d.syncAddr, d.mgmtAddr = a["evaluation"], a["sync"], a["management"]
	case err := <-exited:
		exited <- err // for the cleanup
		//nolint:errorlint // %v: the exit error is nil after a clean exit, which %w would print as %!w(<nil>)
		return nil, fmt.Errorf("daemon %s exited before serving: %v\n%s", config, err, logs.String())
	case <-timeout.C:
		return nil, fmt.Errorf("daemon %s did not report its listeners within %s\n%s", config, startTimeout, logs.String())
	}
	if err := d.connect(); err != nil {
		return nil, fmt.Errorf("daemon %s: %w", config, err)
	}
	if err := waitReady(d.mgmtAddr); err != nil {
		return nil, fmt.Errorf("daemon %s: %w\n%s", config, err, logs.String())
	}
	return d, nil
}

// stop ends the subprocess gracefully (SIGINT, as a terminal or the kubelet's
// SIGTERM), and kills it if it is still running after stopTimeout.
func stop(t *testing.T, cmd *exec.Cmd, exited chan error, config daemonConfig) {
	t.Helper()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		_ = cmd.Process.Kill() // already gone, or no SIGINT on this OS
	}
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.Exited() {
			t.Errorf("daemon %s: exit after SIGINT: %v (want a clean shutdown)", config, err)
		}
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		err := <-exited
		t.Errorf("daemon %s did not stop within %s of SIGINT; killed (%v)", config, stopTimeout, err)
	}
}

// layout writes the daemon's flag files and returns its --config settings: the
// launchpad configuration, with the ssl paths pointing at a certificate issued by the
// testbed CA, and the socket paths for the socket configuration.
func (d *daemon) layout(config daemonConfig) (map[string]any, error) {
	name := string(config)
	if config == configSocket {
		name = string(configDefault)
	}
	raw, err := os.ReadFile(filepath.Join(d.testbed, "launchpad", "configs", name+".json"))
	if err != nil {
		return nil, fmt.Errorf("launchpad configuration (the repository must be checked out with shared/ beside it): %w", err)
	}
	var settings map[string]any
	if err := json.Unmarshal(raw, &settings); err != nil {
		return nil, fmt.Errorf("launchpad configuration %s: %w", name, err)
	}

	src := filepath.Join(d.testbed, "flags")
	names, err := steps.FlagFiles(src)
	if err != nil {
		return nil, fmt.Errorf("flagd-testbed flags: %w", err)
	}
	if err := os.Mkdir(filepath.Join(d.dir, "rawflags"), 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(d.dir, "flags"), 0o700); err != nil {
		return nil, err
	}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(d.dir, "rawflags", n), data, 0o600); err != nil {
			return nil, err
		}
	}
	if d.merged, err = steps.MergedFlags(src); err != nil {
		return nil, err
	}
	if err := d.writeMerged(); err != nil {
		return nil, err
	}

	switch config {
	case configSSL:
		cert, key, err := issueServerCert(d.testbed, d.dir)
		if err != nil {
			return nil, fmt.Errorf("server certificate: %w", err)
		}
		settings["server-cert-path"], settings["server-key-path"] = cert, key
	case configSocket:
		eval, sync := filepath.Join(d.dir, "eval.sock"), filepath.Join(d.dir, "sync.sock")
		if len(sync) > 100 { // sun_path is 104-108 bytes
			return nil, fmt.Errorf("temporary directory %s is too long for a unix socket path", d.dir)
		}
		settings["socket-path"], settings["sync-socket-path"] = eval, sync
	}
	return settings, nil
}

// writeMerged writes flags/allFlags.json atomically (temporary file and rename), as
// the launchpad does. The caller holds d.mu or owns d exclusively.
func (d *daemon) writeMerged() error {
	data, err := json.MarshalIndent(d.merged, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(d.dir, "flags"), ".allFlags-*.json")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(d.dir, "flags", "allFlags.json"))
}

// changeFlag is the launchpad's /change: it toggles changing-flag's defaultVariant
// between foo and bar and rewrites the merged file.
func (d *daemon) changeFlag() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	all, _ := d.merged["flags"].(map[string]any)
	flag, ok := all["changing-flag"].(map[string]any)
	if !ok {
		return errors.New("allFlags.json has no changing-flag")
	}
	if flag["defaultVariant"] == "foo" {
		flag["defaultVariant"] = "bar"
	} else {
		flag["defaultVariant"] = "foo"
	}
	return d.writeMerged()
}

// issueServerCert writes a server certificate for 127.0.0.1 and localhost, issued by
// the testbed's CA (ssl/custom-root-cert.crt with ssl/custom-ca.key), as the testbed
// image's /ssl/server-cert.pem. The files are not in the testbed data, so they are
// made here.
func issueServerCert(testbed, dir string) (certPath, keyPath string, err error) {
	ca, caKey, err := testbedCA(testbed)
	if err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// testbedCA reads the testbed's root certificate and its key.
func testbedCA(testbed string) (*x509.Certificate, any, error) {
	certPEM, err := os.ReadFile(filepath.Join(testbed, "ssl", "custom-root-cert.crt"))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(testbed, "ssl", "custom-ca.key"))
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("testbed CA files are not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// testbedRoots is a pool holding only the testbed CA, as a provider configured with
// certPath=custom-root-cert.crt trusts.
func testbedRoots(testbed string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(filepath.Join(testbed, "ssl", "custom-root-cert.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, errors.New("custom-root-cert.crt holds no certificate")
	}
	return pool, nil
}

// connect builds the clients a provider of each mode uses: an HTTP/2 client for the
// evaluation listener (h2c, TLS with ALPN, or h2c over the unix socket) and a grpc-go
// connection to the sync listener.
func (d *daemon) connect() error {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	grpcTarget := d.syncAddr
	grpcCreds := insecure.NewCredentials()
	d.evalURL = "http://" + d.evalAddr
	switch d.config {
	case configSSL:
		roots, err := testbedRoots(d.testbed)
		if err != nil {
			return err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		tr.Protocols.SetHTTP2(true)
		grpcCreds = credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
		d.evalURL = "https://" + d.evalAddr
	case configSocket:
		tr.Protocols.SetUnencryptedHTTP2(true)
		socket := d.evalAddr
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", socket)
		}
		d.evalURL = "http://localhost"
		grpcTarget = "unix://" + d.syncAddr
	default:
		tr.Protocols.SetUnencryptedHTTP2(true) // gRPC over h2c with prior knowledge
	}
	d.httpClient = &http.Client{Transport: tr}
	conn, err := grpc.NewClient(grpcTarget, grpc.WithTransportCredentials(grpcCreds))
	if err != nil {
		return fmt.Errorf("sync client: %w", err)
	}
	d.grpcConn = conn
	return nil
}

// waitReady polls /readyz on the management listener until 200, as the launchpad does.
func waitReady(mgmtAddr string) error {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get("http://" + mgmtAddr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("/readyz not 200 within %s: %w", startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not a synchronisation
	}
}

// logTail keeps the daemon's last log lines, for failure reports.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

// maxLogLines bounds the kept log.
const maxLogLines = 200

// scan reads the JSON log until EOF. Once every listener has logged "serving" with its
// address, it sends the addresses (listener name → address) on addrs.
func (l *logTail) scan(r io.Reader, addrs chan<- map[string]string) {
	want := map[string]bool{"evaluation": true, "sync": true, "management": true, "ofrep": true}
	found := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		l.mu.Lock()
		l.lines = append(l.lines, line)
		if len(l.lines) > maxLogLines {
			l.lines = l.lines[len(l.lines)-maxLogLines:]
		}
		l.mu.Unlock()
		var entry struct {
			Message, Listener, Address string
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Message != "serving" || !want[entry.Listener] {
			continue
		}
		found[entry.Listener] = entry.Address
		if len(found) == len(want) && addrs != nil {
			addrs <- found
			addrs = nil // report once
		}
	}
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
