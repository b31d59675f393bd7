package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

// writeVolume writes a serving certificate (and its CA) the way the kubelet
// populates a Secret volume: files in a timestamped directory, `..data` a symlink
// to it, tls.crt and tls.key symlinks through `..data`. A later call swaps
// `..data` to a new directory atomically. It returns the CA (PEM) and the serial.
func writeVolume(t *testing.T, dir, stamp string, now time.Time, lifetime time.Duration) (caPEM []byte, serial string) {
	t.Helper()
	ca, err := newCA(now.Add(-lifetime), 10*lifetime)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServing(now, lifetime, ca.cert, ca.key, testHosts())
	if err != nil {
		t.Fatal(err)
	}
	ts := filepath.Join(dir, "..2026_"+stamp)
	if err := os.Mkdir(ts, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{keyCert: s.certPEM, keyKey: s.keyPEM, keyCACert: ca.certPEM} {
		if err := os.WriteFile(filepath.Join(ts, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{keyCert, keyKey, keyCACert} {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			t.Fatal(err)
		}
	}
	return ca.certPEM, s.cert.SerialNumber.Text(16)
}

// TestMountedReloadsOnDataSwap serves a mounted Secret volume, rotates it with a
// `..data` swap, and sees the new certificate on the next handshakes without a
// restart; Healthy and the expiry metric follow.
func TestMountedReloadsOnDataSwap(t *testing.T) {
	dir := t.TempDir()
	clk := testingclock.NewFakeClock(time.Now())
	ca1, s1 := writeVolume(t, dir, "first", clk.Now(), 24*time.Hour)
	src, err := newSource(Options{CertDir: dir, Log: testLogger(t)}, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheusRegistry(t, src)
	runSource(t, src)
	if err := src.Healthy(); err != nil {
		t.Fatalf("not healthy with a valid mounted certificate: %v", err)
	}
	if got := mustHandshake(t, src, ca1, clk.Now()); got != s1 {
		t.Fatalf("serving %s, want %s", got, s1)
	}
	first := expiryMetric(t, reg)

	ca2, s2 := writeVolume(t, dir, "second", clk.Now(), 48*time.Hour)
	eventually(t, "the new certificate served", func() bool {
		clk.Step(defaultMountedRecheck) // the poll; handshakes also check, at most once a second
		c, err := handshake(src, ca2, testServerNames[0], clk.Now())
		return err == nil && c.SerialNumber.Text(16) == s2
	})
	if got := mustHandshake(t, src, ca2, clk.Now()); got != s2 {
		t.Errorf("serving %s after the swap, want %s", got, s2)
	}
	if got := expiryMetric(t, reg); got <= first {
		t.Errorf("expiry metric %v after the swap, want later than %v", got, first)
	}
}

// TestMountedHealth: an expired mounted certificate is served (the client decides)
// but not healthy; a directory without the files is refused at start with the
// flag to fix.
func TestMountedHealth(t *testing.T) {
	dir := t.TempDir()
	clk := testingclock.NewFakeClock(time.Now())
	writeVolume(t, dir, "old", clk.Now().Add(-48*time.Hour), 24*time.Hour)
	src, err := newSource(Options{CertDir: dir, Log: testLogger(t)}, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Healthy(); err == nil || !strings.Contains(err.Error(), "the serving certificate expired at") {
		t.Errorf("Healthy() = %v, want an expired certificate", err)
	}
	if src.Ready() {
		t.Error("ready with an expired certificate")
	}
	_, err = New(Options{CertDir: t.TempDir()})
	if err == nil || !containsAll(err.Error(), "--cert-dir", "tls.crt", "no such file") {
		t.Errorf("New with an empty directory: %v", err)
	}
}
