package eval

// EvaluateRule compiles a bare JsonLogic rule leniently and runs it at the root scope
// with ctx as the evaluation context (flag key "k"). It exists for the external tests
// (the differential test against the reference engine): result is the decoded-JSON
// form of what the rule returned; failed reports a runtime failure, which a flag
// evaluation turns into PARSE_ERROR. A rule that does not compile counts as failed.
func EvaluateRule(rule any, ctx map[string]any) (result any, failed bool) {
	r, _, errs := CompileRule(rule, "", false)
	if len(errs) > 0 || r == nil {
		return nil, true
	}
	e := &env{data: ctx, root: true, ctx: ctx, flagKey: "k"}
	v := r.root(e)
	return v.toAny(), e.failure != ""
}
