// Command fakeflagpole stands in for flagpole in the image tool's tests: a small
// static Go binary that answers `version` as flagpole does.
package main

import (
	"fmt"
	"os"
)

var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Printf("flagpole %s (commit test, built test)\n", version)
	}
}
