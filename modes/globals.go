// Package modes holds one file per flagpole subcommand. Each command only wires the
// parts of the other packages together from its flags and runs them until the
// context ends; the logic lives in those packages.
package modes

import (
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
)

// Globals are the flags every mode accepts.
type Globals struct {
	LogLevel  string `help:"Log level: trace, debug, info, warn, error." default:"info" enum:"trace,debug,info,warn,error" env:"FLAGPOLE_LOG_LEVEL"`
	LogFormat string `help:"Log format: json or console." default:"json" enum:"json,console" env:"FLAGPOLE_LOG_FORMAT"`
}

// Logger builds the process logger from the global flags.
func (g Globals) Logger(w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(g.LogLevel)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("--log-level: %w", err)
	}
	if g.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// BuildInfo is the version information the linker sets in main.
type BuildInfo struct {
	Version, Commit, Date string
}

// Stdio are the standard streams, bound so that tests can replace them.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// ExitError ends the process with Code without printing anything more (the command
// has already reported what went wrong).
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }
