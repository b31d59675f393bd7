// Command floorserve is the load harness's floor server (package floor): flagd
// mode's listener stack around handlers that do no work.
//
//	floorserve -addr 127.0.0.1:9013 -tls-addr 127.0.0.1:9443 -cert tls.crt -key tls.key -socket /tmp/floor.sock
package main

import (
	"os"

	"github.com/flagpole-dev/flagpole/bench/load/floor"
)

func main() { os.Exit(floor.Main(os.Args[1:])) }
