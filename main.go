// Command flagpole is the OpenFeature Operator and flagd in one binary: each mode is
// a subcommand (see modes/).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"go.opentelemetry.io/otel"

	"github.com/flagpole-dev/flagpole/modes"
	"github.com/flagpole-dev/flagpole/telemetry"
)

// Build information, set by the linker (-X main.version=... -X main.commit=... -X main.date=...).
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

// cli is the root command: global flags and one field per mode.
type cli struct {
	Globals modes.Globals `embed:""`

	Flagd      modes.FlagdCmd      `cmd:"" help:"Run as flagd: serve flags over gRPC, Connect, OFREP and the sync API."`
	Start      modes.FlagdStartCmd `cmd:"" hidden:"" help:"Alias of \"flagd start\", so flagd's and the OpenFeature Operator's pod args work unchanged."`
	FlagdProxy modes.FlagdProxyCmd `cmd:"" name:"flagd-proxy" help:"Run as flagd-proxy: serve FeatureFlags to many flagd sidecars over the sync API, checking who asks."`
	Operator   modes.OperatorCmd   `cmd:"" help:"Run the OpenFeature Operator: admission webhooks and reconcilers in one process (the default deployment)."`
	Webhook    modes.WebhookCmd    `cmd:"" help:"Run the admission webhooks only: sidecar injection and validation of the core.openfeature.dev kinds."`
	Controller modes.ControllerCmd `cmd:"" help:"Run the reconcilers only (Flagd, FeatureFlag, FeatureFlagSource), on the elected leader."`
	Version    modes.VersionCmd    `cmd:"" help:"Print the version and build information."`
	Debug      modes.DebugCmd      `cmd:"" help:"Answer \"what would happen\" offline: evaluate flags, validate flag files."`
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root, globals := rootFor(args)
	parser, err := kong.New(root,
		kong.Name("flagpole"),
		kong.Description("The OpenFeature Operator and flagd in one binary."),
		kong.UsageOnError(),
		kong.Vars{"version": version},
		kong.Resolvers(modes.ConfigResolver()),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flagpole: %v\nRun \"flagpole --help\" for usage.\n", err)
		return 2
	}
	logger, err := globals.Logger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flagpole:", err)
		return 2
	}
	// the OpenTelemetry SDK's error handler is process-global: set once, here
	otel.SetErrorHandler(telemetry.ErrorHandler(logger))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	build := modes.BuildInfo{Version: version, Commit: commit, Date: date}
	if err := kctx.Run(logger, build, modes.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}); err != nil {
		if exit, ok := errors.AsType[modes.ExitError](err); ok {
			return exit.Code
		}
		fmt.Fprintln(os.Stderr, "flagpole:", err)
		return 1
	}
	return 0
}

// rootFor returns the root kong builds its model from, and its global flags. Kong
// reads the struct tags of every command it is given, which for all of flagpole's
// commands costs more than the rest of the sidecar's start-up before it reads its
// flags (7 ms and 2 MB warm, several times that cold): when the first argument names
// a command, the root holds the global flags and that command alone. Otherwise (no
// argument, a flag first, an unknown command) it is the whole cli, so that help and
// errors list every command.
func rootFor(args []string) (root any, globals *modes.Globals) {
	full := reflect.TypeFor[cli]()
	if len(args) > 0 {
		for i := 1; i < full.NumField(); i++ {
			if f := full.Field(i); commandName(f) == args[0] {
				one := reflect.New(reflect.StructOf([]reflect.StructField{full.Field(0), f}))
				return one.Interface(), one.Elem().Field(0).Addr().Interface().(*modes.Globals)
			}
		}
	}
	var c cli
	return &c, &c.Globals
}

// commandName is the name kong gives the command of a cli field: its name tag, or
// the field name in lower case (every field without a tag is one word).
func commandName(f reflect.StructField) string {
	if name := f.Tag.Get("name"); name != "" {
		return name
	}
	return strings.ToLower(f.Name)
}
