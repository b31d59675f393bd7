//go:build !goexperiment.jsonv2

package jsonwire

// invalidUTF8 is what encoding/json writes for a byte that is not valid UTF-8 when it is
// its original implementation (Go 1.26 and older, or GOEXPERIMENT=nojsonv2): the
// escaped replacement character.
const invalidUTF8 = `\ufffd`
