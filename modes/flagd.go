package modes

import (
	"github.com/alecthomas/kong"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
)

// FlagdCmd groups the flagd-compatible commands.
type FlagdCmd struct {
	Start FlagdStartCmd `cmd:"" help:"Serve flags like flagd: evaluation (gRPC/Connect), sync, OFREP and management listeners."`
}

// FlagdStartCmd is flagd's "start" command: the same flags, short names and FLAGD_*
// environment variables, so OpenFeature Operator pod specs run unchanged. The
// options are the sidecar contract, startconfig.Config, which the webhook renders.
type FlagdStartCmd struct {
	startconfig.Config
}

// ConfigResolver resolves flags from the file named by --config (flagd's precedence:
// flag > FLAGD_* variable > file > default).
func ConfigResolver() kong.Resolver { return startconfig.ConfigResolver() }
