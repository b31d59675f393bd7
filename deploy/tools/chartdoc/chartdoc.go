// Package chartdoc writes the values table of the chart's README from the
// comments of values.yaml: a key whose comment starts with "-- " is documented
// (with its default, as JSON); a mapping without such a comment is walked into.
// A value with no description is an error, so every value is documented.
package chartdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Markers delimit the generated table in README.md.
const (
	Begin = "<!-- values:begin (make chart-docs) -->"
	End   = "<!-- values:end -->"
)

// Value is one documented value.
type Value struct {
	Key, Default, Description string
}

// Values reads the documented values of values.yaml, in file order.
func Values(valuesYAML []byte) ([]Value, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(valuesYAML, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml: want a mapping")
	}
	var out []Value
	var errs []error
	walk(doc.Content[0], "", &out, &errs)
	return out, errors.Join(errs...)
}

func walk(m *yaml.Node, prefix string, out *[]Value, errs *[]error) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		desc, ok := description(k.HeadComment)
		switch {
		case ok:
			def, err := jsonOf(v)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("%s: %w", key, err))
			}
			*out = append(*out, Value{Key: key, Default: def, Description: desc})
		case v.Kind == yaml.MappingNode && len(v.Content) > 0:
			walk(v, key+".", out, errs)
		default:
			*errs = append(*errs, fmt.Errorf("values.yaml: %s has no description (a comment starting with \"# -- \")", key))
		}
	}
}

// description returns the text of a "# -- ..." comment block (the lines from the
// "-- " line on), joined into one line.
func description(comment string) (string, bool) {
	lines := strings.Split(comment, "\n")
	for i, l := range lines {
		t := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#"))
		if !strings.HasPrefix(t, "-- ") {
			continue
		}
		parts := []string{strings.TrimPrefix(t, "-- ")}
		for _, more := range lines[i+1:] {
			parts = append(parts, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(more), "#")))
		}
		return strings.Join(parts, " "), true
	}
	return "", false
}

func jsonOf(n *yaml.Node) (string, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSpace(buf.String()), nil
}

// Table renders the values as a Markdown table.
func Table(values []Value) string {
	var b strings.Builder
	b.WriteString("| Key | Default | Description |\n|---|---|---|\n")
	for _, v := range values {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", v.Key, strings.ReplaceAll(v.Default, "|", `\|`), strings.ReplaceAll(v.Description, "|", `\|`))
	}
	return b.String()
}

// Update returns readme with the table between the markers replaced.
func Update(readme []byte, table string) ([]byte, error) {
	s := string(readme)
	i, j := strings.Index(s, Begin), strings.Index(s, End)
	if i < 0 || j < i {
		return nil, fmt.Errorf("README.md: no %q ... %q markers", Begin, End)
	}
	return []byte(s[:i+len(Begin)] + "\n" + table + s[j:]), nil
}
