package ofrep

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// etagOf is the strong entity tag of a response body: the quoted, unpadded
// base64url SHA-256 of the bytes. Hashing the body (not the flag configuration) keeps
// the tag correct when the answer depends on the request's context, the selector or
// the clock ($flagd.timestamp).
func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	var b [2 + 43]byte // base64.RawURLEncoding.EncodedLen(sha256.Size) == 43
	b[0] = '"'
	base64.RawURLEncoding.Encode(b[1:44], sum[:])
	b[44] = '"'
	return string(b[:])
}

// noneMatch reports whether If-None-Match field values select the representation
// tagged etag (RFC 9110 §13.1.2): "*" matches any current representation; otherwise
// the field is a comma-separated list of entity tags compared weakly (a W/ prefix on
// either side is ignored). A comma inside a quoted tag belongs to the tag. Unquoted
// tags (sent by lenient clients) are accepted too.
func noneMatch(fields []string, etag string) bool {
	opaque := strings.TrimPrefix(etag, "W/")
	for _, field := range fields {
		for len(field) > 0 {
			var tag string
			tag, field = nextTag(field)
			if tag == "*" {
				return true
			}
			tag = strings.TrimPrefix(tag, "W/")
			if tag == opaque || (len(tag) > 0 && tag[0] != '"' && `"`+tag+`"` == opaque) {
				return true
			}
		}
	}
	return false
}

// nextTag splits the first entity tag off a list, skipping whitespace and empty
// elements, and returns it with the rest of the list.
func nextTag(list string) (tag, rest string) {
	list = strings.TrimLeft(list, " \t,")
	quoted := false
	for i := range len(list) {
		switch list[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				return strings.TrimRight(list[:i], " \t"), list[i+1:]
			}
		}
	}
	return strings.TrimRight(list, " \t"), ""
}
