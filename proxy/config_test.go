package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestArgsRoundTrip: every option rendered by Args parses back to the same
// configuration (the operator renders the Deployment's args, the binary parses
// them), the defaults included.
func TestArgsRoundTrip(t *testing.T) {
	all := Config{Port: 9015, ManagementPort: 9016, BindAddress: "0.0.0.0", Debug: true,
		ServerCertPath: "/tls/tls.crt", ServerKeyPath: "/tls/tls.key", Auth: AuthNone, TokenAudience: "my-proxy",
		TokenCacheTTL: time.Minute, AccessCacheTTL: 10 * time.Second, DeniedCacheTTL: time.Second, AuthCacheSize: 5,
		MaxStreams: 7, KubeQPS: 12.5, KubeBurst: 30}
	for name, c := range map[string]Config{"defaults": DefaultConfig(), "every option": all} {
		t.Run(name, func(t *testing.T) {
			args, err := c.Args()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(args)
			if err != nil {
				t.Fatalf("Parse(%q): %v", args, err)
			}
			if diff := cmp.Diff(c, *got); diff != "" {
				t.Errorf("Parse(Args()) (-want +got):\n%s\nargs %q", diff, args)
			}
		})
	}
	args, _ := DefaultConfig().Args()
	if want := "flagd-proxy start --port 8015 --management-port 8016"; strings.Join(args, " ") != want {
		t.Errorf("default args %q, want %q (the port always passed: OFO forgets it)", args, want)
	}
}

func TestConfigRefusals(t *testing.T) {
	if _, err := (Config{Kubeconfig: "/k"}).Args(); err == nil {
		t.Error("Args with --kubeconfig")
	}
	for _, tc := range []struct {
		args    string
		wantErr string
	}{
		{"--server-cert-path /c", "--server-cert-path and --server-key-path must be given together"},
		{"--port 9000 --management-port 9000", "--port and --management-port are both 9000"},
		{"--auth maybe", `--auth must be one of "serviceaccount","none"`},
		{"--token-audience=", "--token-audience must not be empty"},
		{"--access-cache-ttl 0s", "must be positive"},
		{"--max-streams 0", "--auth-cache-size and --max-streams must be at least 1"},
	} {
		_, err := Parse(append(append([]string(nil), Command...), strings.Fields(tc.args)...))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want it to contain %q", tc.args, err, tc.wantErr)
		}
	}
}
