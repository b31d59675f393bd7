//go:build goexperiment.jsonv2

package jsonwire

// invalidUTF8 is what encoding/json writes for a byte that is not valid UTF-8 when it is
// implemented by encoding/json/v2 (the default from Go 1.27, the build's release; the
// same build constraint selects encoding/json's implementation): the replacement
// character U+FFFD itself, unescaped.
const invalidUTF8 = "\uFFFD"
