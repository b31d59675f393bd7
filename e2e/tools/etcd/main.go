// Command etcd is etcd's server, built from go.etcd.io/etcd/server/v3 for the e2e
// control plane (the e2e harness builds and caches it).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
