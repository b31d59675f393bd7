// Package flaggen generates flagd flag documents for load tests: a deterministic,
// realistic mix of flag shapes (static booleans, string flags targeting on email and
// country, fractional rollouts, sem_ver, $ref evaluators, numbers, objects, disabled
// flags) plus the fixed flags the load harness workloads ask for.
package flaggen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Keys and expectations of the flags every generated document holds, whatever its size.
const (
	// StaticBoolKey is an enabled boolean flag without targeting: true, reason STATIC.
	StaticBoolKey = "static-bool"
	// TargetingBoolKey is a boolean flag whose targeting answers true (reason
	// TARGETING_MATCH) for an email ending in TargetingEmailSuffix and false otherwise.
	TargetingBoolKey = "targeted-bool"
	// TargetingEmailSuffix is the email suffix TargetingBoolKey matches.
	TargetingEmailSuffix = "@example.com"
	// FlagSetID is the flag-set id of the document (flag-set metadata).
	FlagSetID = "load-test"
)

// MinFlags is the smallest document Generate builds: the two fixed flags.
const MinFlags = 2

// generated returns the i-th generated flag and its kind (part of its key). The mix,
// in twentieths: 6 static booleans, 4 string flags targeting on email/country, 3
// fractional rollouts, 2 sem_ver, 2 $ref evaluators, 1 number, 1 object, 1 disabled.
func generated(i int) (string, map[string]any) {
	switch r := i % 20; {
	case r < 6:
		return "bool", staticBool(i)
	case r < 8:
		return "email", stringEmail(i)
	case r < 10:
		return "country", stringCountry(i)
	case r < 13:
		return "rollout", fractional(i)
	case r < 15:
		return "semver", semVer(i)
	case r < 17:
		return "ref", refRule()
	case r < 18:
		return number(i)
	case r < 19:
		return "object", object(i)
	default:
		return "disabled", disabled()
	}
}

// evaluators are the shared rules generated $ref flags use.
func evaluators() map[string]any {
	return map[string]any{
		"is-staff": map[string]any{"ends_with": []any{map[string]any{"var": "email"}, "@corp.example"}},
		"in-eu": map[string]any{"in": []any{map[string]any{"var": "country"},
			[]any{"at", "be", "de", "dk", "es", "fi", "fr", "ie", "it", "nl", "pl", "pt", "se"}}},
		"beta-users": map[string]any{"in": []any{map[string]any{"var": "targetingKey"},
			[]any{"user-1", "user-2", "user-3", "user-5", "user-8", "user-13", "user-21"}}},
		"modern-app": map[string]any{"sem_ver": []any{map[string]any{"var": "version"}, ">=", "2.0.0"}},
	}
}

