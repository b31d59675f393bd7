package webhook

import (
	"encoding/json"
	"strconv"
	"strings"
)

// patch builds a JSONPatch of explicit "add"/"replace" operations. The pod is never
// re-encoded from Go types: fields the API server knows and this binary's
// k8s.io/api does not (a newer Kubernetes) are left untouched, which a diff of
// re-encoded objects would silently remove.
type patch []patchOp

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

func (p *patch) add(path string, value any) { *p = append(*p, patchOp{"add", path, value}) }

func (p *patch) replace(path string, value any) { *p = append(*p, patchOp{"replace", path, value}) }

// bytes encodes the patch; nil when it is empty.
func (p patch) bytes() ([]byte, error) {
	if len(p) == 0 {
		return nil, nil
	}
	return json.Marshal(p)
}

// pointer joins JSON Pointer (RFC 6901) tokens, escaping "~" and "/".
func pointer(tokens ...any) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		switch v := t.(type) {
		case int:
			b.WriteString(strconv.Itoa(v))
		case string:
			if !strings.ContainsAny(v, "~/") {
				b.WriteString(v)
				continue
			}
			for _, r := range v {
				switch r {
				case '~':
					b.WriteString("~0")
				case '/':
					b.WriteString("~1")
				default:
					b.WriteRune(r)
				}
			}
		}
	}
	return b.String()
}
