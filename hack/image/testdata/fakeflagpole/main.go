// Command fakeflagpole stands in for flagpole in the image tool's tests: a small
// static Go binary that answers `version` as flagpole does, and links one
// dependency module so that its build information (and SBOM) lists one.
package main

import (
	"fmt"
	"os"

	"github.com/opencontainers/go-digest"
)

var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Printf("flagpole %s (commit test, built test)\n", version)
	}
	if len(os.Args) > 2 && os.Args[1] == "digest" {
		fmt.Println(digest.FromString(os.Args[2]))
	}
}
