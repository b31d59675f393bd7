package eval

import (
	"strconv"
	"strings"
)

// Problem is one finding about a flag document or a rule: where it is (a JSON path
// such as `flags.new-ui.targeting.if[1].fractional[2][1]`) and what is wrong there.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is a list of problems that is also an error, one problem per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Key appends an object member to a JSON path: `.name`, or `["a.b"]` when the name
// would be ambiguous in dotted form.
func Key(path, name string) string {
	plain := name != ""
	for _, r := range name {
		if r == '.' || r == '[' || r == ']' || r == '"' || r == ' ' {
			plain = false
			break
		}
	}
	if !plain {
		return path + "[" + strconv.Quote(name) + "]"
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

// Index appends an array index to a JSON path: `[3]`.
func Index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
