package webhook

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ff is a FeatureFlag manifest around the given spec.flagSpec (YAML, indented by 4).
func ff(flagSpec string) string {
	return "apiVersion: core.openfeature.dev/v1beta1\nkind: FeatureFlag\nmetadata:\n  name: flags\n  namespace: team-a\nspec:\n  flagSpec:\n" + flagSpec
}

// suits are the variants of OFO's unit cases.
const suits = `
        variants: {clubs: clubs, diamonds: diamonds, hearts: hearts, spades: spades, none: none}
        defaultVariant: none`

func TestValidateFeatureFlag(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		want     Decision
	}{
		// OFO's unit cases (internal/webhook/featureflag_webhook_test.go).
		{name: "OFO happy path", manifest: ff(`
    flags:
      fractional:
        state: ENABLED` + suits + `
        targeting:
          fractional: [[clubs, 25], [diamonds, 25], [hearts, 25], [spades, 25]]`),
			want: allowed()},
		{name: "OFO happy path no targeting", manifest: ff(`
    flags:
      fractional:
        state: ENABLED` + suits),
			want: allowed()},
		{name: "OFO fractional invalid bucketing", manifest: ff(`
    flags:
      fractional-invalid-bucketing:
        state: ENABLED` + suits + `
        targeting:
          fractional: [invalid, [clubs, 25], [diamonds, 25], [hearts, 25], [spades, 25]]`),
			want: denied(nil,
				`spec.flagSpec.flags.fractional-invalid-bucketing.targeting.fractional[0]: the bucketing key must be a rule such as {"var": "email"}, not a string: every user would land in the same bucket`)},
		{name: "OFO empty variants", manifest: ff(`
    flags:
      fractional-invalid-bucketing:
        state: ENABLED
        variants: {}
        defaultVariant: "on"`),
			want: denied(nil,
				"spec.flagSpec.flags.fractional-invalid-bucketing.variants: must have at least one variant")},
		{name: "OFO fractional invalid weighting", manifest: ff(`
    flags:
      fractional-invalid-weighting:
        state: ENABLED` + suits + `
        targeting:
          fractional: [[clubs, 25], [diamonds, "25"], [hearts, 25], [spades, 25]]`),
			want: denied(nil,
				`spec.flagSpec.flags.fractional-invalid-weighting.targeting.fractional[1][1]: weight must be a non-negative integer, got "25"`)},
		{name: "OFO invalid ends_with param", manifest: ff(`
    flags:
      invalid-ends-with-param:
        state: ENABLED
        variants: {prefix: 1, postfix: 2}
        defaultVariant: none
        targeting:
          if: [{ends_with: [{var: id}, 0]}, postfix, prefix]`),
			want: denied(nil,
				`spec.flagSpec.flags.invalid-ends-with-param.defaultVariant: "none" is not one of the variants ("postfix", "prefix")`,
				`spec.flagSpec.flags.invalid-ends-with-param.targeting.if[0].ends_with[1]: must be a string or a rule, not a number: the operator would always return null`)},
		// OFO's e2e validate-featureflag-create and -update (chainsaw).
		{name: "OFO e2e good empty", manifest: ff(`
    flags:
      fibAlgo:
        variants: {recursive: recursive, memo: memo, loop: loop, binet: binet}
        defaultVariant: recursive
        state: ENABLED`),
			want: allowed()},
		{name: "OFO e2e bad", manifest: ff(`
    flags:
      fibAlgo:
        variants: {recursive: recursive, memo: memo, loop: loop, binet: binet}
        defaultVariant: recursive
        state: ENABLED
        targeting:
          fractional: [invalid, [clubs, 25], [diamonds, 25], [hearts, 25], [spades, 25]]`),
			want: denied(nil,
				`spec.flagSpec.flags.fibAlgo.targeting.fractional[0]: the bucketing key must be a rule such as {"var": "email"}, not a string: every user would land in the same bucket`)},
		{name: "OFO e2e good refers to an evaluator it does not define (OFO admits it; every evaluation would fail)", manifest: ff(`
    flags:
      fibAlgo:
        variants: {recursive: recursive, memo: memo, loop: loop, binet: binet}
        defaultVariant: recursive
        state: ENABLED
        targeting:
          if: [{$ref: emailWithFaas}, binet, null]`),
			want: denied(nil,
				`spec.flagSpec.flags.fibAlgo.targeting.if[0].$ref: no evaluator named "emailWithFaas" in $evaluators`)},
		{name: "OFO e2e good with the evaluator it refers to", manifest: ff(`
    $evaluators:
      emailWithFaas: {in: ["@faas.com", {var: email}]}
    flags:
      fibAlgo:
        variants: {recursive: recursive, memo: memo, loop: loop, binet: binet}
        defaultVariant: recursive
        state: ENABLED
        targeting:
          if: [{$ref: emailWithFaas}, binet, null]`),
			want: allowed()},
		// What OFO does not check: $evaluators and the flag-set metadata.
		{name: "an invalid shared evaluator", manifest: ff(`
    $evaluators:
      beta: {starts_with: [{var: email}]}
    flags: {}`),
			want: denied(nil,
				`spec.flagSpec.$evaluators.beta.starts_with: "starts_with" takes exactly 2 arguments, got 1`)},
		{name: "$ref cycle", manifest: ff(`
    $evaluators:
      a: {$ref: b}
      b: {$ref: a}
    flags:
      f:
        state: ENABLED
        variants: {"on": true}
        targeting: {$ref: a}`),
			want: denied(nil,
				"spec.flagSpec.$evaluators.a: $ref cycle: a -> b -> a")},
		{name: "flag-set metadata of the wrong type", manifest: ff(`
    metadata: {flagSetId: 7, nested: {a: 1}}
    flags: {}`),
			want: denied(nil,
				"spec.flagSpec.metadata.flagSetId: must be a string, got number",
				"spec.flagSpec.metadata.nested: metadata values must be strings, numbers or booleans, got object")},
		{name: "every problem, one per line", manifest: ff(`
    flags:
      a:
        state: enabled
        variants: {"on": true, "off": "no"}
        defaultVariant: maybe
      b:
        state: ENABLED
        variants: {"on": true}
        targeting: {sem_ver: [{var: v}, ">=", "1.2"]}`),
			want: denied(nil,
				`spec.flagSpec.flags.a.state: must be "ENABLED" or "DISABLED", got "enabled" (flagd treats it as enabled)`,
				`spec.flagSpec.flags.a.variants.on: is a boolean, but variant "off" is a string: all variants of a flag must have one type`,
				`spec.flagSpec.flags.b.targeting.sem_ver[2]: "1.2" is not a semantic version (MAJOR.MINOR.PATCH[-pre][+build])`)},
		{name: "empty flags: admitted (removes every flag)", manifest: ff(`
    flags: {}`),
			want: allowed()},
		{name: "no flags", manifest: ff(`
    metadata: {flagSetId: web}`),
			want: denied(nil, "spec.flagSpec.flags: is required (an empty object removes every flag)")},
		{name: "no flagSpec", manifest: "kind: FeatureFlag\nspec: {}", want: denied(nil, "spec.flagSpec: is required")},
		{name: "no spec", manifest: "kind: FeatureFlag\nmetadata: {name: x}", want: denied(nil, "spec: is required")},
		{name: "null targeting is only a warning", manifest: ff(`
    flags:
      a: {state: ENABLED, variants: {"on": true}, defaultVariant: "on", targeting: null}`),
			want: allowed("spec.flagSpec.flags.a.targeting: is null; treated as no targeting (flagd reports DEFAULT instead of STATIC here)")},
	}
	admit := ValidateFeatureFlag()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := run(admit, create("FeatureFlag", object(t, tc.manifest)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