// Generate returns a JSON flag document with n flags (n >= MinFlags): StaticBoolKey,
// TargetingBoolKey and n-2 generated flags named flag-NNNN-<kind>. The output is the
// same for the same n.
func Generate(n int) ([]byte, error) {
	if n < MinFlags {
		return nil, fmt.Errorf("flaggen: %d flags requested, at least %d needed", n, MinFlags)
	}
	all := make(map[string]any, n)
	all[StaticBoolKey] = map[string]any{
		"state":          "ENABLED",
		"variants":       map[string]any{"on": true, "off": false},
		"defaultVariant": "on",
	}
	all[TargetingBoolKey] = map[string]any{
		"state":          "ENABLED",
		"variants":       map[string]any{"on": true, "off": false},
		"defaultVariant": "off",
		"targeting": map[string]any{"if": []any{
			map[string]any{"ends_with": []any{map[string]any{"var": "email"}, TargetingEmailSuffix}}, "on", "off"}},
		"metadata": map[string]any{"owner": "load-harness"},
	}
	width := max(len(strconv.Itoa(n-MinFlags)), 4)
	for i := range n - MinFlags {
		kind, f := generated(i)
		all[fmt.Sprintf("flag-%0*d-%s", width, i, kind)] = f
	}
	doc := map[string]any{
		"$schema":     "https://flagd.dev/schema/v0/flags.json",
		"metadata":    map[string]any{"flagSetId": FlagSetID, "version": "1"},
		"$evaluators": evaluators(),
		"flags":       all,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// boolVariants are the variants of generated boolean flags.
func boolVariants() map[string]any { return map[string]any{"on": true, "off": false} }

// staticBool is an enabled boolean without targeting; every third one has metadata.
func staticBool(i int) map[string]any {
	f := map[string]any{"state": "ENABLED", "variants": boolVariants(),
		"defaultVariant": []string{"on", "off"}[i%2]}
	if i%3 == 0 {
		f["metadata"] = map[string]any{"owner": "team-" + strconv.Itoa(i%7), "ticket": float64(1000 + i)}
	}
	return f
}

// stringEmail is a string flag targeting on the email domain.
func stringEmail(i int) map[string]any {
	return map[string]any{"state": "ENABLED",
		"variants":       map[string]any{"control": "control", "treatment": "treatment-" + strconv.Itoa(i), "internal": "internal"},
		"defaultVariant": "control",
		"targeting": map[string]any{"if": []any{
			map[string]any{"ends_with": []any{map[string]any{"var": "email"}, "@corp.example"}}, "internal",
			map[string]any{"ends_with": []any{map[string]any{"var": "email"}, "@partner-" + strconv.Itoa(i%5) + ".example"}}, "treatment",
			"control"}},
	}
}

// stringCountry is a string flag targeting on the country.
func stringCountry(i int) map[string]any {
	return map[string]any{"state": "ENABLED",
		"variants":       map[string]any{"eu": "eu-" + strconv.Itoa(i), "us": "us", "other": "other"},
		"defaultVariant": "other",
		"targeting": map[string]any{"if": []any{
			map[string]any{"in": []any{map[string]any{"var": "country"}, []any{"de", "fr", "nl", "it", "es"}}}, "eu",
			map[string]any{"==": []any{map[string]any{"var": "country"}, "us"}}, "us",
			nil}},
	}
}

// fractional is a 2- to 4-way rollout on the targeting key.
func fractional(i int) map[string]any {
	names := []string{"a", "b", "c", "d"}[:2+i%3]
	variants := map[string]any{}
	buckets := make([]any, 0, len(names))
	for j, name := range names {
		variants[name] = name + "-" + strconv.Itoa(i)
		buckets = append(buckets, []any{name, float64(10 + 10*j)})
	}
	return map[string]any{"state": "ENABLED", "variants": variants, "defaultVariant": "a",
		"targeting": map[string]any{"fractional": buckets}}
}

// semVer is a boolean flag gated on the app version.
func semVer(i int) map[string]any {
	return map[string]any{"state": "ENABLED", "variants": boolVariants(), "defaultVariant": "off",
		"targeting": map[string]any{"if": []any{
			map[string]any{"sem_ver": []any{map[string]any{"var": "version"}, ">=", fmt.Sprintf("2.%d.0", i%10)}}, "on", "off"}}}
}

// refRule combines shared evaluators with $ref.
func refRule() map[string]any {
	return map[string]any{"state": "ENABLED",
		"variants":       map[string]any{"staff": "staff", "beta": "beta", "eu": "eu", "none": "none"},
		"defaultVariant": "none",
		"targeting": map[string]any{"if": []any{
			map[string]any{"$ref": "is-staff"}, "staff",
			map[string]any{"and": []any{map[string]any{"$ref": "beta-users"}, map[string]any{"$ref": "modern-app"}}}, "beta",
			map[string]any{"$ref": "in-eu"}, "eu",
			"none"}},
	}
}

// number is an integer flag or a float flag, alternately.
func number(i int) (string, map[string]any) {
	if (i/20)%2 == 0 {
		return "int", map[string]any{"state": "ENABLED",
			"variants": map[string]any{"small": float64(10), "large": float64(100 + i)}, "defaultVariant": "small"}
	}
	return "float", map[string]any{"state": "ENABLED",
		"variants": map[string]any{"low": 0.05, "high": 0.25}, "defaultVariant": "low"}
}

// object is an object flag switched on the country.
func object(i int) map[string]any {
	return map[string]any{"state": "ENABLED",
		"variants": map[string]any{
			"v1": map[string]any{"provider": "acme", "retries": float64(1), "timeoutMs": float64(500 + i)},
			"v2": map[string]any{"provider": "acme", "retries": float64(3), "timeoutMs": float64(250)},
		},
		"defaultVariant": "v1",
		"targeting":      map[string]any{"if": []any{map[string]any{"$ref": "in-eu"}, "v2", nil}},
	}
}

// disabled is a disabled boolean flag.
func disabled() map[string]any {
	return map[string]any{"state": "DISABLED", "variants": boolVariants(), "defaultVariant": "on"}
}
