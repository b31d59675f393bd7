package flagdoc

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

func TestEncodeIsWhatFlagdLoads(t *testing.T) {
	spec := &v1beta1.FlagSpec{
		Flags: map[string]v1beta1.Flag{"new-ui": {State: "ENABLED", Variants: json.RawMessage(`{"on":true,"off":false}`),
			DefaultVariant: "off", Targeting: json.RawMessage(`{"if":[{"$ref":"beta"},"on",null]}`),
			Metadata: json.RawMessage(`{"owner":"web"}`)}},
		Evaluators: json.RawMessage(`{"beta":{"in":["@beta.example",{"var":"email"}]}}`),
		Metadata:   json.RawMessage(`{"flagSetId":"shop"}`),
	}
	data, err := Encode(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"flags":{"new-ui":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",` +
		`"targeting":{"if":[{"$ref":"beta"},"on",null]},"metadata":{"owner":"web"}}},` +
		`"$evaluators":{"beta":{"in":["@beta.example",{"var":"email"}]}},"metadata":{"flagSetId":"shop"}}`
	if string(data) != want {
		t.Errorf("document\n got %s\nwant %s", data, want)
	}
	set, err := flags.Parse(data, flags.Strict)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Flags) != 1 || set.Flags[0].Metadata["flagSetId"] != "shop" {
		t.Errorf("parsed %d flags, metadata %v", len(set.Flags), set.Flags[0].Metadata)
	}
	if Validate(spec) != nil {
		t.Errorf("valid spec: %v", Validate(spec))
	}
}

func TestValidateNamesPathsUnderTheSpec(t *testing.T) {
	spec := &v1beta1.FlagSpec{Flags: map[string]v1beta1.Flag{
		"a": {State: "ENABLED", Variants: json.RawMessage(`{"on":true}`), DefaultVariant: "missing"},
		"b": {State: "ENABLED", Variants: json.RawMessage(`{"on":true}`), DefaultVariant: "on",
			Targeting: json.RawMessage(`{"fractional":[["on","25"]]}`)},
	}}
	want := eval.Problems{
		{Path: "spec.flagSpec.flags.a.defaultVariant", Message: `"missing" is not one of the variants ("on")`},
		{Path: "spec.flagSpec.flags.b.targeting.fractional[0][1]", Message: `weight must be a non-negative integer, got "25"`},
	}
	if diff := cmp.Diff(want, Validate(spec)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if got := underSpec(`["a.b"]`); got != `spec.flagSpec["a.b"]` {
		t.Errorf("bracketed path: %s", got)
	}
}

func TestCheckReturnsStrictWarningsAndTheSet(t *testing.T) {
	spec := &v1beta1.FlagSpec{Flags: map[string]v1beta1.Flag{
		"a": {State: "ENABLED", Variants: json.RawMessage(`{"on":true}`), DefaultVariant: "on", Targeting: json.RawMessage(`null`)},
	}}
	problems, warnings, set := Check(spec)
	if problems != nil || set == nil || len(set.Flags) != 1 {
		t.Fatalf("problems %v, set %v", problems, set)
	}
	want := eval.Problems{{Path: "spec.flagSpec.flags.a.targeting", Message: warnings[0].Message}}
	if diff := cmp.Diff(want, warnings); diff != "" || warnings[0].Message == "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	spec.Flags["a"] = v1beta1.Flag{State: "ENABLED", Variants: json.RawMessage(`{"on":true}`), DefaultVariant: "off"}
	if problems, warnings, set := Check(spec); len(problems) != 1 || warnings != nil || set != nil {
		t.Errorf("invalid: problems %v, warnings %v, set %v", problems, warnings, set)
	}
}
