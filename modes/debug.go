package modes

// DebugCmd groups the offline commands: evaluate flags, validate flag files.
type DebugCmd struct {
	Eval     DebugEvalCmd     `cmd:"" help:"Evaluate flags from flag files, as flagd would."`
	Validate DebugValidateCmd `cmd:"" help:"Validate flag files strictly; exit 1 listing every problem."`
}

// DebugEvalCmd evaluates flags offline.
type DebugEvalCmd struct{}

// Run is implemented in debug_eval.go.
func (DebugEvalCmd) Run() error { return nil }

// DebugValidateCmd validates flag files.
type DebugValidateCmd struct{}

// Run is implemented in debug_validate.go.
func (DebugValidateCmd) Run() error { return nil }
