package store

import (
	"fmt"
	"strings"
)

// SelectorKind is what a selector filters on.
type SelectorKind uint8

// The selector kinds of flagd's selector grammar.
const (
	SelectAll       SelectorKind = iota // no selector: every flag, highest priority per key
	SelectFlagSetID                     // flagSetId=<id>; an empty id selects flags without a flag set
	SelectSource                        // source=<uri>, or a bare value (legacy)
)

// Selector filters the flags a request sees. The zero value selects everything.
type Selector struct {
	Kind  SelectorKind
	Value string
}

// ParseSelector parses flagd's selector grammar: "" (all), "flagSetId=<id>",
// "source=<uri>", or a bare value meaning source=<value>. Only one key=value pair is
// allowed; the value is everything after the first "=".
func ParseSelector(s string) (Selector, error) {
	if s == "" {
		return Selector{}, nil
	}
	key, value, found := strings.Cut(s, "=")
	if !found {
		return Selector{Kind: SelectSource, Value: s}, nil
	}
	switch key {
	case "flagSetId":
		return Selector{Kind: SelectFlagSetID, Value: value}, nil
	case "source":
		return Selector{Kind: SelectSource, Value: value}, nil
	}
	return Selector{}, fmt.Errorf("invalid selector key %q, valid keys: \"flagSetId\", \"source\"", key)
}

// String renders the selector in flagd's grammar, a source redacted (Redact): the
// form in which a selector leaves the process (logs, metric labels).
func (s Selector) String() string {
	switch s.Kind {
	case SelectFlagSetID:
		return "flagSetId=" + s.Value
	case SelectSource:
		return "source=" + Redact(s.Value)
	}
	return ""
}

// Reflection is the metadata flagd adds to responses for a selector:
// {"flagSetId": id} or {"source": uri}, empty without a selector. The source is
// redacted (Redact), as everywhere a source name leaves the process.
func (s Selector) Reflection() map[string]any {
	switch s.Kind {
	case SelectFlagSetID:
		return map[string]any{"flagSetId": s.Value}
	case SelectSource:
		return map[string]any{"source": Redact(s.Value)}
	}
	return map[string]any{}
}
